"""What a farmer shows while it runs.

On a terminal: a rich progress bar (finished / failed / running / remaining, rate, ETA) and a
summary table at the end. Elsewhere (batch job logs): plain timestamped lines, a summary every
:data:`SUMMARY_INTERVAL` seconds, and the per-task lines of ``--verbose``. The clock is
injectable so that tests control the summary schedule and the rate.

The bar's total is the workdir's number of tasks (it changes only when lines are appended) and
its rate and ETA come from :class:`RateMeter`, not from rich's own estimate: rich forgets its
speed samples whenever the total changes, and counted from this farmer's view (done + running
+ pending, without the tasks claimed in chunks or ended and not yet recorded) the total changed
at nearly every refresh, so the ETA read ``-:--:--`` most of the time.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from datetime import timedelta
from typing import IO, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ..farm.display import Display, Snapshot

#: Seconds between summary lines when not on a terminal.
SUMMARY_INTERVAL = 60.0
#: Seconds of progress the bar's rate and ETA are measured over (at least).
RATE_WINDOW = 60.0


def stamp(clock: Callable[[], float] = time.time) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of the clock's now."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(clock()))


def summary_text(snapshot: Snapshot, rate: float | None) -> str:
    """``12 finished, 1 failed, 2 running, 85 remaining (3.4 tasks/s)``."""
    counts = snapshot.counts
    text = (f"{counts.finished} finished, {counts.failed} failed, {snapshot.running} running, "
            f"{counts.pending} remaining")
    return text + (f" ({rate:.1f} tasks/s)" if rate is not None else "")


class RateMeter:
    """Tasks done per second, measured over the last :data:`RATE_WINDOW` seconds or more.

    A sample ``(time, tasks done)`` is kept whenever the count changes (and the first one).
    The rate runs from the newest sample at least the window old (else the first) to now: so
    short tasks give a rate of the last minute, and tasks that end minutes apart still give
    one, falling while none ends.
    """

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> None:
        """The count of tasks done at ``now``."""
        if not self._samples or self._samples[-1][1] != done:
            self._samples.append((now, done))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    def rate(self, now: float) -> float | None:
        """Tasks per second; None before any progress (or after the count went down)."""
        if not self._samples:
            return None
        since, first = self._samples[0]
        done = self._samples[-1][1] - first
        return done / (now - since) if done > 0 and now > since else None

    def eta(self, now: float, left: int) -> float | None:
        """Seconds until ``left`` more tasks are done at :meth:`rate`; None without one."""
        if left <= 0:
            return 0.0
        rate = self.rate(now)
        return left / rate if rate else None


#: The longest ETA shown as a time (seconds); beyond it, "more than".
ETA_MAX = 100 * 86400


def eta_text(seconds: float | None) -> str:
    """``ETA 0:01:05``; ``ETA -`` for None."""
    if seconds is None:
        return "ETA -"
    if seconds >= ETA_MAX:
        return f"ETA > {ETA_MAX // 86400} days"
    return f"ETA {timedelta(seconds=round(seconds))}"


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
            TextColumn("{task.fields[eta]}"),
            console=console,
            get_time=clock,
        )
        self.meter = RateMeter()
        self._task = self.progress.add_task(name, total=None, finished=0, failed=0, running=0,
                                            pending=0, rate="", eta=eta_text(None))

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
        now = self.clock()
        self.meter.add(now, done)
        rate = self.meter.rate(now)
        total = (snapshot.total if snapshot.total is not None
                 else done + snapshot.running + counts.pending)
        self.progress.update(
            self._task, completed=done, total=total,
            finished=counts.finished, failed=counts.failed, running=snapshot.running,
            pending=counts.pending, rate=f"{rate:.1f}/s" if rate else "",
            eta=eta_text(self.meter.eta(now, total - done)))

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
