"""The node gate: the processes of a node queue in their own kernel for a lock on a shared
filesystem, and at most one of them asks the server."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest
from helpers.farmer import wait_for

from taskfarmer.store import locking
from taskfarmer.store.gate import GatedLock, gate_path
from taskfarmer.store.locking import FlockLock, SoftLock, open_lock


def blocked_on(path: Path) -> bool:
    """Does a process or thread wait for the flock on ``path`` (``->`` in /proc/locks)?"""
    inode = os.stat(path).st_ino
    return any(line.split()[1] == "->" and line.split()[-3].endswith(f":{inode}")
               for line in Path("/proc/locks").read_text().splitlines())


class Polls:
    """The sleeps of a polling FlockLock: each one is a try that found the lock taken."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, seconds: float) -> None:
        self.count += 1
        time.sleep(0.001)


def test_a_waiter_queues_at_the_gate_and_does_not_poll_the_lock(tmp_path: Path) -> None:
    lock_file, gate = str(tmp_path / "lock"), tmp_path / "gate"
    first = GatedLock(FlockLock(lock_file, poll=True), gate)
    polls = Polls()
    second = GatedLock(FlockLock(lock_file, poll=True, sleep=polls), gate)
    first.acquire()
    waiter = threading.Thread(target=second.acquire)
    waiter.start()
    try:
        wait_for(lambda: blocked_on(gate), timeout=10, what="the second lock to wait at the gate")
        assert polls.count == 0 and not second.is_locked
    finally:
        first.release()
        waiter.join()
    assert second.is_locked and polls.count == 0
    second.release()
    assert not second.is_locked


def test_nested_holds_keep_the_gate_until_the_last_release(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    lock = GatedLock(FlockLock(str(tmp_path / "lock")), gate)
    other = GatedLock(FlockLock(str(tmp_path / "lock")), gate)
    with lock:
        with lock:
            pass
        assert lock.is_locked
        taken = threading.Thread(target=other.acquire)
        taken.start()
        wait_for(lambda: blocked_on(gate), timeout=10, what="the other lock to wait")
    taken.join()
    assert other.is_locked and not lock.is_locked
    other.release(force=True)


def test_a_gate_that_cannot_be_opened_is_left_out(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()  # open(2) of a directory for a lock file: EISDIR
    lock = GatedLock(FlockLock(str(tmp_path / "lock")), gate)
    for _ in range(2):
        with lock:
            assert lock.is_locked and lock.kind == "flock"
        assert not lock.is_locked


def test_the_gate_is_released_when_releasing_the_lock_fails(tmp_path: Path) -> None:
    """A soft lock file removed by hand: the release fails, the node's gate must not stay shut."""
    lock_file, gate = tmp_path / "lock", tmp_path / "gate"
    lock = GatedLock(SoftLock(str(lock_file)), gate)
    lock.acquire()
    lock_file.unlink()
    with pytest.raises(FileNotFoundError):
        lock.release()
    probe = os.open(gate, os.O_RDONLY)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if still shut
    finally:
        os.close(probe)


def test_the_gate_is_named_by_the_lock_files_real_path_in_a_local_directory(
        tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    local, shared = tmp_path / "local", tmp_path / "shared"
    local.mkdir()
    shared.mkdir()
    on_nfs = {shared}
    name = gate_path(str(tmp_path / "real" / "lock"), [str(shared), str(local)],
                     shared=lambda path: path in on_nfs)
    assert name is not None and name.parent == local
    assert gate_path(str(tmp_path / "alias" / "lock"), [str(local)]) == name
    assert gate_path(str(tmp_path / "real" / "other"), [str(local)]) != name
    assert gate_path(str(tmp_path / "lock"), [str(shared), str(tmp_path / "none")],
                     shared=lambda path: path in on_nfs) is None


def test_a_lock_on_a_shared_filesystem_is_gated(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_lock("flock", str(tmp_path / "lock")), FlockLock)  # local: no gate
    monkeypatch.setattr(locking, "shared_filesystem", lambda path: True)
    for kind in ("flock", "soft"):
        lock = open_lock(kind, str(tmp_path / "lock"))
        assert isinstance(lock, GatedLock) and lock.kind == kind
        assert lock.lock_file == str(tmp_path / "lock")
