"""The cost of each ``--logs`` layout: files created and log I/O time per task, and throughput.

``python benchmarks/logs_bench.py [--dir DIR] [--tasks N] [--rounds R]`` (the repository on
``PYTHONPATH``; run it under the heavy-test lock). Two measurements, printed as markdown:

1. **log I/O per task**, in-process: what a worker does around each task, for ``N`` tasks that
   each print one line: :class:`~taskfarmer.logs.tasklogs.TaskLogs` ``open``, the task's write,
   ``close``, ``done``; in ``DIR`` (default: a temporary directory on ``/tmp``; pass a mount of
   the NFS lab to measure it there). Files created: those the layout leaves in ``logs/``.
2. **throughput**: ``farmer --logs MODE -n 2`` on ``N`` tasks (``echo line I``) against
   ``xargs -P 2`` (output to one file), in turn, rotating the order each round; median
   tasks/s over ``R`` rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from taskfarmer.logs.tasklogs import LOG_LAYOUTS, TaskLogs


def count_files(directory: Path) -> int:
    """Files under ``directory``."""
    return sum(len(files) for _, _, files in os.walk(directory))


def log_io(base: Path, layout: str, tasks: int) -> tuple[float, int]:
    """(microseconds of log I/O per task, files created) for ``tasks`` tasks in ``layout``."""
    logs = base / f"io-{layout}" / "logs"
    logs.mkdir(parents=True)
    writer = TaskLogs(logs, layout, "bench.w0")
    began = time.perf_counter()
    for task_id in range(tasks):
        fd = writer.open(task_id, "node", time.time())
        os.write(fd, b"line %d\n" % task_id)
        os.close(fd)
        writer.done(task_id, "node", "exit 0", lingering=False)
    writer.close()
    elapsed = time.perf_counter() - began
    return elapsed / tasks * 1e6, count_files(logs)


def run_tool(base: Path, tool: str, tasklist: Path, tasks: int) -> float:
    """Tasks/s of one run of ``tool`` (a layout, or ``xargs``) on ``tasklist``."""
    workdir = base / f"run-{tool}"
    shutil.rmtree(workdir, ignore_errors=True)
    if tool == "xargs":
        workdir.mkdir()
        with open(tasklist, "rb") as source, open(workdir / "out", "wb") as out:
            began = time.perf_counter()
            subprocess.run(["xargs", "-d", "\n", "-P", "2", "-n", "1", "sh", "-c"],
                           stdin=source, stdout=out, check=True)
    else:
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "taskfarmer", str(tasklist), "-n", "2", "-w",
                        str(workdir), "--logs", tool], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        finished = (workdir / "finished").read_bytes().count(b"\n")
        assert finished == tasks, f"{tool}: {finished} of {tasks} finished"
    return tasks / (time.perf_counter() - began)


def main() -> int:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to measure log I/O")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="logs-bench-", dir=args.dir))
    try:
        print(f"{args.tasks} tasks, {args.rounds} rounds, in {base} "
              f"(load {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)\n")
        print("| --logs | log I/O per task | files created | per task |\n|---|---|---|---|")
        for layout in LOG_LAYOUTS:
            micro, files = log_io(base, layout, args.tasks)
            print(f"| {layout} | {micro:.0f} µs | {files} | {files / args.tasks:.4f} |")
        tasklist = base / "tasks"
        tasklist.write_text("".join(f"echo line {i}\n" for i in range(args.tasks)))
        tools = [*LOG_LAYOUTS, "xargs"]
        rates: dict[str, list[float]] = {tool: [] for tool in tools}
        for round_number in range(args.rounds):
            order = tools[round_number % len(tools):] + tools[:round_number % len(tools)]
            for tool in order:
                rates[tool].append(run_tool(base, tool, tasklist, args.tasks))
        print("\n| tool | tasks/s (median) | vs xargs | vs flat |\n|---|---|---|---|")
        xargs, flat = statistics.median(rates["xargs"]), statistics.median(rates["flat"])
        for tool in tools:
            rate = statistics.median(rates[tool])
            name = tool if tool == "xargs" else f"farmer --logs {tool}"
            print(f"| {name} | {rate:.0f} | {rate / xargs:.2f}x | {rate / flat:.2f}x |")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
