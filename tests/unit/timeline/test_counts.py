"""The state beside timeline.json in-process: an unreadable timeline kept aside, counts, tracks."""

from __future__ import annotations

import json
import os
from pathlib import Path

from taskfarmer.timeline.counts import TaskCounts, TimelineState
from taskfarmer.timeline.file import Timeline


def test_an_unreadable_timeline_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "timeline.json"
    path.write_bytes(b"{not json at all")
    timeline = Timeline(path)
    assert timeline.repair()
    assert (tmp_path / "timeline.json.unreadable").read_bytes() == b"{not json at all"
    timeline.append([{"name": "x", "ph": "i", "ts": 1, "pid": 2}])
    assert json.loads(path.read_text()) == [{"name": "x", "ph": "i", "ts": 1, "pid": 2}]
    object_form = tmp_path / "other.json"
    object_form.write_text(json.dumps({"traceEvents": [{"name": "y", "ph": "i"}], "x": 1}))
    assert Timeline(object_form).repair()
    assert json.loads(object_form.read_text()) == [{"name": "y", "ph": "i"}]


def test_timeline_state_counts_in_place_and_remembers_tracks(tmp_path: Path) -> None:
    state = TimelineState(tmp_path / "timeline.state")
    assert state.counts() is None and state.change(done=1) is None  # unknown until counted
    state.add_track_id(4242)  # before any count: a placeholder record first
    state.reset(TaskCounts(done=1, failed=2, running=0, pending=7))
    state.add_track_id(77)
    size = os.path.getsize(tmp_path / "timeline.state")
    for _ in range(100):
        state.change(pending=-1, running=1)
        state.change(running=-1, done=1)
    assert os.path.getsize(tmp_path / "timeline.state") == size  # rewritten in place
    assert state.counts() == TaskCounts(done=101, failed=2, running=0, pending=0)  # floor 0
    assert state.track_ids() == [4242, 77]
    with open(tmp_path / "timeline.state", "r+b") as handle:
        handle.write(b"12 tor")  # a node died mid-write: recounted by the next farmer
    assert state.counts() is None
    state.reset(TaskCounts(pending=3))
    assert state.counts() == TaskCounts(pending=3) and state.track_ids() == [4242, 77]
