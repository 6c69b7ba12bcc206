#!/usr/bin/env python3
"""NFS benchmark: NFS operations per task and tasks/s of one workdir on real NFS clients.

Starts the NFS lab of the tests (``tests/external/nfs``: an nfs-ganesha server and two
User-Mode-Linux client nodes, each with its own kernel NFS client; needs root and the packages
named in tests/external/nfs/README.md) and runs, for each mount (NFSv4.2, NFSv3 with NLM locks)
and each farmer code (``after``: this checkout; ``before``: an older checkout given with
``--before``, e.g. ``git worktree add /tmp/before 7b9177d``), ``--per-node`` farmers (default
2) x ``-n --proc`` (default 2) on 1 node, then on each of 2 nodes, over one task list of
``--tasks`` ``true`` tasks on the export; with ``--zero`` the farmers use the null runner
(``taskfarmer.runners.NullRunner``: no process per task), which measures the coordination
ceiling of the workdir rather than the fork speed of the lab's one-CPU nodes:

* tasks/s: tasks divided by the wall time from starting the farmers to the last one's exit
  (includes the farmers' start-up on the nodes, ~1-2 s);
* NFS operations per task: the RPCs the nodes' NFS clients sent (``/proc/self/mountstats``,
  every operation, summed over the nodes, before and after the run) divided by the tasks.
  NFSv3's NLM lock calls are not counted there (they are not RPCs of the mount);
* metadata operations per task: the same, without the data operations (READ, WRITE,
  COMMIT); and the state-file opens per task the farmers counted themselves (``opens`` in
  their ``TASKFARMER_STATS`` lines; :mod:`taskfarmer.store.opencount`);
* with ``--logs MODES`` (e.g. ``flat,spread,nonempty,packed``): each shape once per
  ``--logs`` mode, on tasks that print a line (``echo``) instead of ``true``, so that the modes'
  log files are made; the table gets the creates per task (NFSv3 CREATE; NFSv4 creates with
  OPEN, counted among the opens) and the top operations;
* a run still going after ``--limit`` seconds is killed and marked ``hung``;
* exactly-once: every task ID once in finished+failed, nothing left, no NUL byte, a valid
  timeline (``corrupted`` otherwise, with what was wrong).

    sudo PYTHONPATH=$PWD python3 benchmarks/nfs_bench.py [--tasks 300] [--before /tmp/before]
    sudo PYTHONPATH=$PWD python3 benchmarks/nfs_bench.py --logs flat,spread,nonempty,packed
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from external.nfs.farmers import (  # noqa: E402
    Farmer,
    assert_exactly_once,
    farmer_command,
    wait_all,
    write_tasks,
)
from external.nfs.lab import LabError, MountOptions, NfsLab, missing_requirements  # noqa: E402


def ops_by_name(lab: NfsLab) -> Counter:
    """NFS RPCs sent so far by both nodes' clients, per operation."""
    total: Counter = Counter()
    for node in (lab.a, lab.b):
        total.update(node.mountstats())
    return total


@dataclass(frozen=True)
class Shape:
    """How many farmers run where, each with how many slots, running tasks or not."""

    nodes: int
    per_node: int = 2
    proc: int = 2
    zero: bool = False  # the null runner: no process per task, the farm's own cost
    logs: str = ""  # --logs MODE; "" for the default (flat) with silent tasks

    @property
    def task(self) -> str:
        """Each task's command: one that prints when the log layout is measured."""
        return "echo line" if self.logs else "true"


def start(lab: NfsLab, code: Path, directory: Path, tasklist: Path, shape: Shape
          ) -> list[Farmer]:
    """Start the farmers of ``shape`` in ``directory`` (where ``runners.d/null.ini`` is)."""
    args = ["-n", str(shape.proc), *(["--runner", "null"] if shape.zero else []),
            *(["--logs", shape.logs] if shape.logs else [])]
    (directory / "runners.d").mkdir()
    (directory / "runners.d" / "null.ini").write_text(
        "[null]\nRunner = taskfarmer.runners.NullRunner\n")
    command = f"cd {shlex.quote(lab.node_path(directory))} && " + \
        farmer_command(lab, tasklist, args)
    farmers = []
    for number in range(shape.per_node):
        for node in (lab.a, lab.b)[:shape.nodes]:
            # One statistics file per farmer: appends from two NFS clients would collide.
            stats = lab.node_path(directory / f"stats-{node.name}-{number}.jsonl")
            env = {"PYTHONPATH": str(code), "TASKFARMER_STATS": stats}
            farmers.append(Farmer(node, node.spawn(command, env=env)))
    return farmers


def farmer_stats(directory: Path) -> Counter:
    """Lock holds, hand-overs between nodes and opens of state files, summed over the
    farmers' statistics files (farmers of a code without them write none or fewer: 0)."""
    total: Counter = Counter()
    for path in directory.glob("stats-*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            total.update({key: record.get(key, 0) for key in ("holds", "handovers", "opens")})
    return total


#: Operations that move file data; the others are metadata operations.
DATA_OPS = ("READ", "WRITE", "COMMIT")


def run_once(lab: NfsLab, code: Path, shape: Shape, tasks: int, limit: float
             ) -> dict[str, object]:
    """One run of ``shape``, farmer code from ``code``."""
    directory = Path(tempfile.mkdtemp(prefix="bench-", dir=lab.export))
    tasklist = write_tasks(directory / "t", [shape.task] * tasks)
    ops_before = ops_by_name(lab)
    began = time.monotonic()
    farmers = start(lab, code, directory, tasklist, shape)
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
    stats = farmer_stats(directory)
    metadata = sum(count for name, count in ops.items() if name not in DATA_OPS)
    return {"nodes": shape.nodes, "per_node": shape.per_node, "proc": shape.proc,
            "logs": shape.logs or "flat", "task": shape.task,
            "holds_per_task": round(stats["holds"] / tasks, 3),
            "handovers_per_task": round(stats["handovers"] / tasks, 3),
            "opens_per_task": round(stats["opens"] / tasks, 2),
            "metadata_ops_per_task": round(metadata / tasks, 1),
            "creates_per_task": round(ops["CREATE"] / tasks, 2),
            "zero": shape.zero, "tasks": tasks, "seconds": round(seconds, 2),
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
    parser.add_argument("--per-node", default="2",
                        help="farmers per node, comma-separated, e.g. 1,4,16 [2]")
    parser.add_argument("--proc", type=int, default=2, help="-n of each farmer [2]")
    parser.add_argument("--zero", action="store_true",
                        help="zero-execution: the null runner, no process per task")
    parser.add_argument("--mounts", default="4.2,3", help="NFS versions [4.2,3]")
    parser.add_argument("--nodes", default="1,2", help="node counts, comma-separated [1,2]")
    parser.add_argument("--logs", default="",
                        help="--logs modes to compare, comma-separated, on tasks that print "
                             "(default: the default mode, silent tasks)")
    args = parser.parse_args(argv)
    per_node = [int(count) for count in args.per_node.split(",")]
    node_counts = [int(count) for count in args.nodes.split(",")]
    layouts = args.logs.split(",") if args.logs else [""]
    mounts = [MountOptions(vers=vers) for vers in args.mounts.split(",")]
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
        for mount in mounts:
            lab.mount(mount)
            for count in per_node:
                for nodes in node_counts:
                    for layout in layouts:
                        for label, code in codes.items():  # before and after side by side
                            shape = Shape(nodes, count, args.proc, args.zero, layout)
                            row = {"mount": str(mount), "code": label,
                                   **run_once(lab, code, shape, args.tasks, args.limit)}
                            print(json.dumps(row), flush=True)
                            rows.append(row)
    finally:
        lab.stop()
        if args.keep:
            print(f"NFS lab kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("\n| mount | code | --logs | nodes | farmers/node | tasks/s | NFS ops/task | metadata "
          "ops/task | creates/task (v3) | state-file opens/task (farmers' count) | "
          "lock holds/task | hand-overs/task | result |\n" + "|---" * 13 + "|")
    for row in rows:
        exits = ",".join(sorted({str(code) for code in row["exit_codes"]}))
        print(f"| {row['mount']} | {row['code']} | {row['logs']} | {row['nodes']} | "
              f"{row['per_node']} | {row['tasks_per_s']} | {row['ops_per_task']} | "
              f"{row['metadata_ops_per_task']} | {row['creates_per_task']} | "
              f"{row['opens_per_task']} | {row['holds_per_task']} | "
              f"{row['handovers_per_task']} | exit {exits}; {row['verdict']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
