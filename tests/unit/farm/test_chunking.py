"""How many tasks a claim takes and when held results are recorded: the pure rules, and a
worker following them."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from helpers.farmer import ids

from taskfarmer.farm.chunking import (
    CLAIM_PERIOD,
    DURATION_WEIGHT,
    HAND_BACK_AFTER,
    MAX_CHUNK,
    RECORD_DELAY,
    DurationEstimate,
    chunk_size,
    earliest,
    hand_back_due,
    record_due,
    wanted,
)
from taskfarmer.farm.claiming import COUNT_LIMIT, FarmDurations
from taskfarmer.farm.recording import RESULT_HOLD
from taskfarmer.farm.signals import StopRequest
from taskfarmer.farm.worker import Parts, Worker, WorkerConfig
from taskfarmer.hpc.identity import Identity
from taskfarmer.runners import BasicRunner
from taskfarmer.store import StateStore
from taskfarmer.store.locking import make_lock
from taskfarmer.tasks import ListTaskList
from taskfarmer.timeline.file import Timeline


def test_one_task_at_a_time_until_a_duration_is_known() -> None:
    assert wanted(DurationEstimate()) == 1


@pytest.mark.parametrize(("mean", "expected"), [
    (CLAIM_PERIOD * 2, 1),  # long tasks: one per claim
    (CLAIM_PERIOD / 4, 4),
    (CLAIM_PERIOD / 4.5, 4),  # rounded down: a claim never holds more than the period
    (CLAIM_PERIOD / 10_000, MAX_CHUNK),
    (0.0, MAX_CHUNK),
])
def test_a_claim_holds_about_a_claim_period_of_work(mean: float, expected: int) -> None:
    assert wanted(DurationEstimate(mean, count=1000)) == expected


def test_a_chunk_grows_no_faster_than_the_tasks_measured() -> None:
    """One short task says little of the next: a long one claimed behind it would keep the
    rest of the chunk waiting while other slots idle."""
    estimate = DurationEstimate()
    sizes = []
    for _ in range(MAX_CHUNK + 2):
        estimate.add(CLAIM_PERIOD / 10_000)
        sizes.append(wanted(estimate))
    assert sizes == [*range(1, MAX_CHUNK + 1), MAX_CHUNK, MAX_CHUNK]


def test_the_duration_estimate_follows_the_tasks() -> None:
    estimate = DurationEstimate()
    estimate.add(1.0)
    assert estimate.mean == 1.0
    for _ in range(50):
        estimate.add(0.01)
    assert estimate.mean == pytest.approx(0.01, abs=1e-4)
    estimate.add(-1.0)  # a clock step backwards counts as an instant task, not a negative one
    assert estimate.mean is not None and estimate.mean >= 0


def test_the_whole_chunk_while_the_list_holds_enough_for_every_claimant() -> None:
    assert chunk_size(want=16, pending=16 * 4, claimants=4) == 16


@pytest.mark.parametrize(("pending", "claimants", "expected"), [
    (12, 1, 6),  # half of what is left
    (20, 4, 2),
    (5, 4, 1),  # at least one
    (0, 4, 1),  # (the claim then finds nothing)
    (12, 0, 6),  # no lease file counted yet: this worker alone
])
def test_near_the_end_a_share_of_what_is_left(pending: int, claimants: int,
                                             expected: int) -> None:
    assert chunk_size(want=16, pending=pending, claimants=claimants) == expected


def test_held_results_wait_for_the_youngest_hold_and_the_oldest_delay() -> None:
    assert record_due(oldest_end=10.0, youngest_end=10.5) == 10.0 + RECORD_DELAY
    late = 10.0 + RECORD_DELAY
    assert record_due(oldest_end=10.0, youngest_end=late) == late + RESULT_HOLD


def test_queued_tasks_are_handed_back_once_the_running_one_overruns() -> None:
    assert hand_back_due(started=10.0, queued=3) == 10.0 + HAND_BACK_AFTER
    assert hand_back_due(started=10.0, queued=0) is None  # nothing waits behind it
    assert hand_back_due(started=None, queued=3) is None  # no task runs


def test_the_next_chore_is_the_earliest_due() -> None:
    assert earliest(None, 3.0, None, 2.0, 5.0) == 2.0
    assert earliest(0.0, 1.0) == 0.0
    assert earliest(None, None) is None and earliest() is None


def _worker(workdir: Path, lines: list[str], slots: int = 1, **kwargs: object) -> Worker:
    store = StateStore(workdir, make_lock(workdir, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize(lines)
    parts = Parts(store, Timeline(workdir / "timeline.json"), BasicRunner(), ListTaskList())
    return Worker(WorkerConfig(slot=0, farmer="f", track=1, node="n", slots=slots), parts,
                  StopRequest(), say=lambda text: None, **kwargs)  # type: ignore[arg-type]


def _claimed(worker: Worker) -> list[int]:
    with worker.store.locked():
        worker.lease = worker._register()
        return [task.id for task in worker._claim()]


def test_short_tasks_are_claimed_a_chunk_at_a_time(tmp_path: Path) -> None:
    worker = _worker(tmp_path, ["true"] * (MAX_CHUNK * 2 + 10))
    worker.sizer.durations = DurationEstimate(CLAIM_PERIOD / 1000, count=1000)
    assert _claimed(worker) == list(range(MAX_CHUNK))
    assert ids(tmp_path / "claims") == list(range(MAX_CHUNK))


def test_the_last_tasks_are_shared_between_the_workers(tmp_path: Path) -> None:
    worker = _worker(tmp_path, ["true"] * 12)
    worker.sizer.durations = DurationEstimate(CLAIM_PERIOD / 1000, count=1000)
    with worker.store.locked():
        for slot in (1, 2):  # two more workers of the workdir
            worker.store.register(f"other-{slot}", Identity.current(environ={}))
    assert _claimed(worker) == [0, 1]  # 12 // (2 * 3 lease files)


def test_claimed_tasks_not_started_go_back_when_the_start_gate_closes(tmp_path: Path) -> None:
    started: list[int] = []
    tasks = MAX_CHUNK * 2 + 8
    worker = _worker(tmp_path, [f"echo {n}" for n in range(tasks)],
                     on_change=lambda slot, task_id: started.append(task_id),
                     may_start=lambda: not started)  # closes once the first task started
    worker.sizer.durations = DurationEstimate(CLAIM_PERIOD / 1000, count=1000)
    assert worker.run() == 0
    assert ids(tmp_path / "finished") == [0]
    with worker.store.locked():
        assert worker.store.pending_count(tasks) == tasks - 1
        assert not worker.store.any_leases()
    assert ids(tmp_path / "toprocess")[-MAX_CHUNK + 1:] == list(range(1, MAX_CHUNK))  # put back


def test_far_from_the_end_of_the_list_a_claim_counts_few_tasks(tmp_path: Path) -> None:
    """64 claimants would need 64 chunks counted to tell whether the end is near; past
    COUNT_LIMIT pending tasks a full chunk is taken without counting further."""
    worker = _worker(tmp_path, ["true"] * (COUNT_LIMIT + 100), slots=64)
    worker.sizer.durations = DurationEstimate(CLAIM_PERIOD / 1000, count=1000)
    assert len(_claimed(worker)) == MAX_CHUNK  # though fewer than MAX_CHUNK x 64 wait
    small = _worker(tmp_path / "small", ["true"] * 1000, slots=64)
    small.sizer.durations = DurationEstimate(CLAIM_PERIOD / 1000, count=1000)
    assert len(_claimed(small)) == 1000 // (2 * 64)  # near the end: a share of what is left


def test_a_worker_sizes_its_claims_from_what_its_whole_farmer_measured(tmp_path: Path) -> None:
    """Worker 0 ran one task; its 63 siblings ran 400 between them: its next chunk is sized
    from the 401 (a worker alone would claim 1, 1, 2, 4 ... : one lock hold each)."""
    farm = FarmDurations(multiprocessing.get_context("fork"))
    sibling = _worker(tmp_path / "sibling", ["true"], durations=farm)
    for _ in range(400):
        sibling.sizer.learn(CLAIM_PERIOD / 1000)
    worker = _worker(tmp_path, ["true"] * (COUNT_LIMIT + 500), slots=64, durations=farm)
    worker.sizer.learn(CLAIM_PERIOD / 1000)
    assert worker.sizer.durations.count == 1
    assert farm.estimate().count == 401
    assert len(_claimed(worker)) == MAX_CHUNK
    alone = _worker(tmp_path / "alone", ["true"] * 100)
    alone.sizer.learn(CLAIM_PERIOD / 1000)
    assert len(_claimed(alone)) == 1


def test_the_farmers_estimate_is_shared_with_forked_workers() -> None:
    farm = FarmDurations(multiprocessing.get_context("fork"))
    assert farm.estimate() == DurationEstimate()
    child = multiprocessing.get_context("fork").Process(target=farm.add, args=(2.0,))
    child.start()
    child.join()
    farm.add(1.0)
    assert farm.estimate() == DurationEstimate(2.0 + DURATION_WEIGHT * (1.0 - 2.0), count=2)


def test_the_farmers_own_slots_count_before_they_registered(tmp_path: Path) -> None:
    """At start-up the first worker claims before its siblings have lease files: it must not
    take the end of the list alone (they would find nothing, exit, and leave its chunk to
    run one task after the other)."""
    worker = _worker(tmp_path, ["true"] * 12, slots=3)
    worker.sizer.durations = DurationEstimate(CLAIM_PERIOD / 1000, count=1000)
    assert _claimed(worker) == [0, 1]  # 12 // (2 * 3 slots), though 1 lease file exists


def test_tasks_queued_behind_a_long_one_are_handed_back(tmp_path: Path) -> None:
    """A chunk sized for short tasks met a long one: the tasks behind it go back into
    toprocess while it runs (for the free slots), instead of waiting for it."""
    worker = _worker(tmp_path, [f"sleep {HAND_BACK_AFTER + 0.5}", "true", "true"])
    with worker.store.locked():
        worker.lease = worker._register()
        worker._take(worker.store.claim(worker.lease, 3))
    assert worker._run_queue()
    assert [result.task.id for result in worker.results] == [0]  # only the long one ran
    assert not worker.queue
    with worker.store.locked():
        assert worker.store.pending_count(10) == 2
    assert ids(tmp_path / "toprocess")[-2:] == [1, 2]  # put back while task 0 ran
