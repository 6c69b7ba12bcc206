"""The timeline file: appends stay valid JSON, a torn event is cut."""

from __future__ import annotations

import json
from pathlib import Path

from taskfarmer.timeline.events import execution
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
