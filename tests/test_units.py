"""Unit tests of the small pure pieces: timeline file, displays, SLURM env, argv (the locks:
tests/unit/store)."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import pytest
from rich.console import Console

from taskfarmer.cli.progress import PlainDisplay, RichDisplay
from taskfarmer.compat.argv import translate
from taskfarmer.errors import UsageError
from taskfarmer.farm.display import Snapshot
from taskfarmer.farm.farmer import IDLE_POLL_FIRST, POLL, idle_backoff
from taskfarmer.farm.signals import StopRequest, died_of_stop_signal
from taskfarmer.hpc.slurm import default_proc, job_labels
from taskfarmer.runners.basic import shell_argv
from taskfarmer.store import Counts
from taskfarmer.timeline.events import choose_pid, execution, process_title
from taskfarmer.timeline.file import Timeline


def _slice(name: str, task_id: int = 0) -> list:
    return execution(task_id, name, 1.5, 2.0, 7, 1, "finished", False, {})


def test_timeline_appends_stay_valid_json(tmp_path: Path) -> None:
    timeline = Timeline(tmp_path / "timeline.json")
    timeline.append([])
    assert not (tmp_path / "timeline.json").exists()
    for i in range(3):
        timeline.append(_slice("echo", i))
        events = json.loads((tmp_path / "timeline.json").read_text())
        assert [e["args"]["id"] for e in events] == list(range(i + 1))
    assert events[0]["ts"] == 1_500_000 and events[0]["dur"] == 500_000


def test_timeline_repair_cuts_a_torn_event(tmp_path: Path) -> None:
    path = tmp_path / "timeline.json"
    timeline = Timeline(path)
    timeline.append(_slice("a") + _slice("b"))
    whole = path.read_bytes()
    path.write_bytes(whole[:-3] + b',\n{"name":"c","ph":"X","ts":1')  # a node died mid-write
    assert Timeline(path).repair()
    assert [e["name"] for e in json.loads(path.read_text())] == ["0: a", "0: b"]
    Timeline(path).append(_slice("d"))
    assert [e["name"] for e in json.loads(path.read_text())] == ["0: a", "0: b", "0: d"]
    path.write_bytes(b"[\n{\"na")
    assert Timeline(path).repair() and path.read_bytes() == b""


def test_track_pids_are_the_farmers_own_unless_taken() -> None:
    assert choose_pid(4242, [], 16, "n1.4242-ab") == 4242
    taken = choose_pid(4242, [4242], 16, "n2.4242-cd")
    assert taken not in (4242, 1) and taken > 16
    assert choose_pid(4242, [4242, taken], 16, "n2.4242-cd") == taken + 1
    assert choose_pid(1, [], 16, "c.1-ef") > 16  # PID 1 in a container: tid 1 would clash
    assert choose_pid(8, [], 16, "c.8-ef") > 16
    assert process_title("n1", {}, True) == "n1 · farmer pid"
    labels = {"job": "12", "step": "0", "array_job": "10", "array_task": "2", "restart": "1"}
    assert process_title("n1", labels, False) == (
        "n1 · job 12.0 · array 10_2 · restart 1 · farmer track")


def test_plain_display_prints_summaries_on_its_clock() -> None:
    now = [1000.0]
    out = io.StringIO()
    display = PlainDisplay("node:1", out, clock=lambda: now[0], interval=60)
    display.start(Snapshot(Counts(pending=10, finished=0, failed=0), running=2))
    display.update(Snapshot(Counts(pending=8, finished=2, failed=0), running=2))
    assert out.getvalue().count("\n") == 1  # not yet a minute
    now[0] += 61
    display.update(Snapshot(Counts(pending=4, finished=5, failed=1), running=2))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].endswith("node:1: 5 finished, 1 failed, 2 running, 4 remaining "
                             "(0.1 tasks/s)")
    display.finish(Snapshot(Counts(0, 9, 1), 0), "done with failures")
    assert "done with failures: 9 finished, 1 failed" in out.getvalue()


def test_rich_display_ends_with_a_summary_table() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    now = [0.0]
    display = RichDisplay("node:1", console, clock=lambda: now[0])
    display.start(Snapshot(Counts(3, 0, 0), 1))
    now[0] = 10.0
    display.finish(Snapshot(Counts(0, 3, 1), 0), "done with failures")
    text = out.getvalue()
    assert "node:1: done with failures" in text
    assert "finished" in text and "remaining" in text and "0.4 tasks/s" in text


def test_default_proc_follows_slurm() -> None:
    assert default_proc({}, affinity=8) == 8
    assert default_proc({"SLURM_CPUS_ON_NODE": "4"}, affinity=8) == 4
    assert default_proc({"SLURM_CPUS_ON_NODE": "4", "SLURM_CPUS_PER_TASK": "2"}, affinity=8) == 2
    assert default_proc({"SLURM_CPUS_ON_NODE": "64"}, affinity=8) == 8
    assert default_proc({"SLURM_CPUS_ON_NODE": "bogus"}, affinity=3) == 3


def test_job_labels() -> None:
    env = {"SLURM_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "3", "SLURMD_NODENAME": "n2"}
    assert job_labels(env) == {"job": "12", "array_task": "3", "node": "n2"}
    assert job_labels({"SLURM_JOB_ID": "12", "SLURM_RESTART_COUNT": "1"}) == {
        "job": "12", "restart": "1"}


KNOWN = ["--proc", "--timeout", "--workdir", "--verbose", "--runner", "--tasklist", "--lease",
         "--retries", "--task-timeout", "--requeue-failed", "--lock", "--list-runners",
         "--list-tasklists", "--version", "--help"]


def test_pytaskfarmer_verbose_values() -> None:
    assert translate(["t", "-v", "True"], KNOWN) == ["t", "--verbose"]
    assert translate(["t", "--verbose", "0", "-n", "2"], KNOWN) == ["t", "-n", "2"]
    assert translate(["-v", "tasks.txt"], KNOWN) == ["--verbose", "tasks.txt"]
    assert translate(["--verbose=True", "t"], KNOWN) == ["--verbose", "t"]
    assert translate(["--verbose=0", "t"], KNOWN) == ["t"]
    # As pytaskfarmer.py, -v always takes a value, whatever it is (argparse did).
    assert translate(["-v", "yes please", "t"], KNOWN, True) == ["--verbose", "t"]
    assert translate(["-v", "tasks.txt", "t"], KNOWN, True) == ["--verbose", "t"]
    assert translate(["-vFalse", "t"], KNOWN, True) == ["t"]
    assert translate(["-v1", "t"], KNOWN, True) == ["--verbose", "t"]
    assert translate(["t", "--", "-v", "1"], KNOWN, True) == ["t", "--", "-v", "1"]


def test_argparse_style_abbreviations() -> None:
    assert translate(["--pro", "4", "--work", "w", "t"], KNOWN) == [
        "--proc", "4", "--workdir", "w", "t"]
    assert translate(["--pro=4", "--ti=9", "t"], KNOWN) == ["--proc=4", "--timeout=9", "t"]
    # Unambiguous in PyTaskFarmer stays so, though ours has more options.
    assert translate(["--ver", "1", "--task", "x", "t"], KNOWN, True) == [
        "--verbose", "--tasklist", "x", "t"]
    assert translate(["--req", "t"], KNOWN) == ["--requeue-failed", "t"]
    assert translate(["--nope", "t"], KNOWN) == ["--nope", "t"]  # click reports it
    with pytest.raises(UsageError, match="--t: ambiguous option: could be --tasklist, "
                                         "--timeout"):
        translate(["--t", "1", "t"], KNOWN)
    with pytest.raises(UsageError, match="could be --list-runners, --list-tasklists"):
        translate(["--list"], KNOWN)


def test_stop_request_handler_records_the_first_signal_and_calls_back() -> None:
    calls = []
    stop = StopRequest()
    stop.on_stop(lambda: calls.append(1))
    assert not stop.requested
    stop.handle(signal.SIGUSR1)
    stop.handle(signal.SIGTERM)
    assert stop.requested and stop.describe() == "SIGUSR1" and calls == [1, 1]


def test_sighup_is_a_stop_signal_whose_handler_stops_the_farm() -> None:
    """A closed terminal (SIGHUP) stops like SIGTERM: the installed handler records it."""
    stop = StopRequest()
    previous = signal.getsignal(signal.SIGHUP)
    try:
        stop.install()
        handler = signal.getsignal(signal.SIGHUP)
        assert callable(handler)
        handler(signal.SIGHUP, None)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert stop.requested and stop.describe() == "SIGHUP"
    assert died_of_stop_signal(128 + signal.SIGHUP)


def test_died_of_stop_signal() -> None:
    assert died_of_stop_signal(-signal.SIGUSR1)
    assert died_of_stop_signal(128 + signal.SIGTERM)
    assert not died_of_stop_signal(1) and not died_of_stop_signal(-signal.SIGKILL)


def test_shell_argv() -> None:
    assert shell_argv("echo 'a b' | wc") == ["/bin/sh", "-c", "echo 'a b' | wc"]


def test_waiting_for_other_farmers_backs_off_from_a_short_poll_to_the_long_one() -> None:
    sleeps, idle = [], IDLE_POLL_FIRST
    for _ in range(8):
        poll, idle = idle_backoff(idle, waiting=True)
        sleeps.append(poll)
    assert sleeps[0] == IDLE_POLL_FIRST and sleeps[-1] == POLL
    assert all(b == min(2 * a, POLL) for a, b in zip(sleeps, sleeps[1:]))
    assert idle_backoff(idle, waiting=False) == (POLL, IDLE_POLL_FIRST)  # working: start over
