"""A real NFS test lab: an nfs-ganesha server and two User-Mode-Linux client nodes.

Everything runs in one network namespace that the lab creates (``tfnfs-PID-N``): a bridge
with the server's address and one tap device per node; nothing else is reachable.

* The server is ``ganesha.nfsd`` (FSAL VFS) exporting a host directory as ``/export`` over
  NFSv3 (with NLM locks and MOUNT) and NFSv4.2, with its own ``rpcbind`` and ``rpc.statd``,
  in a private PID and mount namespace (a tmpfs on ``/run``), so it touches nothing of the
  host's and dies with the namespace's first process.
* Each node is a ``linux`` (UML) kernel in its own PID namespace, with the host's ``/`` as
  its read-only root over hostfs (same Python, same repository), its own NFS client (kernel
  modules from ``/usr/lib/uml/modules``), page cache, attribute cache, lockd and statd.
  ``node_init.sh`` prepares it and starts ``agent.py``, which runs the host's commands.

Each process the lab starts is ``setpriv --pdeathsig KILL ip netns exec NS unshare --pid
--fork --kill-child ...``: if pytest dies, its child dies, which kills the namespace's first
process, which takes every process of the namespace with it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

SUBNET_PREFIX = 24
SERVER_ADDR = "10.77.0.1"
NODE_ADDRS = {"A": "10.77.0.2", "B": "10.77.0.3"}
PSEUDO = "/export"
#: Where the export is mounted on each node; /mnt/local is node-local scratch (tmpfs).
MOUNTPOINT = "/mnt/nfs"
NODE_LOCAL = "/mnt/local"
#: Memory of each node (MiB); benchmarks with many farmers per node raise it (``TFNFS_NODE_MEM``).
NODE_MEM_MB = int(os.environ.get("TFNFS_NODE_MEM", "384"))

#: Programs the lab runs (on the host and, through hostfs, on the nodes).
PROGRAMS = ("ganesha.nfsd", "linux", "rpcbind", "rpc.statd", "mount.nfs", "ip", "unshare",
            "setpriv", "busybox")
#: Debian packages that provide them (for the skip message and .ci/run).
APT_PACKAGES = ("nfs-ganesha", "nfs-ganesha-vfs", "user-mode-linux", "rpcbind", "nfs-common",
                "iproute2", "util-linux", "busybox-static")
FSAL_VFS_GLOB = "/usr/lib/*/ganesha/libfsalvfs.so"
UML_MODULES_GLOB = "/usr/lib/uml/modules/*/kernel/fs/nfs/nfsv4.ko"

NETNS_RE = re.compile(r"^tfnfs-(\d+)-\d+$")


class LabError(RuntimeError):
    """The lab could not be started or a node did not answer."""


def missing_requirements() -> list[str]:
    """What this machine lacks to run the lab (empty: it can run)."""
    missing = [name for name in PROGRAMS if shutil.which(name) is None]
    if not glob.glob(FSAL_VFS_GLOB):
        missing.append("ganesha's FSAL VFS (nfs-ganesha-vfs)")
    if not glob.glob(UML_MODULES_GLOB):
        missing.append("UML NFS modules (user-mode-linux)")
    if os.geteuid() != 0:
        missing.append("root")
    if not os.path.exists("/dev/net/tun"):
        missing.append("/dev/net/tun")
    return missing


@dataclass(frozen=True)
class MountOptions:
    """How the nodes mount the export."""

    vers: str = "4.2"
    lock: bool = True  # False: ``nolock`` (locks stay local to each node)
    ac: bool = True  # False: ``noac`` (no attribute cache, synchronous writes)

    def option_string(self) -> str:
        parts = [f"vers={self.vers}", "proto=tcp", "hard"]
        if not self.lock:
            parts.append("nolock")
        if not self.ac:
            parts.append("noac")
        return ",".join(parts)

    def __str__(self) -> str:
        return "-".join([f"v{self.vers}"] + (["nolock"] if not self.lock else [])
                        + (["noac"] if not self.ac else []))


def mount_command(options: MountOptions) -> str:
    """The shell command a node runs to mount the export."""
    return (f"mount -t nfs -o {options.option_string()} "
            f"{SERVER_ADDR}:{PSEUDO} {MOUNTPOINT}")


def ganesha_config(export: Path, state: Path) -> str:
    """ganesha.conf: one export, NFSv3 + NLM + NFSv4.2 over TCP, no grace period."""
    return f"""\
NFS_CORE_PARAM {{
    Protocols = 3, 4;
    Enable_NLM = true;
    Enable_RQUOTA = false;
    Bind_addr = {SERVER_ADDR};
    # NFSv3 clients mount the pseudo path, as NFSv4 clients do.
    Mount_Path_Pseudo = true;
}}
NFSV4 {{
    # A fresh server: nothing to recover, so no 90 s grace period refusing OPEN and LOCK.
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = {state}/recovery;
}}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT {{
    Export_Id = 1;
    Path = {export};
    Pseudo = {PSEUDO};
    Access_Type = RW;
    Squash = No_Root_Squash;
    Protocols = 3, 4;
    Transports = TCP;
    SecType = sys;
    # Revalidate with the underlying directory on every access, as the kernel's nfsd does:
    # the tests write task lists into the export from the host.
    Attr_Expiration_Time = 0;
    FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"""


def server_script(state: Path) -> str:
    """Shell run as the first process of the server's PID and mount namespaces."""
    return f"""\
set -e
mount -t tmpfs tfnfs /run
mkdir -p /run/rpcbind {state}/statd/sm {state}/statd/sm.bak {state}/recovery
ip link set lo up
rpcbind -w
rpc.statd -L -P {state}/statd
exec ganesha.nfsd -F -f {state}/ganesha.conf -L {state}/ganesha.log -p {state}/ganesha.pid \\
    -N NIV_EVENT
"""


def in_namespaces(netns: str, argv: Sequence[str], *, mount_ns: bool = False) -> list[str]:
    """``argv`` in network namespace ``netns`` and a new PID namespace, killed with its parent."""
    return ["setpriv", "--pdeathsig", "KILL", "ip", "netns", "exec", netns,
            "unshare", "--pid", "--fork", "--kill-child", *(["--mount"] if mount_ns else []),
            *argv]


#: Room for UML's memory file beyond ``mem=`` (the kernel maps a little more than that).
NODE_MEM_SLACK_MB = 64


def uml_command(node_dir: Path, tap: str, init: Path = HERE / "node_init.sh") -> list[str]:
    """Boot a UML node: hostfs root read-only, ``node_init.sh`` as init, one tap interface.

    UML keeps the node's whole memory in a file, in ``$TMPDIR`` or else ``/dev/shm``, and a
    page it cannot get there kills the node's init with SIGSEGV or SIGBUS: a kernel panic at
    boot (seen in CI, whose ``/dev/shm`` is not this machine's).  So the command first mounts
    a tmpfs of the node's own, sized for ``mem=``, in ``node_dir/mem``, and points ``TMPDIR``
    at it; run it in a mount namespace of its own (``mount_ns``), which that mount leaves with
    the node.
    """
    memory = node_dir / "mem"
    prepare = ('mkdir -p "$1" && mount -t tmpfs -o "size=$2M,mode=0700" tmpfs "$1" '
               '&& TMPDIR="$1" && export TMPDIR && shift 2 && exec "$@"')
    return ["sh", "-c", prepare, "sh", str(memory), str(NODE_MEM_MB + NODE_MEM_SLACK_MB),
            "linux", f"mem={NODE_MEM_MB}M", "root=/dev/root", "rootfstype=hostfs",
            "rootflags=/", "ro", f"init={init}",
            f"vec0:transport=tap,ifname={tap}",
            # mconsole socket and pid file in the node's directory, not ~/.uml
            f"uml_dir={node_dir}", "umid=uml",
            "con0=null,fd:1", "con=null", f"TFNODE_DIR={node_dir}"]


def console_tail(text: str, lines: int) -> list[str]:
    """The last ``lines`` lines of a node's console ``text`` but its stack dumps' lines.

    A panic's call trace is tens of lines of addresses; what tells why (``init.sh[1]:
    segfault at ...``, ``Kernel panic - not syncing: ...``) comes before it.
    """
    dump = re.compile(r"^(<\d>)?\s*(\[<[0-9a-f]+>\]|[0-9a-f]{8}( [0-9a-f]{8})*$"
                      r"|Stack:|Call Trace:)")
    return [line for line in text.splitlines() if not dump.match(line)][-lines:]


def node_env_file(name: str, addr: str) -> str:
    """node.env, read by node_init.sh."""
    values = {"TFNODE_NAME": f"node{name}", "TFNODE_ADDR": f"{addr}/{SUBNET_PREFIX}",
              "TFNODE_PYTHON": sys.executable, "TFNODE_AGENT": str(HERE / "agent.py")}
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def node_environment() -> dict[str, str]:
    """Environment of commands on a node: this Python first on PATH, this repository's code."""
    return {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/sbin",
                                 "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]),
        "HOME": "/root", "LANG": "C.UTF-8", "TMPDIR": NODE_LOCAL,
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",  # the root is read-only on the nodes
    }


def mountstats_ops(text: str, mountpoint: str = MOUNTPOINT) -> dict[str, int]:
    """Operation counts of the mount at ``mountpoint`` in a ``/proc/self/mountstats`` text."""
    ops: dict[str, int] = {}
    current = False
    in_ops = False
    for line in text.splitlines():
        if line.startswith("device "):
            current = f" mounted on {mountpoint} " in line
            in_ops = False
        elif current and line.strip() == "per-op statistics":
            in_ops = True
        elif current and in_ops and ":" in line:
            name, _, numbers = line.strip().partition(":")
            fields = numbers.split()
            if fields and fields[0].isdigit():
                ops[name] = int(fields[0])
    return ops


@dataclass
class Result:
    """A finished command on a node."""

    node: str
    command: str
    rc: int
    out: str
    err: str

    def __str__(self) -> str:
        return (f"node {self.node}: `{self.command}` exited {self.rc}\n"
                f"--- stdout\n{self.out}--- stderr\n{self.err}")


class Job:
    """A command started on a node by its agent."""

    def __init__(self, node: Node, name: str, command: str) -> None:
        self.node = node
        self.name = name
        self.command = command

    def _file(self, ext: str) -> Path:
        return self.node.dir / "out" / f"{self.name}.{ext}"

    def done(self) -> bool:
        return self._file("rc").exists()

    @property
    def pid(self) -> int:
        """The command's PID on the node, which is also its process group and session."""
        self.node.wait_file(self._file("pid"), 60, f"pid of `{self.command}`")
        return int(self._file("pid").read_text())

    def output(self) -> str:
        return self._file("out").read_text(errors="replace") if self._file("out").exists() else ""

    def wait(self, timeout: float = 120) -> Result:
        """Wait for the command to end; raise LabError after ``timeout`` seconds."""
        self.node.wait_file(self._file("rc"), timeout, f"`{self.command}` to end",
                            partial=self)
        return Result(self.node.name, self.command, int(self._file("rc").read_text()),
                      self.output(), self._file("err").read_text(errors="replace"))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the command's process group on the node."""
        self.node.control({"op": "kill", "pgid": self.pid, "sig": int(sig)})


class Node:
    """One UML client node; commands run through its agent (see agent.py)."""

    def __init__(self, name: str, directory: Path, netns: str) -> None:
        self.name = name
        self.addr = NODE_ADDRS[name]
        self.dir = directory
        self.netns = netns
        self.tap = f"tap{name}"
        self.proc: subprocess.Popen | None = None
        self._seq = 0
        self._lock = threading.Lock()

    def boot(self) -> None:
        for sub in ("cmd", "out"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "node.env").write_text(node_env_file(self.name, self.addr))
        with open(self.dir / "console.log", "wb") as console:
            self.proc = subprocess.Popen(in_namespaces(self.netns, uml_command(self.dir, self.tap),
                                                       mount_ns=True),
                                         stdin=subprocess.DEVNULL, stdout=console,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def console(self, lines: int = 40) -> str:
        """The console's last ``lines`` lines, without the kernel's stack dumps."""
        path = self.dir / "console.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(console_tail(text, lines))

    def panicked(self) -> bool:
        """Whether the node's kernel panicked (a UML kernel that panics does not exit)."""
        path = self.dir / "console.log"
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as console:
            return b"Kernel panic" in console.read()
        return False

    def wait_file(self, path: Path, timeout: float, what: str,
                  partial: Job | None = None) -> None:
        deadline = time.monotonic() + timeout
        polls = 0
        while not path.exists():
            polls += 1
            if self.proc is not None and self.proc.poll() is not None:
                raise LabError(f"node {self.name} died waiting for {what}:\n{self.console()}")
            if polls % 100 == 0 and self.panicked():
                raise LabError(f"node {self.name}: kernel panic waiting for {what}:\n"
                               f"{self.console()}")
            if time.monotonic() > deadline:
                seen = (f"\nstdout so far:\n{partial.output()}" if partial
                        else f"\nconsole:\n{self.console()}")
                raise LabError(f"node {self.name}: timed out after {timeout} s waiting for "
                               f"{what}{seen}")
            time.sleep(0.01)

    def _request(self, request: Mapping[str, object]) -> str:
        with self._lock:
            self._seq += 1
            name = f"{self._seq:06d}"
        tmp = self.dir / "cmd" / f".{name}.tmp"
        tmp.write_text(json.dumps(request))
        os.rename(tmp, self.dir / "cmd" / f"{name}.json")  # the agent sees it complete
        return name

    def control(self, request: Mapping[str, object], timeout: float = 90) -> None:
        name = self._request(request)
        self.wait_file(self.dir / "out" / f"{name}.rc", timeout, f"agent op {request}")

    def spawn(self, command: str, env: Mapping[str, str] | None = None,
              cwd: str | None = None) -> Job:
        """Start shell ``command`` on the node (own session) and return at once."""
        full_env = {**node_environment(), **(env or {})}
        return Job(self, self._request({"sh": command, "env": full_env, "cwd": cwd}), command)

    def run(self, command: str, timeout: float = 120, env: Mapping[str, str] | None = None,
            cwd: str | None = None, check: bool = False) -> Result:
        """Run shell ``command`` on the node to completion."""
        result = self.spawn(command, env, cwd).wait(timeout)
        if check and result.rc != 0:
            raise LabError(str(result))
        return result

    def killall(self) -> None:
        """Kill every process a test started on this node (tasks of killed farmers too)."""
        self.control({"op": "killall"})

    def mountstats(self) -> dict[str, int]:
        """Operation counts of this node's NFS client on the export since it was mounted."""
        return mountstats_ops(self.run("cat /proc/self/mountstats", check=True).out)

    def shutdown(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None and (self.dir / "ready").exists():
            try:
                self._request({"op": "poweroff"})
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        kill_namespace(self.proc)


def kill_namespace(proc: subprocess.Popen) -> None:
    """Stop a process started with :func:`in_namespaces` and everything in its PID namespace.

    SIGKILL to the namespace's first process (the child of ``unshare``) kills the whole
    namespace, and ``unshare`` reaps it and exits; killing ``unshare`` first would leave that
    child to the host's init to reap.
    """
    if proc.poll() is None:
        try:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            children = []
        for child in children:
            try:
                os.kill(int(child), signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait(timeout=30)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def reap_stale_netns() -> None:
    """Delete lab namespaces left by test runs that died (their pytest PID is gone)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = NETNS_RE.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


class NfsLab:
    """The server and nodes A and B; ``start()``, ``mount(options)``, ``stop()``."""

    _count = 0

    def __init__(self, root: Path) -> None:
        NfsLab._count += 1
        self.root = root
        self.export = root / "export"
        self.state = root / "server"
        self.netns = f"tfnfs-{os.getpid()}-{NfsLab._count}"
        self.nodes = {name: Node(name, root / f"node{name}", self.netns) for name in NODE_ADDRS}
        self.server: subprocess.Popen | None = None
        self.mounted: MountOptions | None = None
        self.netns_made = False
        self.start_seconds: float | None = None

    @property
    def a(self) -> Node:
        return self.nodes["A"]

    @property
    def b(self) -> Node:
        return self.nodes["B"]

    def node_path(self, host_path: Path) -> str:
        """The path on a node of ``host_path``, a path inside the export."""
        return f"{MOUNTPOINT}/{host_path.relative_to(self.export)}".rstrip("/.")

    def start(self, options: MountOptions = MountOptions()) -> None:
        began = time.monotonic()
        reap_stale_netns()
        self.export.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        ip("netns", "add", self.netns)
        self.netns_made = True
        ip("-n", self.netns, "link", "set", "lo", "up")
        ip("-n", self.netns, "link", "add", "br0", "type", "bridge")
        ip("-n", self.netns, "addr", "add", f"{SERVER_ADDR}/{SUBNET_PREFIX}", "dev", "br0")
        ip("-n", self.netns, "link", "set", "br0", "up")
        for node in self.nodes.values():
            ip("-n", self.netns, "tuntap", "add", "dev", node.tap, "mode", "tap")
            ip("-n", self.netns, "link", "set", node.tap, "master", "br0")
            ip("-n", self.netns, "link", "set", node.tap, "up")
        self._start_server()
        for node in self.nodes.values():
            node.boot()
        for node in self.nodes.values():
            node.wait_file(node.dir / "ready", 180, "the node to boot")
        self.mount(options)
        self.start_seconds = time.monotonic() - began

    def _start_server(self) -> None:
        (self.state / "ganesha.conf").write_text(ganesha_config(self.export, self.state))
        log = self.state / "ganesha.log"
        with open(self.state / "server.out", "wb") as out:
            self.server = subprocess.Popen(
                in_namespaces(self.netns, ["sh", "-c", server_script(self.state)], mount_ns=True),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while "NFS SERVER INITIALIZED" not in (log.read_text(errors="replace")
                                               if log.exists() else ""):
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise LabError("ganesha did not start:\n"
                               + (self.state / "server.out").read_text(errors="replace")
                               + (log.read_text(errors="replace") if log.exists() else ""))
            time.sleep(0.02)

    def mount(self, options: MountOptions) -> None:
        """(Re)mount the export on both nodes with ``options``; kills what tests left running."""
        if options == self.mounted:
            return
        for node in self.nodes.values():
            node.killall()
            if self.mounted is not None:
                node.run(f"umount {MOUNTPOINT}", check=True)
        self.mounted = None
        for node in self.nodes.values():
            node.run(mount_command(options), timeout=180, check=True)
        self.mounted = options

    def reset(self) -> None:
        """After a test: no process of it is left on any node."""
        for node in self.nodes.values():
            node.killall()

    def stop(self) -> None:
        """Power the nodes off, stop the server, delete the namespace (idempotent)."""
        for node in self.nodes.values():
            try:
                node.shutdown()
            except Exception:
                pass
        if self.server is not None:
            kill_namespace(self.server)
        if self.netns_made:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            self.netns_made = False
