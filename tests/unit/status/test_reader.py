"""``--status`` read from a workdir made by the store itself: running versus claimed."""

from __future__ import annotations

from pathlib import Path

from taskfarmer.hpc.identity import Identity
from taskfarmer.status.reader import StatusReader
from taskfarmer.store import StateStore, make_lock


def test_the_tasks_of_a_chunk_after_the_first_are_claimed_not_running(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "w", make_lock(tmp_path, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize([f"echo {n}" for n in range(10)])
        lease = store.register("f.1-aa.w0.9.1", Identity.current(extra={"farmer": "f.1-aa",
                                                                         "worker": "0"}))
        tasks = store.claim(lease, 4)
        store.record(lease, tasks[0], succeeded=True)  # 0 ran; 1 runs; 2 and 3 wait
    status = StatusReader(store, None, lease=300.0).read(now=0.0)
    assert (status.finished, status.running, status.claimed, status.pending) == (1, 1, 2, 6)
    assert [task.id for task in status.running_tasks] == [1] and status.running_more == 0
    assert not status.done
