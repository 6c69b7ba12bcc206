"""Section 3: K farmers with ``--proc 1`` on one workdir against one farmer with ``--proc K``.

Besides the rates, it checks ``DIR/finished``: exactly N lines and N unique lines, so that no
task is lost or run twice by farmers sharing the workdir.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from ..context import Bench
from ..files import last_lines, line_stats, write_tasklist
from ..procs import launch, wait_all
from ..report import fmt, log, markdown_table, quotient, times
from ..tools import Tool, trivial


def contention_run(
    bench: Bench, farmer: Tool, farmers: int, proc: int, tl: Path, n: int
) -> dict[str, Any]:
    """Start *farmers* farmers with ``--proc`` *proc* together on *tl* and one workdir."""
    timeout = bench.args.run_timeout
    d = bench.rundir(f"cont{farmers}x{proc}")
    wd = d / "work"
    argvs = [farmer.argv(tl, wd, proc) for _ in range(farmers)]
    t0 = time.perf_counter()
    procs = [
        launch(argv, cwd=d, env=farmer.env, log_path=d / f"output{i}.log")
        for i, argv in enumerate(argvs)
    ]
    rcs, killed = wait_all(procs, timeout)
    wall = time.perf_counter() - t0
    stats = line_stats(wd / "finished")
    total, unique = stats if stats else (0, 0)
    notes = []
    if killed:
        notes.append(f"killed after {timeout:.0f}s")
    if any(rc not in (0, None) for rc in rcs):
        notes.append(f"exit codes {rcs}")
        bad = rcs.index(next(rc for rc in rcs if rc not in (0, None)))
        tail = last_lines(d / f"output{bad}.log")
        if tail:
            notes.append("output: " + " / ".join(tail))
    if total != n or unique != n:
        notes.append(f"finished has {total} lines, {unique} unique, expected {n}")
    ok = not killed and all(rc == 0 for rc in rcs)
    return {
        "farmers": farmers,
        "proc": proc,
        "tasks": n,
        "wall_s": wall,
        "rcs": rcs,
        "ok": ok,
        "finished_lines": total,
        "finished_unique": unique,
        "rate": n / wall if ok else (unique / wall if unique else None),
        "note": "; ".join(notes),
    }


def _rounds(
    bench: Bench, farmer: Tool, configs: list[tuple[int, int]], tl: Path, n: int
) -> list[dict[str, Any]]:
    """``--rounds`` runs of each (farmers, proc) config, alternating which goes first."""
    runs: list[dict[str, Any]] = []
    for rnd in range(1, bench.args.rounds + 1):
        for farmers, proc in configs if rnd % 2 else configs[::-1]:
            r = contention_run(bench, farmer, farmers, proc, tl, n)
            r["round"] = rnd
            runs.append(r)
            log(
                f"  round {rnd} {farmers} x --proc {proc}: {r['wall_s']:7.2f} s "
                f"{fmt(r['rate']):>9} tasks/s" + (f"  [{r['note']}]" if r["note"] else "")
            )
    return runs


def _summary(
    runs: list[dict[str, Any]], configs: list[tuple[int, int]]
) -> dict[str, dict[str, Any]]:
    """Per config (``"KxP"``): medians over its good runs and the notes of the others."""
    summary = {}
    for farmers, proc in configs:
        mine = [r for r in runs if r["farmers"] == farmers and r["proc"] == proc]
        good = [r["rate"] for r in mine if r["ok"] and r["rate"]]
        summary[f"{farmers}x{proc}"] = {
            "farmers": farmers,
            "proc": proc,
            "runs": len(mine),
            "runs_ok": len(good),
            "median_rate": statistics.median(good) if good else None,
            "median_wall_s": statistics.median([r["wall_s"] for r in mine if r["ok"]])
            if good
            else None,
            "notes": sorted({r["note"] for r in mine if r["note"]}),
        }
    return summary


def _table(summary: dict[str, dict[str, Any]]) -> str:
    """The section's table: one row per config."""
    rows = [
        [
            f"{s['farmers']} farmer(s) x --proc {s['proc']}",
            f"{s['runs_ok']}/{s['runs']}",
            fmt(s["median_wall_s"], 2),
            fmt(s["median_rate"]),
            " / ".join(s["notes"]) or "ok",
        ]
        for s in summary.values()
    ]
    return markdown_table(["config", "runs ok", "median wall (s)", "median tasks/s", "notes"], rows)


def contention(bench: Bench, farmer: Tool | None, reason: str) -> None:
    """Section 3: run it, print its table and store its numbers in ``results["contention"]``."""
    a = bench.args
    k = a.contention_farmers
    log(
        f"## 3. Contention: {k} farmers x --proc 1 on one workdir vs 1 farmer x --proc {k}, "
        f"{a.contention_tasks:,} tasks, {a.rounds} round(s)\n"
    )
    if farmer is None:
        bench.skip("contention", reason)
        return
    n = a.contention_tasks
    tl = write_tasklist(bench.base / f"contention-{n}.txt", n, trivial)
    configs = [(k, 1), (1, k)]
    runs = _rounds(bench, farmer, configs, tl, n)
    summary = _summary(runs, configs)
    many, one = summary[f"{k}x1"], summary[f"1x{k}"]
    ratio = quotient(many["median_rate"], one["median_rate"])
    log("")
    log(_table(summary))
    log(f"\n{k}x1 / 1x{k} tasks/s: {times(ratio)} (1.00x = sharing a workdir costs nothing)\n")
    bench.results["contention"] = {
        "tasks": n,
        "summary": summary,
        "ratio_many_to_one": ratio,
        "runs": runs,
    }
