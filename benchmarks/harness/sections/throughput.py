"""Section 1: every tool on the same trivial tasks, in turn, rotating the order every round."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..context import Bench
from ..files import last_lines, write_tasklist
from ..procs import launch, wait_all
from ..report import fmt, log, markdown_table, quotient, times
from ..tools import Tool

HEADER = (
    "tool",
    "tasks",
    "runs ok",
    "median wall (s)",
    "median tasks/s",
    "range tasks/s",
    "vs farmer",
)


@dataclass
class RunRecord:
    """One run of one tool; it counts (``ok``) only if it exited 0 with every task recorded."""

    tool: str
    round: int
    tasks: int
    wall_s: float
    rc: int | None
    done: int | None
    ok: bool
    rate: float | None
    note: str = ""


def one_run(
    bench: Bench, tool: Tool, tasklist: Path, n: int, rnd: int, timeout: float
) -> RunRecord:
    """Run *tool* on the *n* tasks of *tasklist* in a fresh workdir, timed launch to exit."""
    d = bench.rundir(tool.name)
    wd = d / "work"
    t0 = time.perf_counter()
    p = launch(
        tool.argv(tasklist, wd, bench.args.proc),
        cwd=d,
        env=tool.env,
        log_path=d / "output.log",
        stdin_path=tasklist if tool.stdin_tasklist else None,
    )
    (rc,), killed = wait_all([p], timeout)
    wall = time.perf_counter() - t0
    done = tool.done(wd)
    notes = []
    if killed:
        notes.append(f"killed after {timeout:.0f}s")
    elif rc != 0:
        notes.append(f"exit {rc}")
    if done is not None and done != n:
        notes.append(f"{done}/{n} recorded done")
    ok = not notes
    if notes:
        tail = last_lines(d / "output.log")
        if tail:
            notes.append("output: " + " / ".join(tail))
    rate = n / wall if ok else (done / wall if done else None)
    return RunRecord(tool.name, rnd, n, wall, rc, done, ok, rate, "; ".join(notes))


def _tasklists(
    bench: Bench, tools: list[Tool], skipped: dict[str, str]
) -> dict[str, tuple[Path, int]]:
    """Write each tool's tasklist (capped at its ``max_tasks``) and say what runs."""
    lists: dict[str, tuple[Path, int]] = {}
    for t in tools:
        n = min(bench.args.tasks, t.max_tasks) if t.max_tasks else bench.args.tasks
        path = bench.base / f"tasks-{t.name}-{n}.txt"
        lists[t.name] = (write_tasklist(path, n, t.line), n)
        log(f"  {t.name}: {n} tasks, {t.note}" + (f" [{t.version}]" if t.version else ""))
    for name, why in skipped.items():
        log(f"  {name}: SKIPPED ({why})")
    return lists


def _rounds(bench: Bench, tools: list[Tool], lists: dict[str, tuple[Path, int]]) -> list[RunRecord]:
    """A warm-up run of each tool, then ``--rounds`` rounds of all tools in rotated order."""
    a = bench.args
    # warm-up (page cache, imports): a few tasks per tool, not counted
    for t in tools:
        wl = write_tasklist(bench.base / f"warmup-{t.name}.txt", 2 * a.proc, t.line)
        one_run(bench, t, wl, 2 * a.proc, 0, a.run_timeout)
    runs: list[RunRecord] = []
    for rnd in range(1, a.rounds + 1):
        shift = (rnd - 1) % len(tools) if tools else 0
        for t in tools[shift:] + tools[:shift]:  # rotate the order every round
            tl, n = lists[t.name]
            r = one_run(bench, t, tl, n, rnd, a.run_timeout)
            runs.append(r)
            status = "ok" if r.ok else f"FAILED ({r.note})"
            log(
                f"  round {rnd} {t.name:<13} {n:>6} tasks {r.wall_s:8.2f} s "
                f"{fmt(r.rate):>9} tasks/s  {status}"
            )
    return runs


def _summary(
    tools: list[Tool], lists: dict[str, tuple[Path, int]], runs: list[RunRecord]
) -> dict[str, dict[str, Any]]:
    """Per tool: medians and range over its good runs, and its rate's ratio to the farmer's."""
    summary: dict[str, dict[str, Any]] = {}
    for t in tools:
        mine = [r for r in runs if r.tool == t.name]
        good = [r.rate for r in mine if r.ok and r.rate]
        summary[t.name] = {
            "tasks": lists[t.name][1],
            "runs": len(mine),
            "runs_ok": len(good),
            "median_wall_s": statistics.median([r.wall_s for r in mine if r.ok]) if good else None,
            "median_rate": statistics.median(good) if good else None,
            "min_rate": min(good) if good else None,
            "max_rate": max(good) if good else None,
            "note": t.note,
            "version": t.version,
        }
    ref = summary.get("farmer", {}).get("median_rate")
    for s in summary.values():
        s["ratio_to_farmer"] = quotient(s["median_rate"], ref)
    return summary


def _table(summary: dict[str, dict[str, Any]], skipped: dict[str, str]) -> str:
    """The section's table: one row per tool, the skipped ones last."""
    rows = [
        [
            name,
            f"{s['tasks']:,}",
            f"{s['runs_ok']}/{s['runs']}",
            fmt(s["median_wall_s"], 2),
            fmt(s["median_rate"]),
            f"{fmt(s['min_rate'])} - {fmt(s['max_rate'])}",
            times(s["ratio_to_farmer"]),
        ]
        for name, s in summary.items()
    ]
    rows += [[name, "-", "skipped", "-", "-", "-", "-"] for name in skipped]
    return markdown_table(HEADER, rows)


def throughput(bench: Bench, tools: list[Tool], skipped: dict[str, str]) -> None:
    """Section 1: run it, print its table, store its numbers in ``results["throughput"][PROC]``."""
    a = bench.args
    log(
        f"## 1. Throughput: trivial tasks (`true`, via `sh -c`), --proc {a.proc}, "
        f"{a.rounds} round(s), round-robin\n"
    )
    lists = _tasklists(bench, tools, skipped)
    runs = _rounds(bench, tools, lists)
    summary = _summary(tools, lists, runs)
    log("")
    log(_table(summary, skipped))
    if "pytaskfarmer" in summary:
        log(
            f"\nPyTaskFarmer is quadratic in the task count: its rate is at "
            f"{summary['pytaskfarmer']['tasks']:,} tasks and drops at larger lists."
        )
    log("")
    bench.results.setdefault("throughput", {})[str(a.proc)] = {
        "proc": a.proc,
        "rounds": a.rounds,
        "summary": summary,
        "skipped": skipped,
        "runs": [asdict(r) for r in runs],
    }
