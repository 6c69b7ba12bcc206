#!/usr/bin/env python3
"""Repeat test scenarios to catch rare events: ``repeat.py N NODEID [NODEID ...]``.

A scenario that goes wrong once in twenty runs passes CI most of the time; this runs each
pytest node ID ``N`` times, one pytest process per run, and prints per scenario how many runs
passed and the first assertion line of each failure. Example (issue 21's scenarios)::

    python3 benchmarks/repeat.py 10 tests/e2e/test_stalls.py \\
        'tests/external/nfs/test_farm_nfs.py::test_a_node_stalled_past_its_lease_records_nothing_twice'

The tests run against the checkout they belong to; for a "before" figure, run the same test
files from an older checkout's tests/ directory.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_once(nodeid: str) -> tuple[bool, str]:
    """One pytest run of ``nodeid``: whether it passed, and its first ``E`` line if not."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", nodeid], cwd=REPO,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode == 0:
        return True, ""
    lines = [line for line in done.stdout.splitlines() if line.startswith("E ")]
    return False, lines[0] if lines else done.stdout.strip().splitlines()[-1]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    runs, nodeids = int(argv[0]), argv[1:]
    failed_any = False
    for nodeid in nodeids:
        started = time.monotonic()
        outcomes = [run_once(nodeid) for _ in range(runs)]
        passed = sum(ok for ok, _ in outcomes)
        failed_any |= passed < runs
        print(f"{nodeid}: {passed} of {runs} passed ({time.monotonic() - started:.0f} s)")
        for ok, why in outcomes:
            if not ok:
                print(f"    {why}")
    return 1 if failed_any else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
