"""Farmers on the lab's nodes, and what a workdir on the export must look like afterwards.

Used by the scenario tests (``test_farm_nfs.py``) and the benchmark
(``benchmarks/nfs_bench.py``): the farmer runs on a node as ``python3 -m taskfarmer`` with
``PYTHONPATH`` = this repository (or another checkout: ``pythonpath=``), its task list and
workdir on the export, and is read back on the host, from the server's disk.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .lab import Job, NfsLab, Node, Result

#: State files that hold ``ID ...`` lines and must never contain a NUL byte.
STATE_FILES = ("toprocess", "claims", "finished", "failed", "attempts", "joblog", "holder")


def write_tasks(path: Path, commands: Sequence[str]) -> Path:
    """Write a task list (one command per line) on the host, into the export."""
    path.write_text("".join(command + "\n" for command in commands))
    return path


def farmer_command(lab: NfsLab, tasklist: Path, args: Sequence[str]) -> str:
    """The shell command that runs ``farmer TASKLIST ARGS`` on a node (``exec``: the job's
    process group is the farmer's)."""
    argv = [sys.executable, "-m", "taskfarmer", lab.node_path(tasklist), *args]
    return "exec " + " ".join(shlex.quote(arg) for arg in argv)


@dataclass
class Farmer:
    """A farmer started on a node."""

    node: Node
    job: Job

    def wait(self, timeout: float = 240) -> Result:
        return self.job.wait(timeout)


def start_farmers(lab: NfsLab, tasklist: Path, args: Sequence[str], per_node: int = 2,
                  nodes: Sequence[Node] | None = None,
                  env: Mapping[str, str] | None = None,
                  node_env: Mapping[str, Mapping[str, str]] | None = None) -> list[Farmer]:
    """Start ``per_node`` farmers on each node (A and B by default), interleaved A, B, A, B.

    ``node_env`` adds variables per node name (``{"A": {"SCRATCH": ...}}``).
    """
    farmers = []
    for _ in range(per_node):
        for node in nodes or (lab.a, lab.b):
            variables: dict[str, str] = {**(env or {}), **(node_env or {}).get(node.name, {})}
            farmers.append(Farmer(node, node.spawn(farmer_command(lab, tasklist, args),
                                                   env=variables)))
    return farmers


def wait_all(farmers: Sequence[Farmer], timeout: float = 240) -> list[Result]:
    """Wait for every farmer; their results in start order."""
    return [farmer.wait(timeout) for farmer in farmers]


def ids(path: Path) -> list[int]:
    """Task IDs of an ``ID ...`` state file, in file order (none if it does not exist)."""
    if not path.exists():
        return []
    return [int(line.split(" ", 1)[0]) for line in path.read_text().splitlines() if line]


def no_nul(workdir: Path) -> None:
    """No state file holds a NUL byte (stale pages written back over another node's data)."""
    for name in (*STATE_FILES, "timeline.json"):
        path = workdir / name
        if path.exists():
            assert b"\0" not in path.read_bytes(), f"NUL bytes in {path}"


def timeline_outcomes(workdir: Path) -> dict[int, list[str]]:
    """Task ID -> outcomes of its executions in ``timeline.json`` (which must be valid JSON)."""
    events = json.loads((workdir / "timeline.json").read_text())
    outcomes: dict[int, list[str]] = {}
    for event in events:
        if event.get("ph") == "X" and "id" in event.get("args", {}):
            outcomes.setdefault(event["args"]["id"], []).append(event["args"].get("outcome", ""))
    return outcomes


#: A file to which :func:`assert_exactly_once` appends each workdir's counts, one JSON line
#: (``benchmarks/repeat.py`` sets it to tabulate runs).
COUNTS_ENV = "TASKFARMER_EXACTLY_ONCE_LOG"


def exactly_once_counts(workdir: Path, count: int) -> dict[str, int]:
    """What a run did to each of ``count`` tasks: IDs recorded twice (or more) in
    ``finished``+``failed``, IDs recorded nowhere (lost), IDs with more than one line in the
    job log (executed twice: a discarded late result, a retry; an execution killed with its
    farmer leaves no line), workdir files with NUL bytes, lines the repair cut into ``torn``."""
    recorded = Counter(ids(workdir / "finished") + ids(workdir / "failed"))
    joblog = workdir / "joblog"
    runs: Counter[str] = Counter()
    if joblog.exists():
        runs = Counter(line.split("\t", 1)[0] for line in joblog.read_text().splitlines()[1:]
                       if line)
    nul = sum(b"\0" in (workdir / name).read_bytes()
              for name in (*STATE_FILES, "timeline.json") if (workdir / name).exists())
    torn = workdir / "torn"
    return {"tasks": count,
            "recorded_twice": sum(1 for seen in recorded.values() if seen > 1),
            "lost": sum(1 for task in range(count) if task not in recorded),
            "executed_twice": sum(1 for seen in runs.values() if seen > 1),
            "files_with_nul": nul,
            "torn_lines": len(torn.read_bytes().splitlines()) if torn.exists() else 0}


def log_counts(workdir: Path, count: int) -> None:
    """Append :func:`exactly_once_counts` to the file ``$TASKFARMER_EXACTLY_ONCE_LOG`` names."""
    target = os.environ.get(COUNTS_ENV)
    if target:
        with open(target, "a") as out:
            out.write(json.dumps({"workdir": workdir.name,
                                  **exactly_once_counts(workdir, count)}) + "\n")


def assert_exactly_once(workdir: Path, count: int, failed: Sequence[int] = (),
                        every_outcome_in_timeline: bool = True) -> None:
    """Every task ID in ``finished`` or ``failed`` exactly once (``failed`` ones in failed),
    nothing left in ``toprocess`` or ``claims``, no lease, no NUL byte, and a valid timeline
    recording each task's final outcome once."""
    log_counts(workdir, count)
    no_nul(workdir)
    finished, failed_ids = ids(workdir / "finished"), ids(workdir / "failed")
    both = finished + failed_ids
    assert sorted(both) == list(range(count)), (
        f"{len(both)} recorded, {len(set(both))} distinct, of {count}; twice: "
        f"{sorted(i for i in set(both) if both.count(i) > 1)[:20]}; missing: "
        f"{sorted(set(range(count)) - set(both))[:20]}")
    assert sorted(failed_ids) == sorted(failed), f"failed: {failed_ids}"
    assert (workdir / "toprocess").read_bytes() == b"", "tasks left in toprocess"
    assert (workdir / "claims").read_bytes() == b"", "claims not emptied"
    assert list((workdir / "leases").iterdir()) == [], "leases left"
    outcomes = timeline_outcomes(workdir)
    final = {task for task, seen in outcomes.items()
             for outcome in seen if outcome in ("finished", "failed")}
    assert final <= set(range(count))
    assert final == set(range(count)) or not every_outcome_in_timeline, (
        f"timeline.json: {len(final)} of {count} tasks have their outcome")
    assert all(sum(o in ("finished", "failed") for o in seen) == 1
               for seen in outcomes.values()), "a task's outcome is in the timeline twice"
