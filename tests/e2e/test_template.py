"""TemplateTaskList: each tasklist line is an input filled into a command template (the handler
in-process: tests/unit/test_tasks.py)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from helpers.farmer import run_farmer, write_tasklist


def test_template_handler_in_a_run(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "tasklists.d").mkdir()
    (tmp_path / "tasklists.d" / "count.ini").write_text(textwrap.dedent("""
        [count]
        TaskList = taskfarmer.tasks.TemplateTaskList
        command = mkdir -p out && wc -l < {line} > out/{stem}.$PROC_NUMBER
        """))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("1\n2\n")
    (tmp_path / "data" / "b c.txt").write_text("1\n")
    tasks = write_tasklist(tmp_path / "files", ["data/a.txt", "data/b c.txt", "data/none"])
    env = {"HOME": str(tmp_path / "home")}
    result = run_farmer([str(tasks), "-n", "2", "--tasklist", "count"], env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "out" / "a.0").read_text().strip() == "2"
    assert (tmp_path / "out" / "b c.1").read_text().strip() == "1"
    workdir = tmp_path / "files_workdir"
    assert sorted((workdir / "finished").read_text().splitlines()) == [
        "0 data/a.txt", "1 data/b c.txt"]
    assert (workdir / "failed").read_text() == "2 data/none\n"
    events = json.loads((workdir / "timeline.json").read_text())
    commands = {e["args"]["id"]: e["args"]["command"] for e in events if e["ph"] == "X"}
    assert commands[1] == "mkdir -p out && wc -l < 'data/b c.txt' > out/'b c'.$PROC_NUMBER"


def test_template_error_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    ini = tmp_path / "tasklists.d" / "bad.ini"
    ini.parent.mkdir()
    ini.write_text("[bad]\nTaskList = taskfarmer.tasks.TemplateTaskList\ncommand = x {file}\n")
    tasks = write_tasklist(tmp_path / "files", ["a"])
    result = run_farmer([str(tasks), "-t", "bad"], env={"HOME": str(tmp_path / "home")},
                        cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"farmer: error: {ini} [bad]: command: unknown placeholder {{file}} (known: {{line}}, "
        "{name}, {stem}, {dir}, {id}; write {{ and }} for literal braces)\n")
