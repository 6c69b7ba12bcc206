"""Command agent: PID 1 of a lab node (a User-Mode-Linux kernel), after ``node_init.sh``.

It runs the host's commands and reports back through a hostfs directory, ``NODE_DIR``, which
host and node see at the same path (see README.md, "How a command reaches a node"):

* the host writes ``cmd/N.json`` (written to ``cmd/.N.tmp`` and renamed, so the agent never
  reads half a request); ``N`` is a zero-padded sequence number, handled in order once;
* a shell command (``{"sh": ..., "env": {...}, "cwd": ...}``) runs in its own session with
  stdout/stderr in ``out/N.out``/``out/N.err``; the agent writes ``out/N.pid`` when it started
  and ``out/N.rc`` (exit code, or minus the signal number) when it ended, both by rename;
* ``{"op": "killall"}`` SIGKILLs every process on the node except the agent, the kernel's
  threads and the daemons started before it (rpcbind, rpc.statd), and waits until they are
  gone; ``{"op": "poweroff"}`` does the same, unmounts NFS and powers the kernel off.

hostfs passes every write straight through to the host file (no write-back cache) and does
not cache directory entries, so the host sees each file as soon as it is renamed, and the
agent sees each request the next time it lists ``cmd/``.  As PID 1 the agent also reaps the
orphans of killed commands (``waitpid(-1)``).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RB_POWER_OFF = 0x4321FEDC


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary name and rename(2)."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


def kthread_or_gone(pid: int) -> bool:
    """True for a kernel thread (no command line) or a process that has already gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read() == b""
    except OSError:
        return True


class Agent:
    """Runs requests from ``NODE_DIR/cmd`` and records their outcome in ``NODE_DIR/out``."""

    def __init__(self, node_dir: Path) -> None:
        self.cmd = node_dir / "cmd"
        self.out = node_dir / "out"
        self.out.mkdir(exist_ok=True)
        self.seen: set[str] = set()
        self.jobs: dict[int, str] = {}  # pid -> request name
        # Everything alive now (rpcbind, rpc.statd) belongs to the node, not to a test.
        self.system = {int(p) for p in os.listdir("/proc") if p.isdigit()}

    def reap(self) -> bool:
        """Collect every exited child (ours or orphans); record our jobs' exit codes."""
        reaped = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return reaped
            if pid == 0:
                return reaped
            reaped = True
            name = self.jobs.pop(pid, None)
            if name is not None:
                write_atomic(self.out / f"{name}.rc", str(os.waitstatus_to_exitcode(status)))

    def start(self, name: str, request: dict) -> None:
        env = {str(k): str(v) for k, v in request.get("env", {}).items()}
        out = os.open(self.out / f"{name}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(self.out / f"{name}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        # fork/exec by hand, not subprocess.Popen: reap() waits for every child with
        # waitpid(-1), and Popen's own clean-up could collect a job's status first.
        # The pipe closes on exec: reading it until EOF waits for setsid() and exec, so the
        # process group exists before the host learns the PID (and may kill the group).
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(ready_r)
                os.setsid()
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(err, 2)
                if request.get("cwd"):
                    os.chdir(request["cwd"])
                os.execve("/bin/sh", ["sh", "-c", request["sh"]], env)
            except BaseException as exc:
                os.write(2, f"agent: {exc}\n".encode())
            os._exit(127)
        os.close(ready_w)
        os.read(ready_r, 1)
        os.close(ready_r)
        os.close(out)
        os.close(err)
        self.jobs[pid] = name
        write_atomic(self.out / f"{name}.pid", str(pid))

    def strays(self) -> list:
        return [int(p) for p in os.listdir("/proc") if p.isdigit()
                and int(p) not in self.system and int(p) != os.getpid()
                and not kthread_or_gone(int(p))]

    def killall(self) -> None:
        """SIGKILL every process a test started, until none is left."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.reap()
            pids = self.strays()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"processes survive SIGKILL: {self.strays()}")

    def poweroff(self) -> None:
        self.killall()
        subprocess.run(["umount", "-f", "-l", "/mnt/nfs"], stderr=subprocess.DEVNULL, check=False)
        os.sync()
        ctypes.CDLL(None, use_errno=True).reboot(RB_POWER_OFF)

    def handle(self, name: str) -> None:
        request = json.loads((self.cmd / f"{name}.json").read_text())
        op = request.get("op")
        if op is None:
            self.start(name, request)
            return
        if op == "kill":
            try:
                os.killpg(int(request["pgid"]), int(request["sig"]))
            except ProcessLookupError:
                pass
        elif op == "killall":
            self.killall()
        elif op == "poweroff":
            write_atomic(self.out / f"{name}.rc", "0")
            self.poweroff()
        write_atomic(self.out / f"{name}.rc", "0")

    def serve(self) -> None:
        (self.out.parent / "ready").write_text(str(os.getpid()))
        idle = 0.005
        while True:
            busy = self.reap()
            for entry in sorted(os.listdir(self.cmd)):
                name, _, ext = entry.partition(".")
                if ext == "json" and name not in self.seen:
                    self.seen.add(name)
                    self.handle(name)
                    busy = True
            # Poll fast while commands come and go, back off to 0.1 s when idle.
            idle = 0.005 if busy else min(idle * 2, 0.1)
            time.sleep(idle)


if __name__ == "__main__":
    Agent(Path(sys.argv[1])).serve()
