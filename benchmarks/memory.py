#!/usr/bin/env python3
"""Memory per slot: the proportional set size (PSS) of the farmer's processes, per slot.

Runs the farmer at each ``--widths`` on ``4 * width`` ``true`` tasks (so that every worker has
run tasks before it is measured) followed by ``width`` tasks that sleep; once every slot runs
a sleeping task, it sums ``Pss`` from ``/proc/PID/smaps_rollup`` over the farmer's main process
and its workers (the Python processes; the tasks themselves are not counted), then stops the
farmer with SIGTERM. PSS shares each page among the processes that map it, so the sum is what
the farm adds to the node. ``--before DIR`` measures another checkout in the same run.

    python3 benchmarks/memory.py [--widths 2,16,64] [--before /tmp/before]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _pss_kib(pid: int) -> int:
    """``Pss`` of ``pid`` in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [int(child) for task in tasks
                for child in (task / "children").read_text().split()]
    except OSError:
        return []


def measure(code: Path, width: int) -> dict[str, float] | str:
    """One run at ``width``: PSS of the main process, of all workers, and per slot (MiB)."""
    with tempfile.TemporaryDirectory(prefix="memory-", dir="/dev/shm") as tmp:
        base = Path(tmp)
        lines = [f"true {n}" for n in range(4 * width)] + \
            [f"exec sleep 60 # {n}" for n in range(width)]
        (base / "t.txt").write_text("".join(line + "\n" for line in lines))
        env = {**os.environ, "PYTHONPATH": str(code)}
        farmer = subprocess.Popen([sys.executable, "-m", "taskfarmer", "t.txt", "--proc",
                                   str(width), "-w", "wd"], cwd=base, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                workers = _children(farmer.pid)
                sleeping = [task for worker in workers for task in _children(worker)
                            if Path(f"/proc/{task}/comm").exists()
                            and Path(f"/proc/{task}/comm").read_text().strip() == "sleep"]
                if len(sleeping) >= width:
                    break
                time.sleep(0.1)
            else:
                return f"only {len(sleeping)} of {width} slots got a sleeping task"
            tasks = set(sleeping)
            workers = [pid for pid in _children(farmer.pid) if pid not in tasks]
            main_kib = _pss_kib(farmer.pid)
            workers_kib = sum(_pss_kib(pid) for pid in workers)
        finally:
            os.killpg(farmer.pid, signal.SIGTERM)
            farmer.wait(60)
        return {"workers": len(workers), "main_mib": main_kib / 1024,
                "workers_mib": workers_kib / 1024,
                "per_slot_mib": (main_kib + workers_kib) / 1024 / width}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="2,16,64")
    parser.add_argument("--before", type=Path, help="another checkout to measure too")
    args = parser.parse_args(argv)
    codes = [("this", REPO)] + ([("before", args.before.resolve())] if args.before else [])
    print("| code | `--proc` | workers | main (MiB) | workers (MiB) | per slot (MiB) |")
    print("|---|---|---|---|---|---|")
    for width in (int(w) for w in args.widths.split(",")):
        for name, code in codes:
            result = measure(code, width)
            if isinstance(result, str):
                print(f"| {name} | {width} | {result} | | | |")
                continue
            print(f"| {name} | {width} | {result['workers']:.0f} | {result['main_mib']:.1f} | "
                  f"{result['workers_mib']:.1f} | {result['per_slot_mib']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
