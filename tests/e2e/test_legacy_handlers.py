"""Tasklist handlers written against PyTaskFarmer's ``taskfarmer.task`` classes, run by
``farmer`` through the adapter (real farmer processes; the comparison with PyTaskFarmer itself
is in test_pytaskfarmer.py)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from helpers.farmer import ids, run_farmer, write_tasklist

HANDLERS = '''
import os

from taskfarmer.task import ListTaskList


class Echo(ListTaskList):
    """Overrides __getitem__, as PyTaskFarmer's docs suggest."""

    def __init__(self, path, workdir, prefix="got"):
        super().__init__(path, workdir)
        self.prefix = prefix

    def __getitem__(self, taskid):
        return f"echo {self.prefix} {self.tasks[taskid]} $PROC_NUMBER"


class Repeat(ListTaskList):
    """Rebuilds self.tasks in __init__ (as PyTaskFarmer's ATLAS handlers did): line 'w N'
    becomes N tasks; makes a directory in the workdir under the workdir lock."""

    def __init__(self, path, workdir, times):
        super().__init__(path, workdir)
        self.outdir = os.path.join(workdir, "output")
        self.lock()
        if not os.path.exists(self.outdir):
            os.mkdir(self.outdir)
        self.unlock()
        lines, self.tasks = self.tasks, []
        for line in lines:
            for index in range(int(times)):
                self.tasks.append(f"echo {line}-{index} > {self.outdir}/{line}-{index}")


class Broken(ListTaskList):
    def __init__(self, path, workdir):
        super().__init__(path, workdir)
        raise ValueError("no good\\nat all")
'''

INI = '''
[echo]
TaskList = myhandlers.Echo
prefix = hello

[repeat]
TaskList = myhandlers.Repeat
times = 2

[plain]
TaskList = taskfarmer.task.ListTaskList

[broken]
TaskList = myhandlers.Broken

[unknown-arg]
TaskList = myhandlers.Echo
colour = red

[digi]
TaskList = taskfarmer.atlas.TransformTaskList
transform = Reco_tf.py
input = HITS
output = RDO
'''


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, str]:
    """The handler module and its INI file (in HOME/.pytaskfarmer/tasklists.d); the farmer's
    environment."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "myhandlers.py").write_text(textwrap.dedent(HANDLERS))
    config = tmp_path / "home" / ".pytaskfarmer" / "tasklists.d"
    config.mkdir(parents=True)
    (config / "mine.ini").write_text(INI)
    return {"HOME": str(tmp_path / "home"), "PYTHONPATH": str(modules)}


def test_handler_overriding_getitem(setup: dict[str, str], tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "tasks", ["a", "# not a task", "", "b"])
    result = run_farmer([str(tasks), "-t", "echo", "-n", "2"], env=setup, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    workdir = tmp_path / "tasks_workdir"
    assert sorted((workdir / "finished").read_text().splitlines()) == ["0 a", "1 b"]
    assert (workdir / "logs" / "log_1").read_text() == "hello b 1\n"


def test_handler_rebuilding_its_tasks(setup: dict[str, str], tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "tasks", ["x", "y"])
    result = run_farmer([str(tasks), "-t", "repeat", "-n", "2"], env=setup, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    workdir = tmp_path / "tasks_workdir"
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3]
    assert sorted(p.name for p in (workdir / "output").iterdir()) == ["x-0", "x-1", "y-0",
                                                                     "y-1"]
    assert (workdir / "output" / "y-1").read_text() == "y-1\n"
    # A second run adopts nothing new and runs nothing again.
    again = run_farmer([str(tasks), "-t", "repeat"], env=setup, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3]


def test_pytaskfarmer_list_handler_resolves(setup: dict[str, str], tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "tasks", ["exit 0", "exit 4"])
    result = run_farmer([str(tasks), "-t", "plain"], env=setup, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "tasks_workdir" / "failed").read_text() == "1 exit 4\n"


@pytest.mark.parametrize("name, message", [
    ("broken", r"mine\.ini \[broken\]: myhandlers\.Broken: ValueError: no good at all"),
    ("unknown-arg", r"mine\.ini \[unknown-arg\]: myhandlers\.Echo: unknown argument 'colour'"),
    ("digi", r"mine\.ini \[digi\]: taskfarmer\.atlas\.TransformTaskList \(PyTaskFarmer's "
             r"ATLAS handler\) needs ATLAS software"),
])
def test_handler_errors_are_one_line(setup: dict[str, str], tmp_path: Path, name: str,
                                     message: str) -> None:
    tasks = write_tasklist(tmp_path / "tasks", ["true"])
    result = run_farmer([str(tasks), "-t", name], env=setup, cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("farmer: error: ")
    assert re.search(message, line), line
    assert ids(tmp_path / "tasks_workdir" / "finished") == []


def test_missing_tasklist_with_a_legacy_handler(setup: dict[str, str], tmp_path: Path) -> None:
    result = run_farmer([str(tmp_path / "nothing"), "-t", "echo"], env=setup, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"farmer: error: {tmp_path / 'nothing'}: no such tasklist\n"
