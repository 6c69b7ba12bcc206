"""Time limits inside SLURM: jobs of one minute (``--time=1``) with tasks of 20 s and no
``--signal``. The farmer reads the job's end from SLURM (``squeue``: this Slurm 22.05 sets no
``SLURM_JOB_END_TIME``), starts no task that would not finish 20 s + the margin before it,
and exits 3 when the running ones have ended: nothing failed, nothing run twice, nothing
killed. Three jobs in a row: ``--task-time 20``, then durations learned from the first job,
then the rest of the list. About 110 s (three jobs of about 41 + 41 + 21 s).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers.farmer import ids

from .cluster import JobInfo, SlurmCluster, SlurmError

pytestmark = pytest.mark.slurm

TASK_SECONDS = 20
MARGIN = 10
JOB_SECONDS = 60

#: One execution: its start (epoch seconds, job id), 20 s of work, then its end.
TASK_SH = f"""\
echo "start $(date +%s) $SLURM_JOB_ID" >> "$1/runs/$PROC_NUMBER"
sleep {TASK_SECONDS}
echo "end $(date +%s)" >> "$1/runs/$PROC_NUMBER"
"""


def _executions(root: Path) -> dict[int, list[tuple[int, str, bool]]]:
    """Task ID -> its executions: (start, job id, ended)."""
    found: dict[int, list[tuple[int, str, bool]]] = {}
    for path in (root / "runs").iterdir():
        runs: list[tuple[int, str, bool]] = []
        for line in path.read_text().splitlines():
            word, stamp, *job = line.split()
            if word == "start":
                runs.append((int(stamp), job[0], False))
            else:
                runs[-1] = (runs[-1][0], runs[-1][1], True)
        found[int(path.name)] = runs
    return found


def _epoch(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def _job(slurm: SlurmCluster, root: Path, options: str) -> tuple[JobInfo, str]:
    """Run the farmer in a one-minute job, directly in the batch shell (no srun, no
    --signal); return the job's record and output."""
    job = slurm.sbatch(None, wrap=f"exec farmer tasks.txt --proc 2 --stop-margin {MARGIN} "
                                  f"{options}",
                       time="1", cwd=root, output=str(root / "job-%j.out"))
    output = root / f"job-{job}.out"
    try:
        info = slurm.wait_job(job, ("COMPLETED", "FAILED"), timeout=JOB_SECONDS + 60)
    except (SlurmError, TimeoutError) as error:
        text = output.read_text() if output.exists() else ""
        raise AssertionError(f"{error}\n{text}") from error
    return info, output.read_text()


def _check_stopped_in_time(root: Path, info: JobInfo, output: str, source: str) -> None:
    """Exit 3 well before SLURM's limit; every task this job started began early enough to
    end 20 s + margin before the limit, and ended; the rest is still in toprocess."""
    assert (info.state, info.exit_code) == ("FAILED", 3), output  # exit 3, not TIMEOUT
    limit = _epoch(info.fields["StartTime"]) + JOB_SECONDS
    assert _epoch(info.fields["EndTime"]) <= limit - MARGIN, output
    assert "starting no more tasks" in output and f"s ({source}" in output, output
    assert "stopped by time limit, work left" in output, output
    mine = [run for runs in _executions(root).values() for run in runs if run[1] == info.job_id]
    assert len(mine) >= 2, output
    assert all(ended for _, _, ended in mine), output  # none killed: no work thrown away
    # One second of slack: `date +%s` in the task vs the farmer's decision.
    assert all(start <= limit - MARGIN - TASK_SECONDS + 1 for start, _, _ in mine), output


def test_one_minute_jobs_start_only_tasks_that_fit(slurm: SlurmCluster, tmp_path: Path,
                                                  slurm_timings: dict[str, float]) -> None:
    began = time.monotonic()
    root = tmp_path
    (root / "runs").mkdir()
    (root / "task.sh").write_text(TASK_SH)
    total = 10
    (root / "tasks.txt").write_text("".join(f"sh {root}/task.sh {root} {i}\n"
                                            for i in range(total)))
    workdir = root / "tasks.txt_workdir"

    first, output = _job(slurm, root, f"--task-time {TASK_SECONDS}")
    _check_stopped_in_time(root, first, output, "--task-time")
    done_first = len(ids(workdir / "finished"))
    assert done_first >= 4, output  # two rounds of two

    second, output = _job(slurm, root, "")
    _check_stopped_in_time(root, second, output, "90th percentile of")

    third, output = _job(slurm, root, "")
    assert (third.state, third.exit_code) == ("COMPLETED", 0), output
    assert sorted(ids(workdir / "finished")) == list(range(total))
    assert ids(workdir / "failed") == [] and ids(workdir / "toprocess") == []
    executions = _executions(root)
    assert {task: len(runs) for task, runs in executions.items()} == {
        task: 1 for task in range(total)}  # nothing lost, nothing run twice
    slurm_timings["walltime: three 1-minute jobs, 10 tasks of 20 s"] = time.monotonic() - began
