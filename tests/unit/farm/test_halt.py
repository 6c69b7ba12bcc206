"""``--halt``: the rule parsed alone, judged on a real workdir, obeyed by a real worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.clock import FakeClock
from helpers.farmer import ids

from taskfarmer.errors import ExitCode, HaltedError, UsageError
from taskfarmer.farm.halt import MIN_RATE_TASKS, Halt, HaltPolicy, parse_halt
from taskfarmer.farm.recording import Result
from taskfarmer.farm.signals import StopRequest
from taskfarmer.farm.worker import Parts, Worker, WorkerConfig
from taskfarmer.hpc.identity import Identity
from taskfarmer.runners import BasicRunner
from taskfarmer.store import NOW, SOON, HaltRecord, StateStore, read_halt
from taskfarmer.store.locking import make_lock
from taskfarmer.tasks import ListTaskList, Task
from taskfarmer.timeline.file import Timeline


@pytest.mark.parametrize(("text", "policy"), [
    ("now,fail=1", HaltPolicy(NOW, count=1)),
    ("soon,fail=3", HaltPolicy(SOON, count=3)),
    ("fail=2", HaltPolicy(SOON, count=2)),
    (" NOW,Fail=10% ", HaltPolicy(NOW, percent=10.0)),
    ("fail=0.5%", HaltPolicy(SOON, percent=0.5)),
    ("soon,fail=100%", HaltPolicy(SOON, percent=100.0)),
    ("never", None),
])
def test_the_rules_parse(text: str, policy: HaltPolicy | None) -> None:
    assert parse_halt(text) == policy
    if policy is not None:
        assert parse_halt(policy.describe()) == policy  # what the record and the log say


@pytest.mark.parametrize("text", [
    "", "1", "2", "fail", "fail=", "fail=0", "fail=-1", "fail=1.5", "fail=x", "fail=1e3",
    "fail=nan", "fail=inf", "fail=0%", "fail=-5%", "fail=101%", "fail=nan%", "fail=inf%",
    "fail=%", "later,fail=1", "now,", "now,fail=1,x", "success=1", "now,done=2", "never,fail=1",
])
def test_a_bad_rule_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_halt(text)
    assert raised.value.argument == text
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{text}: ")


def test_a_count_and_a_rate_are_reached() -> None:
    assert not HaltPolicy(NOW, count=2).reached(1, 1)
    assert HaltPolicy(NOW, count=2).reached(2, 2)
    rate = HaltPolicy(SOON, percent=50.0)
    assert not rate.reached(MIN_RATE_TASKS - 1, MIN_RATE_TASKS - 1)  # too few ended yet
    assert rate.reached(MIN_RATE_TASKS // 2, MIN_RATE_TASKS)
    assert not rate.reached(MIN_RATE_TASKS // 2 - 1, MIN_RATE_TASKS)


def test_the_record_and_a_file_made_by_hand() -> None:
    record = HaltRecord(NOW, "now,fail=1", 1, 3, "node.1-aa", 1000.0, 7)
    assert HaltRecord.decode(record.encode()) == record
    assert "--halt now,fail=1 reached at task 7 (1 of 3 task(s) failed)" in record.describe()
    for data in (b"", b"please stop\n", b'{"when": "later"}', b"[1]"):
        assert HaltRecord.decode(data) == HaltRecord(SOON)
    assert "by hand" in HaltRecord(SOON).describe()


def _store(workdir: Path, lines: list[str]) -> StateStore:
    store = StateStore(workdir, make_lock(workdir, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize(lines)
    return store


def _identity() -> Identity:
    return Identity.current(extra={"farmer": "f.1-aa", "worker": "0"})


def _failed(task_id: int) -> Result:
    return Result(Task(task_id, "false"), "false", 1, 0.0, 0.0, 0.0)


def test_failures_from_the_start_on_reach_the_count(tmp_path: Path,
                                                   fake_clock: FakeClock) -> None:
    store = _store(tmp_path, ["false"] * 5)
    with store.locked():
        lease = store.register("f.1-aa.w0.9.1", _identity())
        tasks = store.claim(lease, 4)
        store.record(lease, tasks[0], succeeded=False)  # before this farmer started
        halt = Halt(store, HaltPolicy(NOW, count=2), "f.1-aa", fake_clock, fake_clock)
        halt.refuse_halted()
        halt.count_from_here()
        store.record(lease, tasks[1], succeeded=False)
        halt.judge([_failed(1)])
        # 1 failure since
        assert halt.record is None and read_halt(store.files, locked=False) is None
        store.record(lease, tasks[2], succeeded=True)
        halt.judge([Result(tasks[2], "true", 0, 0.0, 0.0, 0.0)])
        store.record(lease, tasks[3], succeeded=False)
        halt.judge([_failed(3)])
    assert halt.record == HaltRecord(NOW, "now,fail=2", 2, 2, "f.1-aa", fake_clock(), 3)
    assert read_halt(store.files, locked=False) == halt.record
    other = Halt(store, None, "g.2-bb", fake_clock, fake_clock)  # a farmer without --halt
    assert other.look() == halt.record and other.look() is None  # told once
    with store.locked():
        assert Halt(store, None, "h.3-cc", fake_clock, fake_clock).before_claim()
        with pytest.raises(HaltedError) as refused:
            Halt(store, None, "h.3-cc", fake_clock, fake_clock).refuse_halted()
    assert refused.value.exit_code == ExitCode.HALTED == 5
    assert f"remove {tmp_path}/halted to farm on" in str(refused.value)


def test_a_rate_counts_the_finished_tasks_too(tmp_path: Path, fake_clock: FakeClock) -> None:
    store = _store(tmp_path, ["true"] * MIN_RATE_TASKS)
    halt = Halt(store, HaltPolicy(SOON, percent=20.0), "f.1-aa", fake_clock, fake_clock)
    with store.locked():
        halt.count_from_here()
        lease = store.register("f.1-aa.w0.9.1", _identity())
        tasks = store.claim(lease, MIN_RATE_TASKS)
        for task in tasks[:-2]:
            store.record(lease, task, succeeded=True)
        store.record(lease, tasks[-2], succeeded=False)
        halt.judge([_failed(tasks[-2].id)])
        assert halt.record is None  # 1 of 9 ended: too few to judge, and only 11 %
        store.record(lease, tasks[-1], succeeded=False)
        halt.judge([_failed(tasks[-1].id)])
    assert halt.record is not None and (halt.record.failed, halt.record.ended) == (2, 10)


def _worker(store: StateStore, workdir: Path, policy: HaltPolicy | None) -> Worker:
    parts = Parts(store, Timeline(workdir / "timeline.json"), BasicRunner(), ListTaskList())
    halt = Halt(store, policy, "f", lambda: 0.0, lambda: 0.0)
    with store.locked():
        halt.count_from_here()
    return Worker(WorkerConfig(slot=0, farmer="f", track=1, node="n"), parts, StopRequest(),
                  say=lambda text: None, halt=halt)


def test_a_worker_starts_nothing_after_the_failure_that_halts_the_farm(tmp_path: Path) -> None:
    """A held failure may halt the farm: the worker claims and starts nothing until it is
    recorded (a moment later) and judged; that hold writes the record."""
    ran = tmp_path / "ran"
    ran.mkdir()
    workdir = tmp_path / "w"
    store = _store(workdir, ["exit 3", *[f"touch {ran}/{n}" for n in (1, 2, 3)]])
    assert _worker(store, workdir, HaltPolicy(SOON, count=1)).run() == 0
    assert ids(workdir / "failed") == [0] and ids(workdir / "finished") == []
    assert list(ran.iterdir()) == [] and (workdir / "halted").exists()
    with store.locked():
        assert store.pending_count(10) == 3


def test_a_worker_without_halt_obeys_the_record(tmp_path: Path) -> None:
    store = _store(tmp_path / "w", [f"touch {tmp_path}/ran"])
    (tmp_path / "w" / "halted").write_text("stop, please\n")  # by hand
    assert _worker(store, tmp_path / "w", None).run() == 0
    assert not (tmp_path / "ran").exists()
    with store.locked():
        assert store.pending_count(10) == 1
