"""The heartbeat thread: renews our live leases on its own schedule, and never after a stop,
a lock failure or an error."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from helpers.threads import blocked_in

from taskfarmer.errors import FilesystemError, LockError
from taskfarmer.farm.heartbeat import Heartbeat
from taskfarmer.farm.signals import HANDLED_SIGNALS
from taskfarmer.hpc.identity import Identity
from taskfarmer.store import StateStore, read_records
from taskfarmer.store.locking import make_lock

FARMER = "node.1-abc"
OURS = f"{FARMER}.w0.100.1"
OTHERS = "node.2-def.w0.200.1"
DEAD = f"{FARMER}.w1.101.1.dead"


def leased(workdir: Path, coherent: bool = False) -> StateStore:
    """A store with three lease files, all with an mtime of 1000 s after the epoch."""
    store = StateStore(workdir, make_lock(workdir, "flock", {}), coherent)
    store.prepare()
    owner = Identity.current(environ={}, hostname="testhost")
    for name in (OURS, OTHERS, DEAD):
        (workdir / "leases" / name).write_text(owner.to_text())
        os.utime(workdir / "leases" / name, (1000, 1000))
    return store


def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def renewed(workdir: Path) -> set[str]:
    return {path.name for path in (workdir / "leases").iterdir() if path.stat().st_mtime > 1000}


def test_a_round_renews_only_our_live_leases(tmp_path: Path) -> None:
    heartbeat = Heartbeat(leased(tmp_path), FARMER, 1.0)
    assert heartbeat.beat()
    assert renewed(tmp_path) == {OURS}


def test_a_round_leaves_the_farmer_s_counts_for_status_in_the_coherent_mode(tmp_path: Path
                                                                           ) -> None:
    assert Heartbeat(leased(tmp_path / "fast"), FARMER, 1.0).beat()
    assert not (tmp_path / "fast" / "farmers").exists()  # nothing counted, nothing written
    assert Heartbeat(leased(tmp_path / "coherent", coherent=True), FARMER, 1.0).beat()
    record, = read_records(tmp_path / "coherent" / "farmers")
    assert record.farmer == FARMER and record.opens > 0


def test_nothing_is_renewed_once_stopped(tmp_path: Path) -> None:
    store = leased(tmp_path)
    heartbeat = Heartbeat(store, FARMER, 0.01)
    heartbeat.start()
    heartbeat.stop()
    os.utime(tmp_path / "leases" / OURS, (1000, 1000))
    assert not heartbeat.beat()
    assert renewed(tmp_path) == set()
    assert not any(thread.name == "heartbeat" for thread in threading.enumerate())


def test_nothing_is_renewed_after_the_lock_failed_to_exclude(tmp_path: Path) -> None:
    store = leased(tmp_path)
    with pytest.raises(LockError), store.locked():  # another farmer came in during our hold
        (tmp_path / "holder").write_text("open elsewhere:7:abc 1 /other/lock\n")
    assert store.lock_failed
    assert not Heartbeat(store, FARMER, 1.0).beat()
    assert renewed(tmp_path) == set()


def test_a_failing_renewal_stops_the_thread_and_the_main_loop_raises_it(tmp_path: Path) -> None:
    store = leased(tmp_path)
    heartbeat = Heartbeat(store, FARMER, 0.01)
    leases = tmp_path / "leases"
    for path in leases.iterdir():
        path.unlink()
    leases.rmdir()
    leases.write_text("not a directory")  # listing it fails: ENOTDIR
    heartbeat.start()
    until(lambda: heartbeat.error is not None)
    assert heartbeat.beat() is False  # no round after an error
    heartbeat.stop()
    with pytest.raises(FilesystemError, match="cannot list"):
        heartbeat.check()


def test_rounds_follow_the_period_on_the_injected_clock(tmp_path: Path) -> None:
    """A round at once, then one per period; each wait is for what is left of the period."""
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> bool:
        waits.append(seconds)
        now[0] += seconds
        return len(waits) >= 4  # stopped during the 4th wait

    heartbeat = Heartbeat(leased(tmp_path), FARMER, 2.5, monotonic=lambda: now[0], sleep=sleep)
    heartbeat.start()
    until(lambda: not any(thread.name == "heartbeat" for thread in threading.enumerate()))
    assert heartbeat.rounds == 4
    assert waits == [2.5, 2.5, 2.5, 2.5]
    assert renewed(tmp_path) == {OURS}


def test_the_heartbeat_thread_leaves_the_stop_signals_to_the_main_thread(tmp_path: Path
                                                                        ) -> None:
    """A SIGUSR1 the heartbeat thread took would not interrupt the main thread's wait."""
    heartbeat = Heartbeat(leased(tmp_path), FARMER, 60.0)
    heartbeat.start()
    try:
        until(lambda: heartbeat.rounds >= 1)
        assert heartbeat._thread is not None
        assert set(HANDLED_SIGNALS) <= blocked_in(heartbeat._thread)
    finally:
        heartbeat.stop()
