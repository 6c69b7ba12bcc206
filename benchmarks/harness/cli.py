"""The harness's options and its run: the header, the sections, clean-up and the JSON dump."""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .context import Bench
from .procs import cleanup_live
from .report import loadavg, log, log_header, machine_info, write_json
from .sections import SECTIONS
from .sections.contention import contention
from .sections.scale import scale
from .sections.throughput import throughput
from .tools import TOOLS, Tool, build_tools

# Options whose default depends on --quick: (full run, quick run).
_DEFAULTS = {
    "rounds": (3, 1),
    "tasks": (4000, 500),
    "ptf_tasks": (1000, 200),
    "window": (5.0, 3.0),
    "scale_rounds": (2, 1),
    "contention_tasks": (6000, 400),
}


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The run as a whole: --quick, the farmer, the JSON dump, parallelism and task counts."""
    p.add_argument(
        "--quick", action="store_true", help="1 round, fewer tasks, shorter windows (about 20 s)"
    )
    p.add_argument(
        "--farmer-cmd",
        metavar="CMD",
        help="farmer command line prefix (shell-split), e.g. 'python -m taskfarmer'; "
        "default: `farmer` on PATH, else `python -m taskfarmer`",
    )
    p.add_argument(
        "--baseline-cmd",
        metavar="CMD",
        help="a second farmer to compare in the same run (tool 'baseline'), e.g. "
        "'env PYTHONPATH=/old/checkout python -m taskfarmer'",
    )
    p.add_argument("--json", metavar="OUT", help="write every number to OUT as JSON")
    p.add_argument(
        "--proc", type=int, default=2, help="parallelism for throughput and scale (default 2)"
    )
    p.add_argument(
        "--widths",
        metavar="N,N,...",
        help="run the throughput section once per width (each tool with -P/--proc N), "
        "e.g. 2,16,64; default: --proc",
    )
    p.add_argument("--rounds", type=int, help="round-robin rounds (default 3, quick 1)")
    p.add_argument("--tasks", type=int, help="tasks per throughput run (default 4000, quick 500)")
    p.add_argument(
        "--ptf-tasks", type=int, help="cap on PyTaskFarmer's task count (default 1000, quick 200)"
    )


def _add_section_options(p: argparse.ArgumentParser) -> None:
    """The scale and contention sections, and the per-run time limit."""
    p.add_argument(
        "--scale-lines", type=int, default=1_000_000, help="big tasklist size (default 1000000)"
    )
    p.add_argument(
        "--scale-small", type=int, default=10_000, help="small tasklist size (default 10000)"
    )
    p.add_argument(
        "--window",
        type=float,
        help="--timeout given to the farmer in the scale runs (default 5, quick 3; shorter "
        "than the small list takes, so both lists run the whole window)",
    )
    p.add_argument(
        "--scale-rounds", type=int, help="runs per tasklist size, alternating (default 2, quick 1)"
    )
    p.add_argument(
        "--scale-grace",
        type=float,
        default=60.0,
        help="kill a scale run this long after its window if it has not stopped (default 60)",
    )
    p.add_argument(
        "--contention-tasks", type=int, help="tasks per contention run (default 6000, quick 400)"
    )
    p.add_argument(
        "--contention-farmers",
        type=int,
        default=4,
        help="farmers sharing a workdir, vs 1 farmer with this --proc (default 4)",
    )
    p.add_argument(
        "--run-timeout",
        type=float,
        default=180.0,
        help="kill a throughput/contention run after this many seconds (default 180)",
    )


def _add_selection_options(p: argparse.ArgumentParser) -> None:
    """Which tools and sections run, and where their directories go."""
    p.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help=f"comma-separated subset of {','.join(TOOLS)} (default all)",
    )
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default all)",
    )
    p.add_argument(
        "--ptf-venv",
        metavar="DIR",
        help="PyTaskFarmer virtualenv (default ~/.cache/taskfarmer-bench/...)",
    )
    p.add_argument("--tmpdir", help="where run directories are created (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep run directories and tasklists")


def _check(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Exit with a usage error (2) for unknown tools or sections and impossible counts."""
    for name, allowed in (("tools", TOOLS), ("sections", SECTIONS)):
        bad = set(getattr(a, name)) - set(allowed)
        if bad:
            p.error(f"--{name}: unknown {sorted(bad)}; choose from {', '.join(allowed)}")
    counts = (
        a.proc,
        a.rounds,
        a.scale_rounds,
        a.tasks,
        a.ptf_tasks,
        a.contention_tasks,
        a.contention_farmers,
    )
    if min(counts) < 1:
        p.error("counts must be >= 1")
    if a.scale_lines < 2 or a.scale_small < 2:
        p.error("--scale-lines/--scale-small must be >= 2")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options, with the --quick or full defaults filled in and lists split at commas."""
    p = argparse.ArgumentParser(
        description="Benchmark taskfarmer against xargs, GNU parallel and PyTaskFarmer.",
    )
    _add_run_options(p)
    _add_section_options(p)
    _add_selection_options(p)
    a = p.parse_args(argv)
    for key, (full, quick) in _DEFAULTS.items():
        if getattr(a, key) is None:
            setattr(a, key, quick if a.quick else full)
    a.tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    try:
        a.widths = [int(w) for w in a.widths.split(",")] if a.widths else []
    except ValueError:
        p.error(f"--widths: not a comma-separated list of numbers: {a.widths!r}")
    if any(w < 1 for w in a.widths):
        p.error("--widths: every width must be at least 1")
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    _check(p, a)
    return a


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM or SIGHUP: unwind as on Ctrl-C, so that ``main`` cleans up."""
    raise KeyboardInterrupt


def _run_sections(bench: Bench) -> None:
    """Find the tools (only the farmer unless the throughput section runs), then run the
    sections asked for, in order."""
    args = bench.args
    if "throughput" in args.sections:
        tools, skipped = build_tools(args)
    else:
        tools, skipped = build_tools(argparse.Namespace(**{**vars(args), "tools": ["farmer"]}))
    farmer: Tool | None = next((t for t in tools if t.name == "farmer"), None)
    reason = skipped.get("farmer", "excluded by --tools")
    if farmer:
        log(f"farmer: {farmer.note}" + (f" [{farmer.version}]" if farmer.version else ""))
    else:
        log(f"farmer: unavailable ({reason})")
    log("")
    bench.results["farmer"] = {"how": farmer.note if farmer else None, "reason": reason}
    if "throughput" in args.sections:
        proc = args.proc
        for width in args.widths or [proc]:
            args.proc = width
            throughput(bench, tools, skipped)
        args.proc = proc
    if "scale" in args.sections:
        scale(bench, farmer, reason)
    if "contention" in args.sections:
        contention(bench, farmer, reason)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its markdown report. -> 0, or 130 if interrupted."""
    args = parse_args(argv)
    # Run directories and child sessions are cleaned up on SIGTERM/SIGHUP as on Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    started = time.perf_counter()
    info = machine_info()
    command = shlex.join([sys.executable, *sys.argv])
    log_header(info, command)
    base = Path(tempfile.mkdtemp(prefix="taskfarmer-bench-", dir=args.tmpdir))
    bench = Bench(args, base)
    bench.results.update(
        machine=info, command=command, config={k: v for k, v in vars(args).items() if k != "json"}
    )
    rc = 0
    try:
        _run_sections(bench)
    except KeyboardInterrupt:
        log("\ninterrupted")
        rc = 130
    finally:
        cleanup_live()
        # Run directories are removed only now, never between runs: deleting thousands of log
        # files would charge the next run for it (ext4's inode allocator skips inodes freed in
        # the last 30 s on a journal-less ext4: `recently_deleted` in a kernel profile), and only
        # the farmers keep per-task files, so it would bias the comparison.
        if args.keep:
            log(f"run directories kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    total = time.perf_counter() - started
    bench.results["total_runtime_s"] = total
    bench.results["loadavg_end"] = loadavg()
    log(f"total runtime: {total:.0f} s; load average now {loadavg()}")
    if args.json:
        write_json(args.json, bench.results)
        log(f"results written to {args.json}")
    return rc
