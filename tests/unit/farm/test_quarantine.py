"""A worker that quarantines its node, driven in-process on a real workdir: what it holds back,
hands back uncounted, records and writes (taskfarmer.farm.quarantine)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from helpers.clock import FakeClock
from helpers.farmer import ids, wait_for

from taskfarmer.farm.blackhole import ROW_HOLD
from taskfarmer.farm.quarantine import WORKER_QUARANTINED, NodeWatch
from taskfarmer.farm.recording import HoldBatch, Result
from taskfarmer.farm.signals import StopRequest
from taskfarmer.farm.worker import Parts, Worker, WorkerConfig
from taskfarmer.hpc.identity import Identity
from taskfarmer.logs.joblog import Entry, JobLog
from taskfarmer.runners import BasicRunner
from taskfarmer.store import (
    QUARANTINE_TIME,
    LeaseName,
    QuarantineRecord,
    StateStore,
    farmer_name,
)
from taskfarmer.store.locking import make_lock
from taskfarmer.tasks import ListTaskList, Task
from taskfarmer.timeline.file import Timeline


def worker(workdir: Path, lines: list[str], node: str = "a", quarantine: int | None = 5
           ) -> Worker:
    store = StateStore(workdir, make_lock(workdir, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize(lines)
    parts = Parts(store, Timeline(workdir / "timeline.json"), BasicRunner(), ListTaskList())
    config = WorkerConfig(slot=0, farmer=farmer_name(node, 1, "ab"), track=1, node=node,
                          quarantine=quarantine)
    return Worker(config, parts, StopRequest(), say=lambda text: None)


def succeeded_elsewhere(workdir: Path, node: str = "b") -> None:
    """The job log shows a task that took a second succeed on ``node`` a moment ago."""
    JobLog(workdir / "joblog").append([Entry(0, 1, node, f"{node}.2-cd", 0, time.time() - 1,
                                             1.0, 0, 0, "finished", "true")])


def pending(workdir: Path) -> list[int]:
    store = StateStore(workdir, make_lock(workdir, "flock", {}))
    with store.locked():
        return sorted(store.ledger.queued_ids())


def outcomes(workdir: Path) -> list[str]:
    lines = (workdir / "joblog").read_text().splitlines()[1:]
    return [line.split("\t")[9] for line in lines]


def test_fast_failures_while_others_succeed_are_handed_back_uncounted(tmp_path: Path) -> None:
    succeeded_elsewhere(tmp_path)
    work = worker(tmp_path, ["exit 127"] * 7)
    before = time.time()
    assert work.run() == WORKER_QUARANTINED
    assert ids(tmp_path / "failed") == [] and ids(tmp_path / "finished") == []
    assert not (tmp_path / "attempts").exists() or (tmp_path / "attempts").read_text() == ""
    assert pending(tmp_path) == list(range(7))  # every task back, to run elsewhere
    record = json.loads((tmp_path / "quarantine" / "a").read_text())
    assert record["node"] == "a" and record["farmer"] == farmer_name("a", 1, "ab")
    assert before <= record["since"] <= time.time()
    assert record["until"] == round(record["since"] + QUARANTINE_TIME, 3)
    assert "tasks in a row failed fast (exit 127" in record["reason"]
    assert "while tasks succeeded on node b (0 of the other nodes" in record["reason"]
    handed = [attempt["id"] for attempt in record["attempts"]]
    assert len(handed) >= 5 and handed == sorted(handed)
    assert all(a["exit"] == 127 and a["signal"] == 0 and a["runtime"] < 1.0
               for a in record["attempts"])
    assert outcomes(tmp_path)[1:].count("quarantined") == len(handed)
    assert set(outcomes(tmp_path)[1:]) == {"quarantined"}
    events = json.loads((tmp_path / "timeline.json").read_text())
    marker = [e for e in events if e["name"] == "node quarantined"]
    assert len(marker) == 1 and marker[0]["args"]["tasks"] == handed


def test_a_node_whose_own_tasks_succeeded_before_quarantines_when_it_breaks(tmp_path: Path
                                                                            ) -> None:
    """The successes just before count, even when they are recorded in the same lock hold
    as the failures are held (the job log has them only afterwards)."""
    work = worker(tmp_path, ["true"] * 3 + ["exit 127"] * 6)
    assert work.run() == WORKER_QUARANTINED
    assert ids(tmp_path / "finished") == [0, 1, 2] and ids(tmp_path / "failed") == []
    record = work.store.quarantines.read("a")
    assert record is not None and "after tasks succeeded on this node" in record.reason
    assert pending(tmp_path) == [3, 4, 5, 6, 7, 8]


def test_a_worker_out_of_tasks_stays_with_its_short_row_while_others_work(tmp_path: Path
                                                                         ) -> None:
    """Nothing to claim for the moment (other workers hold the rest): the worker keeps its
    row of fewer than k, rather than record it, and takes the tasks put back."""
    succeeded_elsewhere(tmp_path)
    work = worker(tmp_path, ["exit 127"] * 3)
    with work.store.locked():  # a worker of node b at work
        work.store.register(str(LeaseName(farmer_name("b", 2, "cd"), 0, 2, 1)),
                            Identity.current(hostname="b"))
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(work.run()))
    runner.start()
    wait_for(lambda: len(work.watch.row) == 3 and not work.queue, what="a row of 3 held")
    with work.store.locked():  # b's worker puts two tasks back
        work.store.requeue([Task(3, "exit 127"), Task(4, "exit 127")])
    runner.join(timeout=60)
    assert codes == [WORKER_QUARANTINED]
    assert ids(tmp_path / "failed") == [] and pending(tmp_path) == [0, 1, 2, 3, 4]


def test_a_node_alone_whose_tasks_all_fail_records_them_as_failed(tmp_path: Path) -> None:
    work = worker(tmp_path, ["exit 127"] * 7)
    assert work.run() == 0
    assert ids(tmp_path / "failed") == list(range(7))
    assert not (tmp_path / "quarantine").exists()


def test_quarantine_off_records_them_as_failed(tmp_path: Path) -> None:
    succeeded_elsewhere(tmp_path)
    work = worker(tmp_path, ["exit 127"] * 7, quarantine=None)
    assert work.run() == 0
    assert ids(tmp_path / "failed") == list(range(7))
    assert not (tmp_path / "quarantine").exists()


def test_tasks_run_before_are_never_suspects(tmp_path: Path) -> None:
    """A task handed back once counts as itself when it fails again: no task goes back twice,
    no quarantine spreads with the tasks."""
    succeeded_elsewhere(tmp_path)
    work = worker(tmp_path, ["exit 127"] * 7)
    with work.store.locked():
        for task_id in range(7):
            work.timeline.state.first_start(task_id)
    assert work.run() == 0
    assert ids(tmp_path / "failed") == list(range(7))


def test_fewer_than_k_held_go_back_when_the_node_was_quarantined_meanwhile(tmp_path: Path
                                                                         ) -> None:
    """Another worker (or farmer) of the node quarantined it: what this one held goes back
    too, and is listed in the record."""
    work = worker(tmp_path, ["exit 127"] * 3)
    now = time.time()
    work.store.quarantines.write(QuarantineRecord("a", now, now + 60, "a.9-zz", "why", ()))
    assert work.run() == 0
    assert ids(tmp_path / "failed") == [] and pending(tmp_path) == [0, 1, 2]
    record = work.store.quarantines.read("a")
    assert record is not None and record.reason == "why"
    assert [run.id for run in record.attempts] == [0, 1, 2]


def test_a_success_breaks_the_row(tmp_path: Path) -> None:
    succeeded_elsewhere(tmp_path)
    work = worker(tmp_path, ["exit 127"] * 4 + ["true"] + ["exit 127"] * 4)
    assert work.run() == 0
    assert ids(tmp_path / "failed") == [0, 1, 2, 3, 5, 6, 7, 8]
    assert ids(tmp_path / "finished") == [4]


def test_a_short_row_is_recorded_once_the_worker_ran_something_else_that_long(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    """A fast failure followed by a long task: the task running is no fast failure, so the
    failure is recorded while it runs, not held for the task's whole run."""
    work = worker(tmp_path, ["exit 127"])
    watch = NodeWatch(work.config, work.store, HoldBatch(work.config, work.store, work.timeline,
                                                         work.joblog, time.time, print),
                      time.time, fake_clock, print)
    failed = Result(Task(0, "exit 127"), "exit 127", 127, 10.0, 10.01, fake_clock())
    with work.store.locked():
        assert watch.sift([failed], final=False) == [] and watch.row == [failed]
        assert watch.due() == fake_clock() + ROW_HOLD
        fake_clock.tick(ROW_HOLD - 0.5)
        assert watch.sift([], final=False) == []
        fake_clock.tick(1.0)
        assert watch.sift([], final=False) == [failed]
    assert watch.row == [] and watch.due() is None
