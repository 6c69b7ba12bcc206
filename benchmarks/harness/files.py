"""Tasklists, and the lines of the records the tools leave behind."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def count_lines(path: Path) -> int | None:
    """Number of lines in *path* (a last line without newline counts), None if missing."""
    try:
        with path.open("rb") as f:
            n = 0
            last = b"\n"
            for chunk in iter(lambda: f.read(1 << 20), b""):
                n += chunk.count(b"\n")
                last = chunk[-1:]
            return n + (last != b"\n")
    except OSError:
        return None


def line_stats(path: Path) -> tuple[int, int] | None:
    """(total, unique) non-empty lines of *path*, None if missing."""
    try:
        with path.open("rb") as f:
            lines = [ln.strip() for ln in f]
    except OSError:
        return None
    lines = [ln for ln in lines if ln]
    return len(lines), len(set(lines))


def last_lines(path: Path, n: int = 3) -> list[str]:
    """The last *n* lines of a run's output log, to say why it failed."""
    return path.read_text(errors="replace").strip().splitlines()[-n:]


def write_tasklist(path: Path, n: int, fmt_line: Callable[[int], str], first: str = "") -> Path:
    """Write *n* lines (*first*, if given, replaces line 1) in 1 MB chunks."""
    with path.open("w") as f:
        start = 1
        if first:
            f.write(first + "\n")
            start = 2
        chunk = 50_000
        for lo in range(start, n + 1, chunk):
            hi = min(n, lo + chunk - 1)
            f.write("".join(fmt_line(i) + "\n" for i in range(lo, hi + 1)))
    return path
