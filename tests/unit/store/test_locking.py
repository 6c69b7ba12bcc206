"""The lock kinds, their factory, and the lock-free readers' ``shared_flock``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskfarmer.errors import ConfigError
from taskfarmer.store import StateStore, lock_path, make_lock, shared_flock
from taskfarmer.store.filesystem import mount_type
from taskfarmer.store.locking import (
    POLL_FIRST,
    POLL_MAX,
    FlockLock,
    SoftLock,
    next_poll,
    open_lock,
)

PROBE = ("import fcntl, os, sys\n"
         "fd = os.open(sys.argv[1], os.O_RDWR)\n"
         "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
         "except BlockingIOError:\n    sys.exit(1)\n")


def free(path: Path) -> bool:
    """Could another process take the flock on ``path`` now? (It lets go at once.)"""
    return subprocess.run([sys.executable, "-c", PROBE, str(path)]).returncode == 0


def test_lock_path_uses_scratch_and_the_absolute_workdir(tmp_path: Path) -> None:
    assert lock_path(tmp_path / "w", {}) == tmp_path / "w" / "lock"
    scratch = lock_path(tmp_path / "w", {"SCRATCH": "/scratch"})
    assert scratch.parent == Path("/scratch") and scratch.name.startswith("taskfarmer_")
    relative = lock_path(Path("w"), {"SCRATCH": "/scratch"})
    assert relative != scratch  # a different absolute workdir


def test_flock_lock_excludes_other_processes_counts_nesting_and_force_releases(
    tmp_path: Path,
) -> None:
    lock = make_lock(tmp_path, "flock", {})
    assert isinstance(lock, FlockLock) and lock.lock_file == str(tmp_path / "lock")
    with lock:
        assert not free(tmp_path / "lock")
        with lock:
            assert lock.is_locked
        assert lock.is_locked and not free(tmp_path / "lock")  # the inner release kept it
    assert not lock.is_locked and free(tmp_path / "lock")
    lock.acquire()
    lock.acquire()
    lock.release(force=True)
    assert not lock.is_locked and free(tmp_path / "lock")
    lock.release()  # one too many: nothing happens
    assert free(tmp_path / "lock")


def test_soft_lock_counts_nesting_and_removes_its_file_after_the_last_release(
    tmp_path: Path,
) -> None:
    lock = make_lock(tmp_path, "soft", {})
    assert isinstance(lock, SoftLock)
    with lock:
        with lock:
            assert Path(lock.lock_file).exists()
        assert lock.is_locked and Path(lock.lock_file).exists()
    assert not lock.is_locked and not Path(lock.lock_file).exists()


def test_soft_lock_never_breaks_a_lock_file_it_cannot_read_and_warns(tmp_path: Path) -> None:
    """filelock >= 4's soft lock (used before) took over a malformed lock file unchanged for
    2 s; on NFS that judgement came from stale caches and let two farmers in at once. Ours
    waits, and names the file."""
    path = tmp_path / "lock"
    path.write_text("not a lock record\n")
    waiter = subprocess.Popen(
        [sys.executable, "-c", "import sys; from taskfarmer.store.locking import SoftLock\n"
         "SoftLock(sys.argv[1], stall_warning=1.0).acquire()\nprint('acquired')", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    time.sleep(4.0)
    still_waiting = waiter.poll() is None
    waiter.kill()
    out, err = waiter.communicate()
    assert still_waiting and "acquired" not in out
    assert path.read_text() == "not a lock record\n"
    assert f"for the soft lock {path}; if no farmer is running" in err


class Waited(Exception):
    """Raised by a sleep: the lock waited."""


def refuse_to_wait(seconds: float) -> None:
    raise Waited


def test_soft_lock_waits_while_another_holds_it_and_links_no_file_of_its_own(
        tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    holder, other = SoftLock(path), SoftLock(path, sleep=refuse_to_wait)
    with holder:
        with pytest.raises(Waited):
            other.acquire()
        assert Path(path).read_text() == f"{os.getpid()}\n{os.uname().nodename}\n"
    assert sorted(tmp_path.iterdir()) == []  # the claims are gone, the lock file too
    with other:
        assert Path(path).exists()


def test_a_link_reported_as_existing_though_made_holds_the_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An NFS LINK whose reply was lost and resent answers EEXIST, yet the link was made: the
    claim's second link says so (else the lock would wait for itself for ever)."""
    real_link = os.link

    def resent_link(source: str, target: str) -> None:
        real_link(source, target)
        raise FileExistsError(17, "File exists")

    monkeypatch.setattr(os, "link", resent_link)
    lock = SoftLock(str(tmp_path / "lock"), sleep=refuse_to_wait)
    with lock:
        assert (tmp_path / "lock").exists()
    assert not (tmp_path / "lock").exists()


def test_without_hard_links_the_soft_lock_creates_its_file_exclusively(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: str, target: str) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = str(tmp_path / "lock")
    holder, other = SoftLock(path), SoftLock(path, sleep=refuse_to_wait)
    with holder:
        assert Path(path).read_text() == f"{os.getpid()}\n{os.uname().nodename}\n"
        with pytest.raises(Waited):
            other.acquire()
    assert sorted(tmp_path.iterdir()) == []


def test_open_lock_makes_each_kind_and_refuses_others(tmp_path: Path) -> None:
    assert open_lock("flock", str(tmp_path / "a")).kind == "flock"
    assert open_lock("soft", str(tmp_path / "b")).kind == "soft"
    with pytest.raises(ConfigError, match="unknown lock kind 'posix'"):
        make_lock(tmp_path, "posix", {})


def test_a_forked_child_takes_the_lock_through_its_own_object(tmp_path: Path) -> None:
    """A lock object never crosses fork: a child's hold would be its parent's (one open file
    description); the store opens a new one in the child, and that one excludes the parent."""
    store = StateStore(tmp_path, make_lock(tmp_path, "flock", {}))
    store.prepare()
    parent_lock = store.lock
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: hold the lock until the parent has tried to take it
        code = 1
        try:
            with store.locked():
                os.write(write, b"x" if store.lock is not parent_lock else b"-")
                time.sleep(1.0)
            code = 0
        finally:
            os._exit(code)
    assert os.read(read, 1) == b"x"
    started = time.monotonic()
    with store.locked():  # waits for the child's hold to end
        waited = time.monotonic() - started
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and waited > 0.5


def test_shared_flock_holds_an_existing_lock_file_and_never_creates_one(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    with shared_flock(missing) as held:
        assert not held
    assert not missing.exists()
    with shared_flock(None) as held:
        assert not held
    path = tmp_path / "lock"
    path.touch()
    with shared_flock(path) as held:
        assert held and not free(path)
    assert free(path)


def test_on_nfsv4_a_waiter_polls_at_short_capped_intervals(tmp_path: Path) -> None:
    """A blocked NFSv4 lock would wait in the client up to 30 s between tries (while the
    holder's node re-takes it): our waiter tries itself, never waiting more than POLL_MAX."""
    holder = FlockLock(str(tmp_path / "lock"), poll=False)
    holder.acquire()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 12:
            holder.release()  # another process (another descriptor) lets go

    waiter = FlockLock(str(tmp_path / "lock"), poll=True, sleep=sleep, jitter=lambda: 1.0)
    waiter.acquire()
    assert waiter.is_locked and len(waits) == 12
    assert waits[:3] == [POLL_FIRST, 2 * POLL_FIRST, 4 * POLL_FIRST]
    assert max(waits) == POLL_MAX
    waiter.release()


def test_polls_jitter_but_never_exceed_the_cap() -> None:
    assert next_poll(0.0, 1.0) == POLL_FIRST
    assert next_poll(POLL_MAX, 1.0) == POLL_MAX
    assert next_poll(POLL_MAX, 0.5) == POLL_MAX / 2


MOUNTINFO = """\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
30 22 0:40 / /mnt/nfs rw,relatime - nfs4 10.77.0.1:/export rw,vers=4.2
31 22 0:41 / /mnt/nfs3 rw,relatime - nfs 10.77.0.1:/export rw,vers=3
32 30 0:42 / /mnt/nfs/local rw - tmpfs tmpfs rw
33 22 0:43 / /mnt/with\\040space rw - nfs4 srv:/x rw
"""


@pytest.mark.parametrize(("path", "expected"), [
    ("/mnt/nfs/wd/lock", "nfs4"),
    ("/mnt/nfs3/lock", "nfs"),
    ("/mnt/nfs/local/lock", "tmpfs"),  # the deepest mount point
    ("/mnt/nfsx/lock", "ext4"),  # a prefix of the name is not the mount point
    ("/mnt/with space/lock", "nfs4"),
])
def test_the_mount_type_tells_nfsv4_from_nfsv3(path: str, expected: str) -> None:
    assert mount_type(Path(path), MOUNTINFO) == expected


def test_a_lock_file_on_a_local_filesystem_blocks_in_the_kernel(tmp_path: Path) -> None:
    """Only NFSv4 polls: the kernel wakes a local (or NFSv3) waiter in turn."""
    assert mount_type(tmp_path) not in ("nfs4", None)
    assert not FlockLock(str(tmp_path / "lock"))._polls()
