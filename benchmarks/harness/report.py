"""The markdown report: log lines, number formats, tables and the machine description."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def log(msg: str = "") -> None:
    """Print one line of the report at once (it is read while the run goes on)."""
    print(msg, flush=True)


def fmt(x: float | None, digits: int = 1) -> str:
    """``x`` with thousands separators and ``digits`` decimals, ``n/a`` for None."""
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def quotient(x: float | None, y: float | None) -> float | None:
    """``x / y``, None unless both are known and non-zero."""
    return x / y if x and y else None


def times(ratio: float | None) -> str:
    """A ratio as ``1.23x``, ``n/a`` when unknown (or zero)."""
    return f"{ratio:.2f}x" if ratio else "n/a"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table whose columns are padded to their widest cell."""
    rows = [list(map(str, r)) for r in rows]
    widths = [len(h) for h in header]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, None where the system has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """Usable CPUs, CPU model, memory, kernel, Python, date and load average at start."""
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = ln.split(":", 1)[1].strip()
                break
    mem_kb = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for ln in f:
            if ln.startswith("MemTotal:"):
                mem_kb = int(ln.split()[1])
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_gib": round(mem_kb / 2**20, 1) if mem_kb else None,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg_start": loadavg(),
    }


def log_header(info: dict[str, Any], command: str) -> None:
    """The report's title, the exact command line and the machine description."""
    log("# taskfarmer benchmark\n")
    log(f"command: `{command}`\n")
    log(f"- nproc: {info['nproc']} (cpu_count {info['cpu_count']})")
    log(f"- CPU: {info['cpu_model']}")
    log(f"- memory: {info['mem_total_gib']} GiB")
    log(f"- kernel: {info['kernel']} ({info['os']})")
    log(f"- Python: {info['python']} ({info['python_executable']})")
    log(f"- date: {info['date']}")
    log(f"- load average (1, 5, 15 min): {info['loadavg_start']}  (other load skews results)\n")


def write_json(path: str, results: dict[str, Any]) -> None:
    """Every number of the run, as indented JSON (anything else, e.g. a Path, as a string)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2, default=str)
        f.write("\n")
