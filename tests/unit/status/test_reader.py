"""``--status`` read from a workdir made by the store itself: running versus claimed."""

from __future__ import annotations

import time
from pathlib import Path

from taskfarmer.hpc.identity import Identity
from taskfarmer.logs.joblog import Entry, JobLog
from taskfarmer.status.reader import StatusReader
from taskfarmer.store import Lease, StateStore, make_lock
from taskfarmer.tasks import ListTaskList, Task


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


def _workdir(tmp_path: Path, tasks: int) -> StateStore:
    """A store with ``tasks`` tasks imported (the ``imported`` record gives the total)."""
    tasklist = tmp_path / "t"
    tasklist.write_text("".join(f"echo {n}\n" for n in range(tasks)))
    store = StateStore(tmp_path / "w", make_lock(tmp_path, "flock", {}))
    store.prepare()
    with store.locked():
        assert store.import_list(tasklist, ListTaskList(), starting=True) == tasks
    return store


def _lease(store: StateStore, worker: int) -> Lease:
    return store.register(f"f.1-aa.w{worker}.9.1",
                          Identity.current(extra={"farmer": "f.1-aa", "worker": str(worker)}))


def test_a_worker_runs_one_task_however_many_ended_unrecorded(tmp_path: Path) -> None:
    store = _workdir(tmp_path, 10)
    with store.locked():
        first, second = _lease(store, 0), _lease(store, 1)
        store.claim(first, 3)  # ran: the worker holds their results, not recorded yet
        store.claim(second, 2)  # 3 runs, 4 waits
        store.claim(first, 2)  # the first worker's next chunk: 5 runs, 6 waits
    status = StatusReader(store, None, lease=300.0).read(now=time.time())
    assert (status.running, status.claimed, status.pending, status.total) == (2, 5, 3, 10)
    assert sorted(task.id for task in status.running_tasks) == [3, 5]
    assert status.running_more == 0


def _joblog(store: StateStore, now: float, count: int) -> None:
    with store.locked():
        JobLog(store.files.joblog).append([
            Entry(n, 1, "node", "f.1-aa", 0, now - 60 + n, 0.5, 0, 0, "finished", f"echo {n}")
            for n in range(count)])
        for n in range(count):
            store.results.record(Task(n, f"echo {n}"), succeeded=True, retries=0)


def test_no_eta_without_a_live_farmer(tmp_path: Path) -> None:
    store = _workdir(tmp_path, 10)
    now = time.time()
    _joblog(store, now, 4)
    alone = StatusReader(store, None, lease=300.0).read(now=now)
    assert alone.rate is not None and alone.rate > 0  # the past executions' rate
    assert alone.eta is None and alone.farmers == []
    with store.locked():
        _lease(store, 0)
    running = StatusReader(store, None, lease=300.0).read(now=now)
    assert running.eta is not None and running.eta > 0 and running.farmers[0].live
    silent = StatusReader(store, None, lease=300.0).read(now=now + 3600)  # heartbeat overdue
    assert silent.eta is None and not silent.farmers[0].live
