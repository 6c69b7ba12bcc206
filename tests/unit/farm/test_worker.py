"""The worker's own rules, driven directly: held results and the stop race, slots busy exactly
while their task runs."""

from __future__ import annotations

import signal
from pathlib import Path

from helpers.clock import FakeClock
from helpers.farmer import ids

from taskfarmer.farm.recording import RESULT_HOLD
from taskfarmer.farm.signals import StopRequest
from taskfarmer.farm.worker import Parts, Worker, WorkerConfig
from taskfarmer.runners import BasicRunner
from taskfarmer.store import StateStore
from taskfarmer.store.locking import make_lock
from taskfarmer.tasks import ListTaskList
from taskfarmer.timeline.file import Timeline


def worker_with_clock(workdir: Path, lines: list[str], clock: FakeClock
                      ) -> tuple[Worker, StopRequest]:
    store = StateStore(workdir, make_lock(workdir, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize(lines)
    stop = StopRequest(clock=clock)
    parts = Parts(store, Timeline(workdir / "timeline.json"), BasicRunner(), ListTaskList())
    worker = Worker(WorkerConfig(slot=0, farmer="f", track=1, node="n"), parts, stop,
                    monotonic=clock, say=lambda text: None)
    with store.locked():
        worker.lease = worker._register()
        worker.queue.extend(store.claim(worker.lease, 1))
    return worker, stop


def leave(worker: Worker) -> None:
    with worker.store.locked():
        worker._settle(final=True)
        worker.store.requeue(worker.queue)
        worker.store.release(worker.lease)


def test_a_result_that_ends_just_before_a_stop_is_put_back(tmp_path: Path,
                                                          fake_clock: FakeClock) -> None:
    """SLURM signalled the whole step: the task's command died, its shell exited 0 first."""
    worker, stop = worker_with_clock(tmp_path, ["true"], fake_clock)
    result = worker._execute(worker.queue.popleft())
    assert result is not None and result.returncode == 0
    worker.results.append(result)
    fake_clock.tick(RESULT_HOLD / 2)
    stop.handle(signal.SIGUSR1)  # our own copy of the signal, a moment later
    leave(worker)
    assert ids(tmp_path / "finished") == []
    assert ids(tmp_path / "toprocess") == [0, 0]  # taken, then put back


def test_a_result_older_than_the_hold_is_recorded_despite_a_stop(tmp_path: Path,
                                                                 fake_clock: FakeClock) -> None:
    worker, stop = worker_with_clock(tmp_path, ["true"], fake_clock)
    worker.results.append(worker._execute(worker.queue.popleft()))
    fake_clock.tick(RESULT_HOLD * 2)
    stop.handle(signal.SIGUSR1)
    leave(worker)
    assert ids(tmp_path / "finished") == [0]


def test_a_slot_is_busy_exactly_while_its_task_runs(tmp_path: Path) -> None:
    """Held results are recorded during the next task: that must not mark the slot idle."""
    store = StateStore(tmp_path, make_lock(tmp_path, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize(["true", "sleep 0.5"])
    marks: list[int] = []
    parts = Parts(store, Timeline(tmp_path / "timeline.json"), BasicRunner(), ListTaskList())
    worker = Worker(WorkerConfig(slot=0, farmer="f", track=1, node="n"), parts, StopRequest(),
                    say=lambda text: None, on_change=lambda slot, task_id: marks.append(task_id))
    assert worker.run() == 0
    assert marks == [0, -1, 1, -1]
    assert ids(tmp_path / "finished") == [0, 1]
