"""The lab itself: two NFS clients that share files and locks (and the command lines it runs)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .lab import (
    MOUNTPOINT,
    NODE_MEM_MB,
    NODE_MEM_SLACK_MB,
    REPO,
    SERVER_ADDR,
    MountOptions,
    NfsLab,
    console_tail,
    ganesha_config,
    in_namespaces,
    mount_command,
    mountstats_ops,
    uml_command,
)

V42 = MountOptions()
V3 = MountOptions(vers="3")
V3_NOLOCK = MountOptions(vers="3", lock=False)

#: flock's exit code when -n finds the lock taken (-E).
CONFLICT = 75


def test_mount_command() -> None:
    assert mount_command(V42) == (f"mount -t nfs -o vers=4.2,proto=tcp,hard "
                                  f"{SERVER_ADDR}:/export {MOUNTPOINT}")
    assert MountOptions(vers="3", lock=False, ac=False).option_string() == \
        "vers=3,proto=tcp,hard,nolock,noac"
    assert str(MountOptions(vers="3", lock=False, ac=False)) == "v3-nolock-noac"


def test_ganesha_config_exports_the_directory_over_v3_and_v4() -> None:
    conf = ganesha_config(Path("/x/export"), Path("/x/server"))
    assert "Path = /x/export;" in conf
    assert "Protocols = 3, 4;" in conf
    assert "Enable_NLM = true;" in conf
    assert "RecoveryRoot = /x/server/recovery;" in conf


def test_command_lines() -> None:
    assert in_namespaces("ns", ["sh"], mount_ns=True) == [
        "setpriv", "--pdeathsig", "KILL", "ip", "netns", "exec", "ns",
        "unshare", "--pid", "--fork", "--kill-child", "--mount", "sh"]
    argv = uml_command(Path("/d/nodeA"), "tapA")
    # UML's memory file goes to a tmpfs of the node's own, as big as mem= and some slack
    assert argv[:2] == ["sh", "-c"] and "mount -t tmpfs" in argv[2]
    assert argv[3:7] == ["sh", "/d/nodeA/mem", str(NODE_MEM_MB + NODE_MEM_SLACK_MB), "linux"]
    assert f"mem={NODE_MEM_MB}M" in argv
    assert {"rootfstype=hostfs", "rootflags=/", "ro", "vec0:transport=tap,ifname=tapA",
            "uml_dir=/d/nodeA", "TFNODE_DIR=/d/nodeA"} <= set(argv)


def test_mountstats_ops() -> None:
    text = (
        "device proc mounted on /proc with fstype proc\n"
        "device 10.77.0.1:/export mounted on /mnt/nfs with fstype nfs4 statvers=1.1\n"
        "\tper-op statistics\n"
        "\t        NULL: 1 1 0 44 24 0 0 0 0\n"
        "\t        READ: 7 7 0 1 2 0 0 0 0\n"
        "device 10.77.0.1:/other mounted on /mnt/other with fstype nfs4 statvers=1.1\n"
        "\tper-op statistics\n"
        "\t        READ: 99 99 0 1 2 0 0 0 0\n"
    )
    assert mountstats_ops(text) == {"NULL": 1, "READ": 7}


def test_nodes_run_this_repository_with_their_own_identity(nfs: NfsLab) -> None:
    a = nfs.a.run("hostname; python3 -c 'import taskfarmer; print(taskfarmer.__file__)';"
                  " cat /proc/sys/kernel/random/boot_id; exit 3")
    b = nfs.b.run("hostname; cat /proc/sys/kernel/random/boot_id")
    assert a.rc == 3 and b.rc == 0, (a, b)
    name_a, module, boot_a = a.out.split()
    name_b, boot_b = b.out.split()
    assert (name_a, name_b) == ("nodeA", "nodeB")
    assert module == str(REPO / "taskfarmer" / "__init__.py")
    assert boot_a != boot_b


def test_background_command_killed_by_process_group(nfs: NfsLab) -> None:
    job = nfs.a.spawn("sleep 600 & sleep 600; echo not reached")
    assert job.pid > 1
    job.kill()
    result = job.wait(30)
    assert result.rc == -9 and "not reached" not in result.out


@pytest.mark.parametrize("nfs", [V42, V3], indirect=True, ids=str)
def test_file_written_on_one_node_is_read_on_the_other(nfs: NfsLab, nfs_dir: Path) -> None:
    path = nfs.node_path(nfs_dir / "hello")
    nfs.a.run(f"echo from-A > {path}", check=True)
    assert nfs.b.run(f"cat {path}", check=True).out == "from-A\n"
    assert (nfs_dir / "hello").read_text() == "from-A\n"  # on the server's disk


@pytest.mark.parametrize(("nfs", "excludes"), [(V42, True), (V3, True), (V3_NOLOCK, False)],
                         indirect=["nfs"], ids=["v4.2", "v3", "v3-nolock"])
def test_flock_across_nodes(nfs: NfsLab, nfs_dir: Path, excludes: bool) -> None:
    """flock excludes across nodes over NFSv4.2 and NFSv3+NLM; with ``nolock`` it does not."""
    lock = nfs.node_path(nfs_dir / "lock")
    held, release = nfs.a.dir / "held", nfs.a.dir / "release"
    for flag in (held, release):
        flag.unlink(missing_ok=True)
    # Node A holds the lock until the host creates `release` (in A's hostfs directory, which
    # A sees at once: no NFS cache involved in the handshake).
    holder = nfs.a.spawn(f"exec flock -x {lock} -c 'touch {held}; "
                         f"while [ ! -e {release} ]; do sleep 0.02; done'")
    nfs.a.wait_file(held, 60, "node A to hold the lock")
    probe = nfs.b.run(f"flock -n -E {CONFLICT} {lock} -c true", timeout=60)
    if not excludes:
        assert probe.rc == 0, probe
        release.touch()
        assert holder.wait(60).rc == 0
        return
    assert probe.rc == CONFLICT, probe
    waiter = nfs.b.spawn(f"flock -x {lock} -c 'echo got it'")
    release.touch()
    assert holder.wait(60).rc == 0
    result = waiter.wait(120)
    assert (result.rc, result.out) == (0, "got it\n"), result


def test_console_tail_drops_stack_dumps() -> None:
    text = ("Run /x/node_init.sh as init process\n"
            "init.sh[1]: segfault at 40190ee0 ip 0000000040190ee0 error 14 in libc.so.6\n"
            "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000007\n"
            "Stack:\n 606944ba 607e7fcd 9c843b70 6067bb96\n"
            "Call Trace:\n [<606944ba>] ? _printk+0x0/0x94\n<4> [<6002c0dd>] new_thread_handler\n")
    assert console_tail(text, 2) == [
        "init.sh[1]: segfault at 40190ee0 ip 0000000040190ee0 error 14 in libc.so.6",
        "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000007"]


def test_a_node_boots_whatever_room_dev_shm_has(nfs_lab: NfsLab, tmp_path: Path) -> None:
    """UML keeps a node's memory in a file; CI's /dev/shm once had no room for it, and every
    node's init died at boot (SIGBUS, a kernel panic, a hang). A node boots under a 16 MiB
    /dev/shm: its memory file is on a tmpfs of its own."""
    node_dir = Path(tempfile.mkdtemp(prefix="tfuml-"))  # short: UML's socket path is in it
    try:
        init = node_dir / "init.sh"
        init.write_text("#!/bin/sh\nmount -t proc proc /proc\necho BOOTED-OK\n"
                        "echo o > /proc/sysrq-trigger\n")
        init.chmod(0o755)
        argv = [arg for arg in uml_command(node_dir, "tapX", init) if not arg.startswith("vec0")]
        small = ["unshare", "--mount", "sh", "-c",
                 'mount -t tmpfs -o size=16M tmpfs /dev/shm && exec "$@"', "sh", *argv]
        done = subprocess.run(small, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert "BOOTED-OK" in done.stdout, "\n".join(console_tail(done.stdout, 20))
    finally:
        shutil.rmtree(node_dir, ignore_errors=True)
