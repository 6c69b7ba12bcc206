#!/usr/bin/env python3
"""Repeat test scenarios to catch rare events: ``repeat.py N NODEID [NODEID ...]``.

A scenario that goes wrong once in twenty runs passes CI most of the time; this runs each
pytest node ID ``N`` times, one pytest process per run, and prints per scenario how many runs
passed and the first assertion line of each failure. Example (issue 21's scenarios)::

    python3 benchmarks/repeat.py 10 tests/e2e/test_stalls.py \\
        'tests/external/nfs/test_farm_nfs.py::test_a_node_stalled_past_its_lease_records_nothing_twice'

The NFS lab's scenarios (``tests/external/nfs``) also report what each run did to the tasks:
their exactly-once check appends counts to ``$TASKFARMER_EXACTLY_ONCE_LOG``, which this sets,
and the table at the end sums them per scenario: tasks recorded twice, lost (recorded
nowhere), executed twice (more than one job-log line), files with NUL bytes, lines the
repair cut into ``torn``.
``TASKFARMER_NFS_FULL=1`` is set too: the kill scenario's every mount x lock x load.

The tests run against the checkout they belong to; for a "before" figure, run the same test
files from an older checkout's tests/ directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COUNTS_ENV = "TASKFARMER_EXACTLY_ONCE_LOG"  # tests/external/nfs/farmers.py
COUNTS = ("recorded_twice", "lost", "executed_twice", "files_with_nul", "torn_lines")


def run_once(nodeid: str, counts: Path) -> tuple[bool, str, list[dict]]:
    """One pytest run of ``nodeid``: whether it passed, its first ``E`` line if not, and the
    counts its exactly-once checks logged."""
    counts.write_text("")
    env = {**os.environ, COUNTS_ENV: str(counts), "TASKFARMER_NFS_FULL": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           nodeid], cwd=REPO, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env)
    logged = [json.loads(line) for line in counts.read_text().splitlines() if line]
    if done.returncode == 0:
        return True, "", logged
    lines = [line for line in done.stdout.splitlines() if line.startswith("E ")]
    return False, lines[0] if lines else done.stdout.strip().splitlines()[-1], logged


def table_row(nodeid: str, runs: int, passed: int, logged: list[dict]) -> str:
    """A row of the table (:func:`print_table`): sums of the counts (:data:`COUNTS`), with the
    number of runs in which each was non-zero."""
    cells = []
    for key in COUNTS:
        total = sum(entry[key] for entry in logged)
        hit = sum(1 for entry in logged if entry[key])
        cells.append(f"{total} ({hit} runs)" if total else "0")
    name = nodeid.rsplit("::", 1)[-1]
    return f"| {name} | {runs} | {passed} | " + " | ".join(cells) + " |"


def print_table(outcomes: dict[str, list[tuple[bool, str, list[dict]]]]) -> None:
    """The markdown table of the runs so far."""
    print("\n| scenario | runs | passed | recorded twice | lost | executed twice "
          "| files with NUL bytes | lines cut into torn |\n|---|---|---|---|---|---|---|---|")
    for nodeid, done in outcomes.items():
        print(table_row(nodeid, len(done), sum(ok for ok, _, _ in done),
                        [entry for _, _, logged in done for entry in logged]))
    print(flush=True)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    runs, nodeids = int(argv[0]), argv[1:]
    outcomes: dict[str, list[tuple[bool, str, list[dict]]]] = {nodeid: [] for nodeid in nodeids}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        counts = Path(tmp) / "counts"
        for number in range(runs):  # round by round: a cut-short repeat still has every scenario
            for nodeid in nodeids:
                ok, why, logged = run_once(nodeid, counts)
                outcomes[nodeid].append((ok, why, logged))
                print(f"run {number + 1} {nodeid}: {'passed' if ok else 'FAILED ' + why} "
                      f"{json.dumps(logged)} ({time.monotonic() - started:.0f} s)", flush=True)
            print_table(outcomes)
    failed_any = any(not ok for done in outcomes.values() for ok, _, _ in done)
    return 1 if failed_any else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
