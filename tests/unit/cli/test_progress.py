"""The progress displays: plain summaries on a clock, the rich bar (its total, rate and ETA)
and summary table."""

from __future__ import annotations

import io

import pytest
from helpers.clock import FakeClock
from rich.console import Console

from taskfarmer.cli.progress import PlainDisplay, RateMeter, RichDisplay, eta_text
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


def test_the_rate_is_measured_over_the_last_minute_on_the_clock(fake_clock: FakeClock) -> None:
    meter = RateMeter(window=60.0)
    assert meter.rate(fake_clock()) is None and meter.eta(fake_clock(), 10) is None
    meter.add(fake_clock(), 0)
    for second in range(1, 121):  # 2 tasks/s for a minute, then 1 task/s
        fake_clock.tick(1.0)
        meter.add(fake_clock(), 2 * second if second <= 60 else 120 + (second - 60))
    assert meter.rate(fake_clock()) == pytest.approx(1.0, rel=0.05)
    assert meter.eta(fake_clock(), 30) == pytest.approx(30.0, rel=0.05)
    assert meter.eta(fake_clock(), 0) == 0.0
    fake_clock.tick(60.0)  # nothing ends for a minute: the rate falls, the ETA grows
    assert meter.rate(fake_clock()) == pytest.approx(0.5, rel=0.05)


def test_tasks_that_end_minutes_apart_still_give_a_rate(fake_clock: FakeClock) -> None:
    meter = RateMeter(window=60.0)
    meter.add(fake_clock(), 0)
    for done in range(1, 4):
        for _ in range(30):  # the display refreshes every 10 s, a task ends every 300 s
            fake_clock.tick(10.0)
            meter.add(fake_clock(), done - 1)
        meter.add(fake_clock(), done)
    assert meter.rate(fake_clock()) == pytest.approx(1 / 300, rel=0.01)


def test_the_bar_keeps_its_total_and_shows_an_eta(fake_clock: FakeClock) -> None:
    """2,000 tasks: what this farmer sees of them (done + running + pending) wobbles as tasks
    are claimed in chunks and recorded in batches; the bar's total is the workdir's."""
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    display = RichDisplay("node:1", console, clock=fake_clock)
    display.start(Snapshot(Counts(2000, 0, 0), 0, total=2000))
    totals, etas = [], []
    for sample in range(1, 17):
        fake_clock.tick(0.5)
        done = 60 * sample
        unseen = (7 * sample) % 9  # claimed in a chunk or ended, not recorded yet
        display.update(Snapshot(Counts(2000 - done - 4 - unseen, done, 0), 4, total=2000))
        task = display.progress.tasks[0]
        totals.append(task.total)
        etas.append(task.fields["eta"])
    display.progress.stop()
    assert set(totals) == {2000}
    assert "ETA -" not in etas
    assert etas[-1] == "ETA 0:00:09"  # 1,040 left at 120 tasks/s
    assert eta_text(None) == "ETA -" and eta_text(1e12).startswith("ETA > ")
