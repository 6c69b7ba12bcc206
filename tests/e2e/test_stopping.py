"""The worker's own rules, driven directly: held results, the stop race, grace for children."""

from __future__ import annotations

import signal
from pathlib import Path

from helpers.farmer import ids, start_farmer, stop, wait_for, write_tasklist

from taskfarmer.farm.recording import RESULT_HOLD
from taskfarmer.farm.signals import StopRequest
from taskfarmer.farm.worker import Parts, Worker, WorkerConfig
from taskfarmer.runners import BasicRunner
from taskfarmer.store import StateStore
from taskfarmer.store.locking import make_lock
from taskfarmer.tasks import ListTaskList
from taskfarmer.timeline.file import Timeline


def worker_with_clock(workdir: Path, lines: list[str]) -> tuple[Worker, StopRequest, list[float]]:
    now = [100.0]
    store = StateStore(workdir, make_lock(workdir, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize(lines)
    stop = StopRequest(clock=lambda: now[0])
    parts = Parts(store, Timeline(workdir / "timeline.json"), BasicRunner(), ListTaskList())
    worker = Worker(WorkerConfig(slot=0, farmer="f", track=1, node="n"), parts, stop,
                    monotonic=lambda: now[0], say=lambda text: None)
    with store.locked():
        worker.lease = worker._register()
        worker.queue.extend(store.claim(worker.lease, 1))
    return worker, stop, now


def leave(worker: Worker) -> None:
    with worker.store.locked():
        worker._settle(final=True)
        worker.store.requeue(worker.queue)
        worker.store.release(worker.lease)


def test_a_result_that_ends_just_before_a_stop_is_put_back(tmp_path: Path) -> None:
    """SLURM signalled the whole step: the task's command died, its shell exited 0 first."""
    worker, stop, now = worker_with_clock(tmp_path, ["true"])
    result = worker._execute(worker.queue.popleft())
    assert result is not None and result.returncode == 0
    worker.results.append(result)
    now[0] += RESULT_HOLD / 2
    stop.handle(signal.SIGUSR1)  # our own copy of the signal, a moment later
    leave(worker)
    assert ids(tmp_path / "finished") == []
    assert ids(tmp_path / "toprocess") == [0, 0]  # taken, then put back


def test_a_result_older_than_the_hold_is_recorded_despite_a_stop(tmp_path: Path) -> None:
    worker, stop, now = worker_with_clock(tmp_path, ["true"])
    worker.results.append(worker._execute(worker.queue.popleft()))
    now[0] += RESULT_HOLD * 2
    stop.handle(signal.SIGUSR1)
    leave(worker)
    assert ids(tmp_path / "finished") == [0]


def test_held_results_are_recorded_while_the_next_task_runs(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true", f"sleep 300 # {tmp_path}"])
    farmer = start_farmer([str(tasks), "-n", "1"])
    workdir = tmp_path / "t_workdir"
    # Task 0 must be recorded while task 1 (300 s) runs, not after it.
    wait_for(lambda: ids(workdir / "finished") == [0], timeout=60, what="task 0 recorded")
    result = stop(farmer, signal.SIGUSR1)
    assert result.returncode == 3
    assert ids(workdir / "toprocess") == [1]


def test_children_of_a_stopped_task_get_the_grace_period(tmp_path: Path) -> None:
    """The task's shell dies at once on SIGTERM; its child's cleanup still gets to run."""
    cleaned = tmp_path / "cleaned"
    started = tmp_path / "started"
    inner = (f"trap 'sleep 0.5; echo yes > {cleaned}; exit 0' TERM; touch {started}; "
             "while :; do sleep 0.1; done")
    tasks = write_tasklist(tmp_path / "t", [f'sh -c "{inner}"; echo outer done'])
    farmer = start_farmer([str(tasks), "-n", "1"])
    wait_for(started.exists, what="inner shell running")
    result = stop(farmer, signal.SIGUSR1)
    assert result.returncode == 3
    assert cleaned.read_text() == "yes\n"
    assert ids(tmp_path / "t_workdir" / "toprocess") == [0]


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
