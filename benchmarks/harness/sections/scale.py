"""Section 2: the farmer on a big and a small tasklist for the same ``--timeout`` window.

It measures the time to start, the rate in the window and the peak memory, so that the two
list sizes show the cost of a longer list per task and at start.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..context import Bench
from ..files import last_lines, write_tasklist
from ..procs import LineCounter, TreeSampler, kill_tree, launch, reap
from ..report import fmt, log, markdown_table, quotient, times
from ..tools import Tool, trivial

TIMEOUT_EXIT = 3  # farmer's exit code when stopped by --timeout
SAMPLE_INTERVAL = 0.05  # RSS sampling period (s)
POLL_INTERVAL = 0.001  # marker / finished polling period (s)

HEADER = (
    "tasklist lines",
    "first task started (s)",
    "first in finished (s)",
    "finished in window",
    "tasks/s (window)",
    "tasks/s after start",
    "stop after window (s)",
    "peak RSS largest farmer proc (MiB)",
    "peak RSS all farmer procs (MiB)",
    "farmer procs",
    "exit",
)


@dataclass
class _Watch:
    """What polling one window run saw, in seconds since its launch."""

    t_start: float | None = None  # the marker (line 1 of the tasklist) appeared
    t_done: float | None = None  # DIR/finished got its first line
    at_window: float | None = None  # tasks finished by t = window (interpolated)
    killed: bool = False


def _watch(
    p: subprocess.Popen[bytes],
    t0: float,
    window: float,
    deadline: float,
    marker: Path,
    finished: LineCounter,
    sampler: TreeSampler,
) -> _Watch:
    """Poll for the marker every 1 ms and sample progress and memory every 50 ms until *p*
    exits, or kill it *deadline* s after *t0*."""
    seen = _Watch()
    prev = (0.0, 0)
    next_sample = 0.0
    while True:
        now = time.perf_counter() - t0
        if seen.t_start is None and os.path.exists(marker):
            seen.t_start = now
        if now >= next_sample:
            sampler.sample()
            count = finished.count()
            if seen.t_done is None and count:
                seen.t_done = now
            if seen.at_window is None and now >= window:
                (t1, c1), span = prev, now - prev[0]
                seen.at_window = c1 + (count - c1) * ((window - t1) / span if span else 1.0)
            prev = (now, count)
            next_sample = now + SAMPLE_INTERVAL
        if p.poll() is not None:
            return seen
        if now > deadline:
            kill_tree(p)
            seen.killed = True
            return seen
        time.sleep(POLL_INTERVAL)


def _notes(rc: int | None, killed: bool, deadline: float, output: Path) -> list[str]:
    """What is unexpected about how a window run ended (exit 3 on --timeout is expected)."""
    notes = []
    if killed:
        notes.append(f"did not stop: killed after {deadline:.0f}s")
    elif rc == 0:
        notes.append("finished every task before the window ended")
    elif rc != TIMEOUT_EXIT:
        notes.append(f"unexpected exit {rc} (expected {TIMEOUT_EXIT} on --timeout)")
    if notes and not killed and rc not in (0, TIMEOUT_EXIT):
        notes.extend(last_lines(output))
    return notes


def window_run(
    bench: Bench, farmer: Tool, lines: int, marker: Path, tasklist: Path
) -> dict[str, Any]:
    """Run the farmer with --timeout WINDOW, sampling start, progress and memory."""
    a = bench.args
    d = bench.rundir(f"scale{lines}")
    wd = d / "work"
    finished = LineCounter(wd / "finished")
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()
    argv = [*farmer.argv(tasklist, wd, a.proc), "--timeout", f"{a.window:g}"]
    t0 = time.perf_counter()
    p = launch(argv, cwd=d, env=farmer.env, log_path=d / "output.log")
    sampler = TreeSampler(p.pid, argv[0])
    deadline = a.window + a.scale_grace
    seen = _watch(p, t0, a.window, deadline, marker, finished, sampler)
    wall = time.perf_counter() - t0
    rc = p.returncode
    reap(p)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)  # stray task processes, if any
    t_start = seen.t_start
    if t_start is None and marker.exists():
        t_start = wall
    done = finished.count()
    notes = _notes(rc, seen.killed, deadline, d / "output.log")
    if seen.at_window is None:  # exited before the window ended: rate over its own wall time
        in_window, span = float(done), wall
    else:
        in_window, span = seen.at_window, a.window
    return {
        "lines": lines,
        "window_s": a.window,
        "rc": rc,
        "wall_s": wall,
        "stop_after_window_s": wall - a.window if seen.at_window is not None else None,
        "time_to_first_start_s": t_start,
        "time_to_first_finished_s": seen.t_done,
        "finished_in_window": in_window,
        "finished": done,
        "rate_window": in_window / span if span else None,
        "rate_after_start": (
            in_window / (span - t_start)
            if t_start is not None and in_window and span > t_start
            else None
        ),
        "peak_rss_largest_farmer_proc_mib": sampler.peak_hwm_kb / 1024,
        "peak_rss_largest_role": sampler.peak_hwm_role,
        "peak_rss_total_farmer_mib": sampler.peak_total_rss_kb / 1024,
        "farmer_procs": sampler.max_farmer_procs,
        "rss_samples": sampler.samples,
        "note": "; ".join(notes),
    }


def _tasklists(bench: Bench, sizes: tuple[int, int]) -> dict[int, tuple[Path, Path]]:
    """Write a tasklist of each size whose line 1 touches a marker. -> {size: (list, marker)}."""
    lists: dict[int, tuple[Path, Path]] = {}
    for lines in sizes:
        marker = bench.base / f"started-{lines}"
        t = time.perf_counter()
        tl = write_tasklist(
            bench.base / f"scale-{lines}.txt",
            lines,
            trivial,
            first=f"touch {shlex.quote(str(marker))}",
        )
        lists[lines] = (tl, marker)
        log(
            f"  wrote {lines:,}-line tasklist ({tl.stat().st_size / 2**20:.1f} MiB) "
            f"in {time.perf_counter() - t:.1f} s"
        )
    return lists


def _rounds(
    bench: Bench, farmer: Tool, sizes: tuple[int, int], lists: dict[int, tuple[Path, Path]]
) -> list[dict[str, Any]]:
    """``--scale-rounds`` window runs of each size, alternating which size goes first."""
    runs: list[dict[str, Any]] = []
    for rnd in range(1, bench.args.scale_rounds + 1):
        for lines in sizes if rnd % 2 else sizes[::-1]:
            tl, marker = lists[lines]
            r = window_run(bench, farmer, lines, marker, tl)
            r["round"] = rnd
            runs.append(r)
            log(
                f"  round {rnd} {lines:>9,} lines: exit {r['rc']}, first task started "
                f"after {fmt(r['time_to_first_start_s'], 3)} s, "
                f"{fmt(r['finished_in_window'], 0)} finished in the window "
                f"({fmt(r['rate_window'])}/s), stopped {fmt(r['stop_after_window_s'], 2)} s "
                f"after it, peak RSS {r['peak_rss_largest_farmer_proc_mib']:.1f} MiB"
                + (f"  [{r['note']}]" if r["note"] else "")
            )
    return runs


def _median(xs: list[Any]) -> float | None:
    """Median of the known values, None if there are none."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


_MEDIANS = (
    "time_to_first_start_s",
    "time_to_first_finished_s",
    "finished_in_window",
    "finished",
    "wall_s",
    "stop_after_window_s",
    "rate_window",
    "rate_after_start",
)


def _summary(runs: list[dict[str, Any]], sizes: tuple[int, int]) -> dict[int, dict[str, Any]]:
    """Per size: medians of the runs, except the peaks of memory and processes (maxima)."""
    summary: dict[int, dict[str, Any]] = {}
    for lines in sizes:
        mine = [r for r in runs if r["lines"] == lines]
        biggest = max(mine, key=lambda r: r["peak_rss_largest_farmer_proc_mib"])
        summary[lines] = {
            "lines": lines,
            "runs": len(mine),
            "exit_codes": [r["rc"] for r in mine],
            **{key: _median([r[key] for r in mine]) for key in _MEDIANS},
            "peak_rss_largest_farmer_proc_mib": biggest["peak_rss_largest_farmer_proc_mib"],
            "peak_rss_largest_role": biggest["peak_rss_largest_role"],
            "peak_rss_total_farmer_mib": max(r["peak_rss_total_farmer_mib"] for r in mine),
            "farmer_procs": max(r["farmer_procs"] for r in mine),
            "completed_early": any(r["rc"] == 0 for r in mine),
        }
    return summary


def _table(summary: dict[int, dict[str, Any]]) -> str:
    """The section's table: one row per tasklist size."""
    rows = [
        [
            f"{r['lines']:,}",
            fmt(r["time_to_first_start_s"], 3),
            fmt(r["time_to_first_finished_s"], 3),
            fmt(r["finished_in_window"], 0),
            fmt(r["rate_window"]),
            fmt(r["rate_after_start"]),
            fmt(r["stop_after_window_s"], 2),
            f"{r['peak_rss_largest_farmer_proc_mib']:.1f} ({r['peak_rss_largest_role'] or 'n/a'})",
            f"{r['peak_rss_total_farmer_mib']:.1f}",
            str(r["farmer_procs"]),
            ",".join(map(str, r["exit_codes"])),
        ]
        for r in summary.values()
    ]
    return markdown_table(HEADER, rows)


def scale(bench: Bench, farmer: Tool | None, reason: str) -> None:
    """Section 2: run it, print its table and store its numbers in ``results["scale"]``."""
    a = bench.args
    log(
        f"## 2. Scale: {a.scale_lines:,}-line vs {a.scale_small:,}-line tasklist, "
        f"`--timeout {a.window:g}` window, --proc {a.proc}\n"
    )
    if farmer is None:
        bench.skip("scale", reason)
        return
    sizes = (a.scale_lines, a.scale_small)
    lists = _tasklists(bench, sizes)
    runs = _rounds(bench, farmer, sizes, lists)
    for tl, _ in lists.values():
        tl.unlink()
    summary = _summary(runs, sizes)
    log("")
    log(f"Medians over {a.scale_rounds} run(s) per size; peak RSS is the maximum.\n")
    log(_table(summary))
    big, small = summary[a.scale_lines], summary[a.scale_small]
    ratio = quotient(big["rate_window"], small["rate_window"])
    ratio_after = quotient(big["rate_after_start"], small["rate_after_start"])
    log(
        f"\ntasks/s {big['lines']:,} lines / {small['lines']:,} lines: "
        f"{times(ratio_after)} once started (the cost per "
        f"task), {times(ratio)} over the whole window (start "
        "included) (1.00x = no slowdown with list size)"
    )
    if small["completed_early"]:
        log(
            "note: the small list finished before the window ended; its rate is over its "
            "own (shorter) wall time."
        )
    log("")
    bench.results["scale"] = {
        "window_s": a.window,
        "proc": a.proc,
        "summary": {str(k): v for k, v in summary.items()},
        "rate_ratio_big_to_small": ratio,
        "rate_after_start_ratio_big_to_small": ratio_after,
        "runs": runs,
    }
