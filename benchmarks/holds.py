#!/usr/bin/env python3
"""Lock holds and state-file opens per task, counted with ``strace -f``.

Runs the farmer on ``--tasks`` ``true`` tasks at each ``--widths`` under
``strace -f -e trace=flock,openat`` in the coherent mode (``TASKFARMER_IO=coherent``, what a
workdir on NFS, Lustre or GPFS gets: every state file is opened inside each lock hold, so each
open is a round trip to the server), for this checkout and, with ``--before DIR``, another
one, side by side. Counts: exclusive ``flock`` calls (lock holds) and ``openat`` calls on
workdir files, per task; the task log files (one per task, the packed-logs issue's) are shown
apart. ``--null`` uses the null runner (no process per task).

    python3 benchmarks/holds.py [--tasks 2000] [--widths 16,64] [--before /tmp/before] [--null]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_OPEN = re.compile(r'openat\([^"]*"([^"]*)"')


def count(code: Path, tasks: int, width: int, null: bool) -> dict[str, float] | str:
    """One traced run; per task: lock holds, state-file opens, task-log opens (or why the
    run failed)."""
    with tempfile.TemporaryDirectory(prefix="holds-", dir="/dev/shm") as tmp:
        base = Path(tmp)
        (base / "runners.d").mkdir()
        (base / "runners.d" / "null.ini").write_text(
            "[null]\nRunner = taskfarmer.runners.NullRunner\n")
        (base / "t.txt").write_text("".join(f"true {n}\n" for n in range(tasks)))
        env = {**os.environ, "TASKFARMER_IO": "coherent", "PYTHONPATH": str(code)}
        argv = ["strace", "-f", "-qq", "-e", "trace=flock,openat", "-o", "trace",
                sys.executable, "-m", "taskfarmer", "t.txt", "--proc", str(width), "-w", "wd",
                *(["--runner", "null"] if null else [])]
        done = subprocess.run(argv, cwd=base, env=env, capture_output=True, text=True)
        finished = base / "wd" / "finished"
        recorded = len(finished.read_text().splitlines()) if finished.exists() else 0
        if done.returncode != 0 or recorded != tasks:
            return (f"failed: exit {done.returncode}, {recorded} of {tasks} finished; "
                    + (done.stderr.strip().splitlines() or [""])[-1][:120])
        trace = (base / "trace").read_text()
        opened: Counter[str] = Counter()
        for path in _OPEN.findall(trace):
            inside = path.removeprefix(str(base) + "/")
            if inside == "wd" or inside.startswith("wd/"):
                opened["logs" if inside.startswith("wd/logs/") else "state"] += 1
        return {"holds": len(re.findall(r"flock\(\d+, LOCK_EX", trace)) / tasks,
                "state_opens": opened["state"] / tasks, "log_opens": opened["logs"] / tasks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per run [2000]")
    parser.add_argument("--widths", default="2,16,64", help="--proc values [2,16,64]")
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    parser.add_argument("--null", action="store_true", help="the null runner: no processes")
    args = parser.parse_args(argv)
    if shutil.which("strace") is None:
        print("holds: error: strace is not installed (apt-get install strace)", file=sys.stderr)
        return 2
    codes = {"after": REPO, **({"before": args.before.resolve()} if args.before else {})}
    print("| code | --proc | tasks | lock holds/task | state-file opens/task | log opens/task |")
    print("|---|---|---|---|---|---|")
    for width in (int(w) for w in args.widths.split(",")):
        for label, code in codes.items():
            row = count(code, args.tasks, width, args.null)
            if isinstance(row, str):
                print(f"| {label} | {width} | {args.tasks} | {row} | | |", flush=True)
                continue
            print(f"| {label} | {width} | {args.tasks} | {row['holds']:.3f} | "
                  f"{row['state_opens']:.2f} | {row['log_opens']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
