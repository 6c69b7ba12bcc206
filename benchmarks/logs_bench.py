"""The cost of each ``--logs`` layout: files created and log I/O time per task, and throughput.

``python benchmarks/logs_bench.py [--dir DIR] [--tasks N] [--rounds R]`` (the repository on
``PYTHONPATH``; run it under the heavy-test lock). Two measurements, printed as markdown:

1. **log I/O per task**, in-process: what a worker does around each task, for ``N`` tasks that
   each print one line: :class:`~taskfarmer.logs.tasklogs.TaskLogs` ``open``, the task's write,
   ``close``, ``done``; in ``DIR`` (default: a temporary directory on ``/tmp``; pass a mount of
   the NFS lab to measure it there); ``R`` rounds, the layouts' order rotated each round,
   median and range. Files created: those the layout leaves in ``logs/``. Every round and run
   gets a new directory, all removed at the end, not between runs: on a journal-less ext4
   (this project's ``/tmp``) files created within about 30 s of a mass delete are slower to
   create (see README.md), which would charge one layout for another's files.
2. **throughput**: ``farmer --logs MODE -n 2`` on ``N`` tasks (``echo line I``) against
   ``xargs -P 2`` (output to one file), in turn, rotating the order each round; median and
   range of tasks/s over ``R`` rounds, and each layout against ``flat`` as the median of the
   rounds' ratios (the two ran within seconds of each other: the machine's load, which drifts
   over minutes, cancels out more than in the ratio of the medians); the CPU time per task of
   the tool and its tasks (user + system, ``RUSAGE_CHILDREN``: less sensitive to a loaded
   machine than wall time). Files: those the run left in ``logs/``, per task.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from taskfarmer.logs.tasklogs import LOG_LAYOUTS, TaskLogs


def count_files(directory: Path) -> int:
    """Files under ``directory``."""
    return sum(len(files) for _, _, files in os.walk(directory))


def log_io(directory: Path, layout: str, tasks: int) -> tuple[float, int]:
    """(microseconds of log I/O per task, files created) for ``tasks`` tasks in ``layout``,
    in the new ``directory``."""
    logs = directory / "logs"
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


@dataclass(frozen=True)
class Run:
    """One run of a tool."""

    rate: float  # tasks/s, wall time from launch to exit
    cpu: float  # CPU µs per task of the tool and its tasks (user + system)
    files: int  # files left in logs/ (xargs: its one output file)


def children_cpu() -> float:
    """CPU seconds of this process's waited-for descendants so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_tool(workdir: Path, tool: str, tasklist: Path, tasks: int) -> Run:
    """One run of ``tool`` (a layout, or ``xargs``) in the new ``workdir``."""
    cpu = children_cpu()
    if tool == "xargs":
        workdir.mkdir()
        with open(tasklist, "rb") as source, open(workdir / "out", "wb") as out:
            began = time.perf_counter()
            subprocess.run(["xargs", "-d", "\n", "-P", "2", "-n", "1", "sh", "-c"],
                           stdin=source, stdout=out, check=True)
        seconds = time.perf_counter() - began
        return Run(tasks / seconds, (children_cpu() - cpu) / tasks * 1e6, 1)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "taskfarmer", str(tasklist), "-n", "2", "-w",
                    str(workdir), "--logs", tool], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - began
    finished = (workdir / "finished").read_bytes().count(b"\n")
    assert finished == tasks, f"{tool}: {finished} of {tasks} finished"
    return Run(tasks / seconds, (children_cpu() - cpu) / tasks * 1e6,
               count_files(workdir / "logs"))


def rotated(items: list[str], round_number: int) -> list[str]:
    """``items`` rotated by ``round_number``: each goes first in turn."""
    shift = round_number % len(items)
    return items[shift:] + items[:shift]


def spread(values: list[float]) -> str:
    """Median and range of ``values``."""
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def main() -> int:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to measure")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layouts", default=",".join(LOG_LAYOUTS),
                        help="the --logs modes to measure, comma-separated (flat first: the "
                             "others are compared with it) [all]")
    args = parser.parse_args()
    layouts = args.layouts.split(",")
    if layouts[0] != "flat" or not set(layouts) <= set(LOG_LAYOUTS):
        parser.error(f"--layouts: flat first, then any of {', '.join(LOG_LAYOUTS)}")
    base = Path(tempfile.mkdtemp(prefix="logs-bench-", dir=args.dir))
    try:
        print(f"{args.tasks} tasks, {args.rounds} rounds, in {base} "
              f"(load {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)\n")
        micros: dict[str, list[float]] = {layout: [] for layout in layouts}
        created: dict[str, int] = {}
        for round_number in range(args.rounds):
            for layout in rotated(layouts, round_number):
                micro, created[layout] = log_io(base / f"io-{layout}-{round_number}", layout,
                                                args.tasks)
                micros[layout].append(micro)
        print("| --logs | log I/O per task, µs (median, range) | files created | per task |\n"
              "|---|---|---|---|")
        for layout in layouts:
            print(f"| {layout} | {spread(micros[layout])} | {created[layout]} | "
                  f"{created[layout] / args.tasks:.4f} |")
        tasklist = base / "tasks"
        tasklist.write_text("".join(f"echo line {i}\n" for i in range(args.tasks)))
        tools = [*layouts, "xargs"]
        runs: dict[str, list[Run]] = {tool: [] for tool in tools}
        for round_number in range(args.rounds):
            for tool in rotated(tools, round_number):
                runs[tool].append(run_tool(base / f"run-{tool}-{round_number}", tool,
                                           tasklist, args.tasks))
        print("\n| tool | tasks/s, median (range) | vs xargs | vs flat, median of the rounds | "
              "CPU µs per task, median (range) | files in logs/ per task |\n"
              "|---|---|---|---|---|---|")
        xargs = statistics.median(run.rate for run in runs["xargs"])
        for tool in tools:
            name = tool if tool == "xargs" else f"farmer --logs {tool}"
            rates = [run.rate for run in runs[tool]]
            paired = statistics.median(run.rate / flat.rate for run, flat in
                                       zip(runs[tool], runs["flat"]))
            files = "" if tool == "xargs" else f"{runs[tool][-1].files / args.tasks:.4f}"
            print(f"| {name} | {spread(rates)} | {statistics.median(rates) / xargs:.2f}x | "
                  f"{paired:.2f}x | {spread([run.cpu for run in runs[tool]])} | {files} |")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
