"""What a farmer shows while it runs.

On a terminal: a rich progress bar (finished / failed / running / remaining, rate, ETA) and a
summary table at the end. Elsewhere (batch job logs): plain timestamped lines, a summary every
:data:`SUMMARY_INTERVAL` seconds, and the per-task lines of ``--verbose``. The clock is
injectable so that tests control the summary schedule.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..farm.display import Display, Snapshot

#: Seconds between summary lines when not on a terminal.
SUMMARY_INTERVAL = 60.0


def stamp(clock: Callable[[], float] = time.time) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of the clock's now."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(clock()))


def summary_text(snapshot: Snapshot, rate: float | None) -> str:
    """``12 finished, 1 failed, 2 running, 85 remaining (3.4 tasks/s)``."""
    counts = snapshot.counts
    text = (f"{counts.finished} finished, {counts.failed} failed, {snapshot.running} running, "
            f"{counts.pending} remaining")
    return text + (f" ({rate:.1f} tasks/s)" if rate is not None else "")


class PlainDisplay:
    """Timestamped lines for logs that are not terminals."""

    def __init__(self, name: str, out: IO[str] | None = None,
                 clock: Callable[[], float] = time.time,
                 interval: float = SUMMARY_INTERVAL) -> None:
        self.name = name
        self.out = out if out is not None else sys.stdout  # as it is now (cli.streams guards it)
        self.clock = clock
        self.interval = interval
        self._started = clock()
        self._next = self._started + interval
        self._first_done: int | None = None

    def _rate(self, snapshot: Snapshot) -> float | None:
        done = snapshot.counts.finished + snapshot.counts.failed
        if self._first_done is None:
            self._first_done = done
        elapsed = self.clock() - self._started
        return (done - self._first_done) / elapsed if elapsed > 0 else None

    def log(self, text: str) -> None:
        """Print one line as it is (workers stamp their own lines)."""
        self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()

    def say(self, text: str) -> None:
        """Print a farmer line with a timestamp and our name."""
        self.log(f"{stamp(self.clock)} {self.name}: {text}")

    def start(self, snapshot: Snapshot) -> None:
        """First summary."""
        self._rate(snapshot)
        self.say(summary_text(snapshot, None))

    def update(self, snapshot: Snapshot) -> None:
        """A summary line whenever :attr:`interval` has passed."""
        now = self.clock()
        if now >= self._next:
            self._next = now + self.interval
            self.say(summary_text(snapshot, self._rate(snapshot)))

    def finish(self, snapshot: Snapshot, outcome: str) -> None:
        """Last summary and how the farm ended."""
        self.say(f"{outcome}: {summary_text(snapshot, self._rate(snapshot))}")


class RichDisplay(PlainDisplay):
    """A live progress bar on a terminal."""

    def __init__(self, name: str, console: Console, clock: Callable[[], float] = time.time
                 ) -> None:
        super().__init__(name, console.file, clock)
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[finished]} finished[/] "
                       "[red]{task.fields[failed]} failed[/] "
                       "[yellow]{task.fields[running]} running[/] "
                       "{task.fields[pending]} remaining"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
            get_time=clock,
        )
        self._task = self.progress.add_task(name, total=None, finished=0, failed=0, running=0,
                                            pending=0, rate="")

    def log(self, text: str) -> None:
        """Print above the bar."""
        self.progress.console.print(text.rstrip("\n"), markup=False, highlight=False)

    def start(self, snapshot: Snapshot) -> None:
        """Show the bar."""
        self._rate(snapshot)
        self.progress.start()
        self.update(snapshot)

    def update(self, snapshot: Snapshot) -> None:
        """Refresh the numbers."""
        counts = snapshot.counts
        done = counts.finished + counts.failed
        rate = self._rate(snapshot)
        self.progress.update(
            self._task, completed=done, total=done + snapshot.running + counts.pending,
            finished=counts.finished, failed=counts.failed, running=snapshot.running,
            pending=counts.pending, rate=f"{rate:.1f}/s" if rate else "")

    def finish(self, snapshot: Snapshot, outcome: str) -> None:
        """Stop the bar and print a summary table."""
        self.update(snapshot)
        self.progress.stop()
        rate = self._rate(snapshot)
        table = Table(title=f"{self.name}: {outcome}")
        for column in ("finished", "failed", "remaining", "elapsed", "rate"):
            table.add_column(column, justify="right")
        counts = snapshot.counts
        table.add_row(str(counts.finished), str(counts.failed), str(counts.pending),
                      f"{self.clock() - self._started:.1f} s",
                      f"{rate:.1f} tasks/s" if rate is not None else "-")
        self.console.print(table)


def make_display(name: str, clock: Callable[[], float] = time.time,
                 out: IO[str] | None = None) -> Display:
    """A :class:`RichDisplay` if ``out`` (default: ``sys.stdout`` now) is a terminal, else a
    :class:`PlainDisplay`."""
    out = out if out is not None else sys.stdout
    if out.isatty():
        return RichDisplay(name, Console(file=out), clock)
    return PlainDisplay(name, out, clock)
