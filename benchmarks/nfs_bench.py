#!/usr/bin/env python3
"""NFS benchmark: NFS operations per task and tasks/s of one workdir on real NFS clients.

Starts the NFS lab of the tests (``tests/nfs``: an nfs-ganesha server and two User-Mode-Linux
client nodes, each with its own kernel NFS client; needs root and the packages named in
tests/nfs/README.md) and runs, for each mount (NFSv4.2, NFSv3 with NLM locks) and each farmer
code (``after``: this checkout; ``before``: an older checkout given with ``--before``, e.g.
``git worktree add /tmp/before 7b9177d``), 2 farmers x ``-n 2`` on 1 node, then on each of 2
nodes, over one task list of ``--tasks`` ``true`` tasks on the export:

* tasks/s: tasks divided by the wall time from starting the farmers to the last one's exit
  (includes the farmers' start-up on the nodes, ~1-2 s);
* NFS operations per task: the RPCs the nodes' NFS clients sent (``/proc/self/mountstats``,
  every operation, summed over the nodes, before and after the run) divided by the tasks.
  NFSv3's NLM lock calls are not counted there (they are not RPCs of the mount);
* exactly-once: every task ID once in finished+failed, nothing left, no NUL byte, a valid
  timeline (``corrupted`` otherwise, with what was wrong).

    sudo PYTHONPATH=$PWD python3 benchmarks/nfs_bench.py [--tasks 300] [--before /tmp/before]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from nfs.farmers import assert_exactly_once, start_farmers, wait_all, write_tasks  # noqa: E402
from nfs.lab import MountOptions, NfsLab, missing_requirements  # noqa: E402

MOUNTS = (MountOptions(vers="4.2"), MountOptions(vers="3"))


def total_ops(lab: NfsLab, nodes: int) -> int:
    """NFS RPCs sent so far by the first ``nodes`` nodes' clients (all operations)."""
    return sum(sum(node.mountstats().values()) for node in (lab.a, lab.b)[:nodes])


def run_once(lab: NfsLab, code: Path, nodes: int, tasks: int) -> Dict[str, object]:
    """One run: 2 farmers x -n 2 on each of ``nodes`` nodes, farmer code from ``code``."""
    directory = Path(tempfile.mkdtemp(prefix="bench-", dir=lab.export))
    tasklist = write_tasks(directory / "t", ["true"] * tasks)
    ops_before = total_ops(lab, 2)
    began = time.monotonic()
    farmers = start_farmers(lab, tasklist, ["-n", "2"], per_node=2,
                            nodes=(lab.a, lab.b)[:nodes], env={"PYTHONPATH": str(code)})
    results = wait_all(farmers, timeout=1800)
    seconds = time.monotonic() - began
    ops = total_ops(lab, 2) - ops_before
    try:
        assert_exactly_once(directory / "t_workdir", tasks)
        verdict = "exactly-once"
    except (AssertionError, ValueError) as error:  # ValueError: invalid JSON, bad lines
        verdict = "corrupted: " + str(error).splitlines()[0][:200]
    return {"nodes": nodes, "tasks": tasks, "seconds": round(seconds, 2),
            "tasks_per_s": round(tasks / seconds, 1), "ops_per_task": round(ops / tasks, 1),
            "exit_codes": [result.rc for result in results], "verdict": verdict}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300, help="tasks per run [300]")
    parser.add_argument("--before", type=Path, help="checkout of the farmer to compare with")
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
                           **run_once(lab, code, nodes, args.tasks)}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    finally:
        lab.stop()
    print("\n| mount | code | nodes | tasks/s | NFS ops/task | result |\n"
          "|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['mount']} | {row['code']} | {row['nodes']} | {row['tasks_per_s']} | "
              f"{row['ops_per_task']} | {row['verdict']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
