#!/usr/bin/env python3
"""Allocation time thrown away at SLURM time limits: signal-only stop vs walltime-aware stop.

Runs one campaign (tasks of 20 s, 2 at a time) to its end in one-minute jobs on the private
2-node test cluster (tests/external/slurm/cluster.py; root needed), twice:

- ``signal``: the old flow, ``--signal=B:USR1@MARGIN`` to the farmer (``exec``-ed by the batch
  shell), which behaves as before this change with ``--stop-margin 0 --task-time 0.001``: it
  starts tasks until the signal comes;
- ``walltime``: no ``--signal``; the farmer reads the job's end and ``--stop-margin MARGIN``.

For each flow: the jobs, their run time (allocation), the work thrown away (task executions
cut short by the stop: from their start to the job's end) and its fraction of the allocation.

    python benchmarks/walltime_slurm.py [--tasks 10] [--seconds 20] [--margin 10]
                                        [--flows signal walltime]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from external.slurm.cluster import SlurmCluster  # noqa: E402

TASK_SH = """\
echo "start $(date +%s.%N)" >> "$1/runs/$PROC_NUMBER"
sleep $2
echo "end $(date +%s.%N)" >> "$1/runs/$PROC_NUMBER"
"""


def _epoch(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def campaign(cluster: SlurmCluster, root: Path, flow: str, tasks: int, seconds: int,
             margin: int) -> dict[str, float]:
    """Run the campaign in one-minute jobs until done; return the flow's totals."""
    (root / "runs").mkdir(parents=True)
    (root / "task.sh").write_text(TASK_SH)
    (root / "tasks.txt").write_text("".join(f"sh {root}/task.sh {root} {seconds} {i}\n"
                                            for i in range(tasks)))
    if flow == "signal":
        farmer = "exec farmer tasks.txt --proc 2 --stop-margin 0 --task-time 0.001"
        options = {"signal": f"B:USR1@{margin}"}
    else:
        farmer = f"exec farmer tasks.txt --proc 2 --stop-margin {margin}"
        options = {}
    jobs: list[tuple[float, float]] = []
    for _ in range(10):
        job = cluster.sbatch(None, wrap=farmer, time="1", cwd=root,
                             output=str(root / "job-%j.out"), **options)  # type: ignore[arg-type]
        info = cluster.wait_job(job, ("COMPLETED", "FAILED"), timeout=150)
        jobs.append((_epoch(info.fields["StartTime"]), _epoch(info.fields["EndTime"])))
        print(f"  {flow} job {job}: {info.state} exit {info.exit_code}, "
              f"{jobs[-1][1] - jobs[-1][0]:.0f} s", flush=True)
        if info.exit_code != 3:
            break
    allocation = sum(end - start for start, end in jobs) * 2  # 2 slots (CPUs) held per job
    thrown = 0.0
    for path in (root / "runs").iterdir():
        lines = path.read_text().split("\n")
        for index, line in enumerate(lines):
            if line.startswith("start") and not (index + 1 < len(lines)
                                                 and lines[index + 1].startswith("end")):
                started = float(line.split()[1])
                end = next(e for s, e in jobs if s - 1 <= started <= e + 1)
                thrown += max(0.0, end - started)
    return {"jobs": len(jobs), "allocation": allocation, "thrown": thrown,
            "useful": tasks * seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--margin", type=int, default=10)
    parser.add_argument("--flows", nargs="+", choices=("signal", "walltime"),
                        default=["signal", "walltime"])
    args = parser.parse_args()
    cluster = SlurmCluster()
    cluster.start()
    try:
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for flow in args.flows:
                results[flow] = campaign(cluster, Path(tmp) / flow, flow, args.tasks,
                                         args.seconds, args.margin)
                cluster.cancel_all()
    finally:
        cluster.stop()
    print(f"\n{args.tasks} tasks of {args.seconds} s, 2 at a time, 1-minute jobs, margin "
          f"{args.margin} s\n")
    print("| flow | jobs | allocation (slot-s) | thrown away (slot-s) | thrown / allocation "
          "| useful / allocation |")
    print("|---|---|---|---|---|---|")
    for flow, r in results.items():
        print(f"| {flow} | {r['jobs']:.0f} | {r['allocation']:.0f} | {r['thrown']:.0f} | "
              f"{r['thrown'] / r['allocation']:.0%} | {r['useful'] / r['allocation']:.0%} |")


if __name__ == "__main__":
    main()
