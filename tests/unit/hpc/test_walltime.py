"""Time limits outside SLURM, in pieces: :mod:`taskfarmer.hpc.walltime` with clocks injected
(the farmer with ``--timeout`` and ``--task-time``: e2e/test_time_limits.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from helpers.clock import FakeClock

from taskfarmer.hpc.walltime import (
    MIN_SAMPLES,
    DurationSource,
    Limit,
    TaskTime,
    Walltime,
    limits,
    parse_slurm_time,
    percentile,
    slurm_job_end,
)
from taskfarmer.logs.joblog import Entry, JobLog, JobLogDurations


def test_parse_slurm_time() -> None:
    assert parse_slurm_time("2026-11-28T05:12:00") == time.mktime(
        (2026, 11, 28, 5, 12, 0, 0, 0, -1))
    for text in ("Unknown", "N/A", "NONE", "", "2026-11-28"):
        assert parse_slurm_time(text) is None


def test_slurm_job_end_sources() -> None:
    calls: list[list[str]] = []

    def run(outputs: dict):
        def command(argv: Sequence[str]) -> str | None:
            calls.append(list(argv))
            return outputs.get(argv[0])
        return command
    assert slurm_job_end({"SLURM_JOB_END_TIME": "1800000000", "SLURM_JOB_ID": "7"},
                         run({})) == 1800000000.0
    assert calls == []
    assert slurm_job_end({}, run({"squeue": "2026-11-28T05:12:00\n"})) is None  # not a job
    end = parse_slurm_time("2026-11-28T05:12:00")
    assert slurm_job_end({"SLURM_JOB_ID": "7"}, run({"squeue": "2026-11-28T05:12:00\n"})) == end
    assert calls[-1] == ["squeue", "-h", "-j", "7", "-o", "%e"]
    show = "JobId=7 JobName=x\n   RunTime=00:00:10 TimeLimit=00:01:00\n   " \
           "StartTime=2026-11-28T05:11:00 EndTime=2026-11-28T05:12:00 Deadline=N/A\n"
    assert slurm_job_end({"SLURM_JOB_ID": "7"}, run({"scontrol": show})) == end
    assert calls[-1] == ["scontrol", "show", "job", "7"]
    unlimited = show.replace("EndTime=2026-11-28T05:12:00", "EndTime=Unknown")
    assert slurm_job_end({"SLURM_JOB_ID": "7"}, run({"scontrol": unlimited})) is None
    assert slurm_job_end({"SLURM_JOB_ID": "7"}, run({})) is None


def _execution(joblog: JobLog, seconds: float, outcome: str = "finished") -> None:
    joblog.append([Entry(0, 1, "n1", "f", 0, 1000.0, seconds, 0, 0, outcome, "task")])


def test_joblog_durations_counts_each_finished_execution_once(tmp_path: Path) -> None:
    joblog = JobLog(tmp_path / "joblog")
    source = JobLogDurations(joblog.path)
    assert source.new() == []  # no file yet
    _execution(joblog, 2.0)
    assert source.new() == [2.0]
    assert source.new() == []
    _execution(joblog, 3.0, outcome="failed")
    _execution(joblog, 4.0)
    _execution(joblog, 5.0, outcome="retry")
    with open(joblog.path, "ab") as handle:  # a line being written: not counted yet
        handle.write(b"7\t1\tn1\tf\t0\t1000000\t7.000")
    assert source.new() == [4.0]
    with open(joblog.path, "ab") as handle:
        handle.write(b"\t0\t0\tfinished\ttask\n")
    _execution(joblog, 6.0)
    assert source.new() == [7.0, 6.0]
    later = JobLogDurations(joblog.path)  # a new farmer reads the whole history
    assert later.new() == [2.0, 4.0, 7.0, 6.0]


def test_joblog_durations_reads_only_the_tail_at_first(tmp_path: Path) -> None:
    joblog = JobLog(tmp_path / "joblog")
    for seconds in range(1, 101):
        _execution(joblog, float(seconds))
    tail = JobLogDurations(joblog.path, tail=1000)
    found = tail.new()
    assert 0 < len(found) < 100 and found == [float(s) for s in range(101 - len(found), 101)]


class _Fixed(DurationSource):
    def __init__(self, *batches: list[float]) -> None:
        self.batches = list(batches)

    def new(self) -> list[float]:
        return self.batches.pop(0) if self.batches else []


def test_percentile_and_task_time() -> None:
    assert percentile([5, 1, 3, 2, 4], 90) == 5
    assert percentile(list(range(1, 101)), 90) == 90
    assert percentile([7], 90) == 7
    assert TaskTime(20.0, _Fixed([1.0] * 10)).expected() == 20.0
    learned = TaskTime(None, _Fixed([1.0] * (MIN_SAMPLES - 1), [9.0]))
    assert learned.expected() is None  # not enough yet
    assert learned.expected() == 9.0
    assert f"percentile of {MIN_SAMPLES} finished" in learned.describe()
    assert TaskTime(None).expected() is None


def test_walltime_gate_and_stop_with_a_clock(fake_clock: FakeClock) -> None:
    found = limits(fake_clock(), timeout=100.0, job_end=1080.0, margin=30.0)
    assert [(limit.at, limit.reason) for limit in found] == [(1100.0, "timeout"),
                                                             (1050.0, "time limit")]
    walltime = Walltime.earliest(found, TaskTime(20.0), clock=fake_clock)
    assert walltime is not None and walltime.stop_at == 1050.0
    assert walltime.latest_start() == 1030.0
    fake_clock.tick(35.0)
    assert walltime.why_no_start(99.0).startswith(
        "starting no more tasks: 15 s left until the job's end at ")
    assert "minus 30 s, tasks are expected to take 20 s (--task-time)" in \
        walltime.why_no_start(99.0)
    unknown = Walltime(Limit(1050.0, "--timeout", "timeout"), TaskTime(None), fake_clock)
    assert unknown.latest_start() == 1050.0  # nothing learned: the farm counts its longest
    assert "take 17 s (the longest this farmer ran; too few finished to learn)" in \
        unknown.why_no_start(17.0)
    # The line promises no exit code it cannot know: with nothing left (a --follow farmer
    # waiting for more lines) the farmer exits 0.
    assert unknown.why_no_start(17.0).endswith(
        "running ones finish, then the farmer exits (code 3 if work is left)")
    assert Walltime.earliest([], TaskTime(1.0)) is None
