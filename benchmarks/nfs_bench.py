#!/usr/bin/env python3
"""NFS benchmark: NFS operations per task and tasks/s of one workdir on real NFS clients.

Starts the NFS lab of the tests (``tests/external/nfs``: an nfs-ganesha server and two
User-Mode-Linux client nodes, each with its own kernel NFS client; needs root and the packages
named in tests/external/nfs/README.md) and runs, for each mount (NFSv4.2, NFSv3 with NLM locks)
and each farmer code (``after``: this checkout; ``before``: an older checkout given with
``--before``, e.g. ``git worktree add /tmp/before 7b9177d``), 2 farmers x ``-n 2`` on 1 node,
then on each of 2 nodes, over one task list of ``--tasks`` ``true`` tasks on the export:

* tasks/s: tasks divided by the wall time from starting the farmers to the last one's exit
  (includes the farmers' start-up on the nodes, ~1-2 s);
* NFS operations per task: the RPCs the nodes' NFS clients sent (``/proc/self/mountstats``,
  every operation, summed over the nodes, before and after the run) divided by the tasks.
  NFSv3's NLM lock calls are not counted there (they are not RPCs of the mount);
* a run still going after ``--limit`` seconds is killed and marked ``hung``;
* exactly-once: every task ID once in finished+failed, nothing left, no NUL byte, a valid
  timeline (``corrupted`` otherwise, with what was wrong).

    sudo PYTHONPATH=$PWD python3 benchmarks/nfs_bench.py [--tasks 300] [--before /tmp/before]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from external.nfs.farmers import assert_exactly_once, start_farmers, wait_all, write_tasks  # noqa: E402
from external.nfs.lab import LabError, MountOptions, NfsLab, missing_requirements  # noqa: E402

MOUNTS = (MountOptions(vers="4.2"), MountOptions(vers="3"))


def ops_by_name(lab: NfsLab) -> Counter:
    """NFS RPCs sent so far by both nodes' clients, per operation."""
    total: Counter = Counter()
    for node in (lab.a, lab.b):
        total.update(node.mountstats())
    return total


def run_once(lab: NfsLab, code: Path, nodes: int, tasks: int, limit: float
             ) -> dict[str, object]:
    """One run: 2 farmers x -n 2 on each of ``nodes`` nodes, farmer code from ``code``."""
    directory = Path(tempfile.mkdtemp(prefix="bench-", dir=lab.export))
    tasklist = write_tasks(directory / "t", ["true"] * tasks)
    ops_before = ops_by_name(lab)
    began = time.monotonic()
    farmers = start_farmers(lab, tasklist, ["-n", "2"], per_node=2,
                            nodes=(lab.a, lab.b)[:nodes], env={"PYTHONPATH": str(code)})
    try:
        results = wait_all(farmers, timeout=limit)
        hung = ""
    except LabError:  # the old store can loop for ever on a torn line ("0 running")
        hung = f"hung: killed after {limit:.0f} s; "
        for node in (lab.a, lab.b):
            node.killall()
        results = wait_all(farmers, timeout=60)
    seconds = time.monotonic() - began
    ops = ops_by_name(lab)
    ops.subtract(ops_before)
    top = {name: round(count / tasks, 1) for name, count in ops.most_common(6) if count > 0}
    errors = sorted({result.err.strip().splitlines()[-1][:160] for result in results
                     if result.rc not in (0, 1) and result.err.strip()})
    try:
        assert_exactly_once(directory / "t_workdir", tasks)
        verdict = "exactly-once"
    except (AssertionError, ValueError) as error:  # ValueError: invalid JSON, bad lines
        verdict = "corrupted: " + (str(error).splitlines() or [repr(error)])[0][:200]
    verdict = hung + verdict
    return {"nodes": nodes, "tasks": tasks, "seconds": round(seconds, 2),
            "tasks_per_s": round(tasks / seconds, 1),
            "ops_per_task": round(sum(ops.values()) / tasks, 1), "top_ops_per_task": top,
            "exit_codes": [result.rc for result in results], "errors": errors,
            "verdict": verdict}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300, help="tasks per run [300]")
    parser.add_argument("--before", type=Path, help="checkout of the farmer to compare with")
    parser.add_argument("--limit", type=float, default=240,
                        help="seconds a run may take before its farmers are killed [240]")
    parser.add_argument("--keep", action="store_true",
                        help="keep the lab's directory (workdirs, node outputs)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    missing = missing_requirements()
    if missing:
        print(f"nfs_bench: error: cannot start the NFS lab: missing {', '.join(missing)}",
              file=sys.stderr)
        return 2
    codes = {"after": REPO, **({"before": args.before.resolve()} if args.before else {})}
    rows = []
    root = Path(tempfile.mkdtemp(prefix="tfnfs-bench-"))
    lab = NfsLab(root)
    try:
        lab.start()
        for mount in MOUNTS:
            lab.mount(mount)
            for label, code in codes.items():
                for nodes in (1, 2):
                    row = {"mount": str(mount), "code": label,
                           **run_once(lab, code, nodes, args.tasks, args.limit)}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    finally:
        lab.stop()
        if args.keep:
            print(f"NFS lab kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("\n| mount | code | nodes | tasks/s | NFS ops/task | result |\n"
          "|---|---|---|---|---|---|")
    for row in rows:
        codes = ",".join(str(code) for code in row["exit_codes"])
        print(f"| {row['mount']} | {row['code']} | {row['nodes']} | {row['tasks_per_s']} | "
              f"{row['ops_per_task']} | exit {codes}; {row['verdict']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
