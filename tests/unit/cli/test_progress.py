"""The progress displays: plain summaries on a clock, the rich summary table."""

from __future__ import annotations

import io

from helpers.clock import FakeClock
from rich.console import Console

from taskfarmer.cli.progress import PlainDisplay, RichDisplay
from taskfarmer.farm.display import Snapshot
from taskfarmer.store import Counts


def test_plain_display_prints_summaries_on_its_clock(fake_clock: FakeClock) -> None:
    out = io.StringIO()
    display = PlainDisplay("node:1", out, clock=fake_clock, interval=60)
    display.start(Snapshot(Counts(pending=10, finished=0, failed=0), running=2))
    display.update(Snapshot(Counts(pending=8, finished=2, failed=0), running=2))
    assert out.getvalue().count("\n") == 1  # not yet a minute
    fake_clock.tick(61)
    display.update(Snapshot(Counts(pending=4, finished=5, failed=1), running=2))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].endswith("node:1: 5 finished, 1 failed, 2 running, 4 remaining "
                             "(0.1 tasks/s)")
    display.finish(Snapshot(Counts(0, 9, 1), 0), "done with failures")
    assert "done with failures: 9 finished, 1 failed" in out.getvalue()


def test_rich_display_ends_with_a_summary_table(fake_clock: FakeClock) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    display = RichDisplay("node:1", console, clock=fake_clock)
    display.start(Snapshot(Counts(3, 0, 0), 1))
    fake_clock.tick(10.0)
    display.finish(Snapshot(Counts(0, 3, 1), 0), "done with failures")
    text = out.getvalue()
    assert "node:1: done with failures" in text
    assert "finished" in text and "remaining" in text and "0.4 tasks/s" in text
