"""The safety net at rest: a claimed task recorded nowhere (its line lost or torn) goes back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskfarmer.errors import LostWriteError
from taskfarmer.hpc.identity import Identity
from taskfarmer.store import Lease, StateStore
from taskfarmer.store.lines import line_ids
from taskfarmer.store.locking import make_lock


def farmed(workdir: Path, count: int, *, release: bool = True) -> StateStore:
    """A store whose ``count`` tasks ``t0`` ... were all claimed and finished under one lease."""
    store = StateStore(workdir, make_lock(workdir, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize([f"t{i}" for i in range(count)])
        lease = store.register("l1", Identity.current(environ={}, hostname="testhost"))
        for task in store.claim(lease, count):
            store.record(lease, task, True)
        if release:
            store.release(lease)
    return store


def queued(workdir: Path, store: StateStore) -> list[int]:
    with store.locked():
        return list(line_ids(workdir / "toprocess", start=store.cursor()))


def test_a_nul_tail_of_finished_is_cut_and_its_task_put_back(tmp_path: Path) -> None:
    """The NFSv4.2 lab's loss: the last ``finished`` line reached the server as NUL bytes."""
    store = farmed(tmp_path, 4)
    finished = tmp_path / "finished"
    size = finished.stat().st_size
    with open(finished, "r+b") as handle:  # "3 t3\n" written back as zeros
        handle.seek(size - 5)
        handle.write(b"\0" * 5)
    with store.locked():
        with pytest.raises(LostWriteError) as raised:  # no farmer wrote them: the farm stops
            store.repair()
        assert (raised.value.path, raised.value.offset) == (finished, size - 5)
        assert raised.value.fragment == b"\0" * 5
        assert store.repair() == []  # cut once, kept in torn: the next start goes on
        assert [task.id for task in store.requeue_orphans()] == [3]
        assert store.requeue_orphans() == []  # put back once
    assert queued(tmp_path, store) == [3]
    assert b"finished: " + b"\0" * 5 in (tmp_path / "torn").read_bytes()


def test_a_torn_finished_line_is_put_back(tmp_path: Path) -> None:
    store = farmed(tmp_path, 3)
    finished = tmp_path / "finished"
    os.truncate(finished, finished.stat().st_size - 1)  # "2 t2" lost its newline
    with store.locked():
        store.repair()
        assert [task.id for task in store.requeue_orphans()] == [2]
    assert list(line_ids(finished)) == [0, 1]
    assert queued(tmp_path, store) == [2]


def test_a_nul_run_inside_finished_puts_back_every_line_it_touched(tmp_path: Path) -> None:
    """Zeros over ``1 t1\\n`` glue the next line to them: neither is readable, both run again
    (and the untouched lines do not)."""
    store = farmed(tmp_path, 4)
    finished = tmp_path / "finished"
    with open(finished, "r+b") as handle:
        handle.seek(len(b"0 t0\n"))
        handle.write(b"\0" * len(b"1 t1\n"))
    with store.locked():
        assert store.repair() == []  # the file still ends with a newline
        assert [task.id for task in store.requeue_orphans()] == [1, 2]
    assert queued(tmp_path, store) == [1, 2]


def test_nothing_comes_back_while_a_lease_exists(tmp_path: Path) -> None:
    store = farmed(tmp_path, 3, release=False)
    os.truncate(tmp_path / "finished", 0)  # all three "lost", but lease l1 still stands
    with store.locked():
        assert store.requeue_orphans() == []
        assert store.tidy() is False
        store.release(Lease("l1", store.leases / "l1"))
        assert [task.id for task in store.requeue_orphans()] == [0, 1, 2]


def test_recorded_failed_and_queued_tasks_are_not_put_back(tmp_path: Path) -> None:
    store = StateStore(tmp_path, make_lock(tmp_path, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize(["ok", "bad", "retry", "stopped", "lost"])
        lease = store.register("l1", Identity.current(environ={}, hostname="testhost"))
        ok, bad, retry, stopped, _lost = store.claim(lease, 5)
        store.record(lease, ok, True)
        store.record(lease, bad, False)
        store.record(lease, retry, False, retries=1)  # back in toprocess
        store.requeue([stopped])
        store.release(lease)
        assert [task.id for task in store.requeue_orphans()] == [4]


def test_tidy_puts_them_back_before_it_forgets_the_claims(tmp_path: Path) -> None:
    store = farmed(tmp_path, 3)
    finished = tmp_path / "finished"
    finished.write_bytes(b"0 t0\n2 t2\n")  # task 1's line lost
    with store.locked():
        assert store.tidy() is True
    assert (tmp_path / "toprocess").read_text() == "1 t1\n"
    assert (tmp_path / "claims").read_text() == ""


def test_an_unchanged_state_is_not_scanned_again_but_a_late_write_back_is(
        tmp_path: Path) -> None:
    """The scan is skipped while no file changed (inode, size, mtime): an idle ``--follow``
    farmer asks on every poll. A write-back in place changes the mtime: it is scanned."""
    store = farmed(tmp_path, 3)
    with store.locked():
        assert store.requeue_orphans() == []
    finished = tmp_path / "finished"
    stat = finished.stat()
    with open(finished, "r+b") as handle:  # zeros over "0 t0", same size
        handle.write(b"\0" * 4)
    os.utime(finished, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with store.locked():
        assert store.requeue_orphans() == []  # not scanned: nothing seemed to change
    os.utime(finished, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with store.locked():
        assert [task.id for task in store.requeue_orphans()] == [0]
