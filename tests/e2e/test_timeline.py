"""timeline.json content, read back as JSON (the state beside it in-process:
tests/unit/timeline/test_counts.py; the UI tests open it in Perfetto:
tests/external/perfetto/test_timeline_perfetto.py)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.farmer import ids, run_farmer, write_tasklist

from taskfarmer.timeline.counts import TimelineState


def test_a_pytaskfarmer_timeline_is_continued_not_truncated(  # type: ignore[no-untyped-def]
        tmp_path: Path, pytaskfarmer) -> None:
    """The real PyTaskFarmer starts the list (stopped by its --timeout), we finish it."""
    tasks = write_tasklist(tmp_path / "t", ["sleep 0.2"] * 30)
    workdir = tmp_path / "t_workdir"
    pytaskfarmer.run([str(tasks), "--proc", "2", "--timeout", "2"], cwd=tmp_path, env={})
    theirs = json.loads((workdir / "timeline.json").read_text())  # one line, rewritten per task
    assert len(theirs) == len(ids(workdir / "finished")) > 0
    assert run_farmer([str(tasks), "-n", "2"]).returncode == 0
    events = json.loads((workdir / "timeline.json").read_text())
    assert events[: len(theirs)] == theirs  # every one of their events kept, in order
    ours = [e for e in events if e["ph"] == "X" and e.get("cat") != "task"]
    assert len(theirs) + len(ours) == 30 == len(ids(workdir / "finished"))
    assert run_farmer([str(tasks)]).returncode == 0  # appended to again, in place
    assert json.loads((workdir / "timeline.json").read_text())[: len(theirs)] == theirs


def test_counters_end_at_the_state_files_counts(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true", "false", "exit 2", "true", "sleep 0.2"])
    workdir = tmp_path / "t_workdir"
    assert run_farmer([str(tasks), "-n", "2", "--retries", "1"]).returncode == 1
    (workdir / "finished").unlink()  # a second run recounts from the files, not the record
    assert run_farmer([str(tasks), "-n", "2", "--requeue-failed"]).returncode == 1
    events = json.loads((workdir / "timeline.json").read_text())
    counts = [e["args"] for e in events if e["ph"] == "C"]
    assert counts[-1] == {"done": len(ids(workdir / "finished")), "failed": 2,
                          "running": 0, "pending": 0}
    assert max(c["running"] for c in counts) <= 2  # executions under way, at most --proc
    starts = [e for e in events if e["name"] == "farmer start"]
    assert len(starts) == 2 and starts[0]["pid"] != starts[1]["pid"]


def test_reruns_flow_from_their_earlier_execution_whatever_the_log_layout(tmp_path: Path
                                                                          ) -> None:
    """``timeline.started`` (one bit per task), not the log file, tells a rerun: with
    ``--logs nonempty`` a silent task has no log, yet its retry has the flow's end."""
    tasks = write_tasklist(tmp_path / "t", ["false", "true"])
    assert run_farmer([str(tasks), "--retries", "1", "--logs", "nonempty"]).returncode == 1
    workdir = tmp_path / "t_workdir"
    assert not (workdir / "logs" / "log_0").exists()
    flows = [(e["args"]["id"], e.get("flow_in", False), e["flow_out"])
             for e in json.loads((workdir / "timeline.json").read_text()) if e["ph"] == "X"]
    assert sorted(flows) == [(0, False, True), (0, True, True), (1, False, True)]
    state = TimelineState(workdir / "timeline.state")
    assert not state.first_start(0) and not state.first_start(1) and state.first_start(2)


def test_tasks_appended_to_the_list_are_marked_and_counted(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"] * 3)
    assert run_farmer([str(tasks)]).returncode == 0
    with open(tasks, "a") as handle:
        handle.write("true\ntrue\n")
    assert run_farmer([str(tasks)]).returncode == 0
    events = json.loads((tmp_path / "t_workdir" / "timeline.json").read_text())
    assert [e["args"]["tasks"] for e in events if e["name"] == "tasks appended"] == [2]
    assert [e["args"] for e in events if e["ph"] == "C"][-1] == {
        "done": 5, "failed": 0, "running": 0, "pending": 0}
