"""Time limits outside SLURM: the pieces of :mod:`taskfarmer.hpc.walltime` (clocks injected) and
the farmer with ``--timeout`` and ``--task-time`` or durations learned from its workdir.

The SLURM side (the job's end found with squeue, jobs of one minute) is in
``tests/external/slurm/test_walltime_slurm.py``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from helpers.farmer import ids, run_farmer, start_farmer, wait_for, write_tasklist

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


def test_walltime_gate_and_stop_with_a_clock() -> None:
    now = [1000.0]
    found = limits(1000.0, timeout=100.0, job_end=1080.0, margin=30.0)
    assert [(limit.at, limit.reason) for limit in found] == [(1100.0, "timeout"),
                                                             (1050.0, "time limit")]
    walltime = Walltime.earliest(found, TaskTime(20.0), clock=lambda: now[0])
    assert walltime is not None and walltime.stop_at == 1050.0
    assert walltime.latest_start() == 1030.0
    now[0] = 1035.0
    assert walltime.why_no_start(99.0).startswith(
        "starting no more tasks: 15 s left until the job's end at ")
    assert "minus 30 s, tasks are expected to take 20 s (--task-time)" in \
        walltime.why_no_start(99.0)
    unknown = Walltime(Limit(1050.0, "--timeout", "timeout"), TaskTime(None), lambda: now[0])
    assert unknown.latest_start() == 1050.0  # nothing learned: the farm counts its longest
    assert "take 17 s (the longest this farmer ran; too few finished to learn)" in \
        unknown.why_no_start(17.0)
    assert Walltime.earliest([], TaskTime(1.0)) is None


# -- the farmer with --timeout ---------------------------------------------------------------

#: A task that records its start in runs/ID and, if "gated", waits until the gate file exists.
TASK_SH = """\
touch "$1/runs/$PROC_NUMBER"
if [ "$2" = gated ]; then
    i=0
    while [ ! -e "$1/gate" ]; do i=$((i + 1)); [ "$i" -lt 3000 ] || exit 1; sleep 0.02; done
fi
"""


def _tasks(tmp_path: Path, kinds: list[str]) -> Path:
    (tmp_path / "runs").mkdir()
    (tmp_path / "task.sh").write_text(TASK_SH)
    return write_tasklist(tmp_path / "t", [f"sh {tmp_path}/task.sh {tmp_path} {kind} {i}"
                                           for i, kind in enumerate(kinds)])


def test_no_task_starts_that_cannot_finish_before_the_timeout(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path, ["quick"] * 3)
    result = run_farmer([str(tasks), "--timeout", "30", "--task-time", "40"])
    assert result.returncode == 3, result.stderr
    assert "starting no more tasks: 30 s left until --timeout, tasks are expected to take " \
           "40 s (--task-time)" in result.stdout
    assert ids(tmp_path / "t_workdir" / "toprocess") == [0, 1, 2]
    assert list((tmp_path / "runs").iterdir()) == []


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of ``pid`` so far, in clock ticks."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _gate_closes_while_tasks_run(tmp_path: Path, gated: int, quick: int) -> str:
    """Run ``gated`` gated tasks then ``quick`` quick ones, ``gated`` at a time, with a start
    gate that closes 3 s after the start (--timeout 60, --task-time 57); open the tasks' gate
    once it did. The gated tasks finish, nothing else starts, the farmer exits 3 at once."""
    tasks = _tasks(tmp_path, ["gated"] * gated + ["quick"] * quick)
    farmer = start_farmer([str(tasks), "-n", str(gated), "--timeout", "60",
                           "--task-time", "57"])
    lines: list[str] = []
    assert farmer.stdout is not None
    wait_for(lambda: lines.append(farmer.stdout.readline()) or "starting no more" in lines[-1],
             timeout=50, what="the gate to close")
    ticks = _cpu_ticks(farmer.pid)
    time.sleep(1.0)  # measuring: the farmer waits for its tasks without spinning
    assert _cpu_ticks(farmer.pid) - ticks < 0.3 * os.sysconf("SC_CLK_TCK")
    start = time.monotonic()
    (tmp_path / "gate").touch()
    out, err = farmer.communicate(timeout=30)
    assert farmer.returncode == 3, err
    assert time.monotonic() - start < 20  # not waiting for the --timeout
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == list(range(gated))
    assert ids(workdir / "toprocess") == list(range(gated, gated + quick))
    assert ids(workdir / "failed") == []
    assert sorted(int(p.name) for p in (tmp_path / "runs").iterdir()) == list(range(gated))
    assert "stopping at" not in out and "stopped by timeout, work left" in out
    return out


def test_running_tasks_finish_then_the_farmer_exits_at_once(tmp_path: Path) -> None:
    _gate_closes_while_tasks_run(tmp_path, gated=2, quick=2)


def test_before_anything_is_learned_the_longest_task_counts(tmp_path: Path) -> None:
    """A fresh workdir, one worker, tasks of 4 s, --timeout 6: after the first task nothing
    is learned yet (1 finished), but a second task like it would not end in time."""
    (tmp_path / "runs").mkdir()
    tasks = write_tasklist(tmp_path / "t", [f"touch {tmp_path}/runs/$PROC_NUMBER; sleep 4"] * 3)
    result = run_farmer([str(tasks), "-n", "1", "--timeout", "6"])
    assert result.returncode == 3, result.stderr
    assert "(the longest this farmer ran; too few finished to learn)" in result.stdout
    assert "stopping at" not in result.stdout  # nothing had to be killed
    assert ids(tmp_path / "t_workdir" / "finished") == [0]
    assert ids(tmp_path / "t_workdir" / "toprocess") == [1, 2]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["0"]


def test_task_time_learned_from_the_workdir(tmp_path: Path) -> None:
    """After 4 tasks of about 3 s, a run with a --timeout of half the shortest starts nothing
    (the 90th percentile does not fit), a run with --timeout 60 runs the rest."""
    _gate_closes_while_tasks_run(tmp_path, gated=MIN_SAMPLES, quick=2)
    tasks = tmp_path / "t"
    events = json.loads((tmp_path / "t_workdir" / "timeline.json").read_text())
    shortest = min(e["dur"] for e in events if e["ph"] == "X") / 1e6  # about 3 s
    short = run_farmer([str(tasks), "--timeout", str(shortest / 2)])
    assert short.returncode == 3, short.stderr
    assert f"(90th percentile of {MIN_SAMPLES} finished task(s))" in short.stdout
    assert ids(tmp_path / "t_workdir" / "toprocess") == [MIN_SAMPLES, MIN_SAMPLES + 1]
    done = run_farmer([str(tasks), "--timeout", "60"])
    assert done.returncode == 0, done.stderr
    assert sorted(ids(tmp_path / "t_workdir" / "finished")) == list(range(MIN_SAMPLES + 2))
