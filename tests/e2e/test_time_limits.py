"""Time limits outside SLURM: the farmer with ``--timeout`` and ``--task-time`` or durations
learned from its workdir (the pieces of :mod:`taskfarmer.hpc.walltime`, clocks injected:
tests/unit/hpc/test_walltime.py).

The SLURM side (the job's end found with squeue, jobs of one minute) is in
``tests/external/slurm/test_walltime_slurm.py``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from helpers.farmer import ids, run_farmer, start_farmer, wait_for, write_tasklist

from taskfarmer.hpc.walltime import (
    MIN_SAMPLES,
)

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
