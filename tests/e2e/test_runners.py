"""Runners: the adapter for runner classes written for PyTaskFarmer (real helper processes) and
the farmer running them (the command lines and pieces, in-process: tests/unit/runners/)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.farmer import (
    alive,
    ids,
    pids_in,
    run_farmer,
    signal_tree,
    start_farmer,
    stop,
    wait_for,
    write_tasklist,
)

from taskfarmer.compat.runner import LegacyRunner, is_legacy
from taskfarmer.registry.build import import_object
from taskfarmer.runners import BasicRunner

# -- PyTaskFarmer-style runner classes -------------------------------------------------------

LEGACY_MODULE = '''
import os
import subprocess
import time

from taskfarmer.runners import BasicRunner


class Wrapping:
    """Written for PyTaskFarmer: blocks in run(), stopped by terminate()."""

    def __init__(self, prefix=""):
        self.prefix = prefix
        self.process = None

    def run(self, taskid, command, logfh):
        logfh.write(f"{self.prefix} task {taskid} PROC_NUMBER={os.environ['PROC_NUMBER']}\\n")
        logfh.flush()
        self.process = subprocess.Popen(["/bin/sh", "-c", command], stdout=logfh,
                                        stderr=logfh)
        return self.process.wait()

    def terminate(self):
        with open(os.environ["TERMINATED"], "a") as marker:
            marker.write(f"{os.environ['PROC_NUMBER']}\\n")
        if self.process is not None:
            self.process.kill()


class NoCode:
    def run(self, taskid, command, logfh):
        pass


class Subclass(BasicRunner):
    def run(self, taskid, command, logfh):
        logfh.write("before\\n")
        return super().run(taskid, command, logfh)


class Pytf(BasicRunner):
    """As PyTaskFarmer's runners are written: terminate() uses its attribute execute."""

    def run(self, taskid, command, logfh):
        return super().run(taskid, command, logfh)

    def terminate(self):
        with open(os.environ["TERMINATED"], "a") as marker:
            marker.write(f"{os.environ['PROC_NUMBER']}\\n")
        self.execute.kill()


class BrokenTerminate(Pytf):
    def terminate(self):
        raise AttributeError("'BrokenTerminate' object has no attribute 'proc'")
'''


@pytest.fixture
def legacy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``oldrunners.py`` on sys.path (for the helper processes: they copy our sys.path)."""
    directory = tmp_path / "modules"
    directory.mkdir()
    (directory / "oldrunners.py").write_text(textwrap.dedent(LEGACY_MODULE))
    monkeypatch.syspath_prepend(str(directory))
    return directory


def legacy(name: str, **arguments: str) -> LegacyRunner:
    """The adapter over ``oldrunners.NAME(**arguments)``, as the registry builds it."""
    return LegacyRunner(import_object(f"oldrunners.{name}")(**arguments))  # type: ignore[operator]


def run_task(runner: LegacyRunner, task_id: int, command: str, log: Path,
             env: dict) -> int:
    """Start, wait and clean up as a worker does; return the exit code."""
    with open(log, "ab") as handle:
        process = runner.start(task_id, command, handle.fileno(), env)
    code = process.wait()
    runner.cleanup(task_id)
    return code


def test_is_legacy() -> None:
    class Plain:
        pass

    class Old:
        def run(self, taskid: int, command: str, logfh: object) -> int:
            return 0

    class Overrides(BasicRunner):
        def run(self, taskid: int, command: str, logfh: object) -> int:  # type: ignore[override]
            return 0

    assert not is_legacy(BasicRunner) and not is_legacy(Plain)
    assert is_legacy(Old) and is_legacy(Overrides)


@pytest.mark.parametrize("command, code", [("echo out; exit 0", 0), ("exit 7", 7),
                                           ("kill -9 $$", -9)])
def test_legacy_runner_output_environment_and_exit_code(
        legacy_module: Path, tmp_path: Path, command: str, code: int) -> None:
    runner = legacy("Wrapping", prefix=">>")
    log = tmp_path / "log"
    assert run_task(runner, 4, command, log, dict(os.environ)) == code
    assert log.read_text().startswith(">> task 4 PROC_NUMBER=4\n")
    assert ("out\n" in log.read_text()) == (code == 0)


def test_legacy_none_is_a_failure_and_super_run_works(legacy_module: Path,
                                                      tmp_path: Path) -> None:
    assert run_task(legacy("NoCode"), 0, "true", tmp_path / "a",
                    dict(os.environ)) == 1
    log = tmp_path / "b"
    assert run_task(legacy("Subclass"), 1, "echo $PROC_NUMBER; exit 3",
                    log, dict(os.environ)) == 3
    assert log.read_text() == "before\n1\n"


def test_legacy_stop_calls_terminate(legacy_module: Path, tmp_path: Path) -> None:
    marker = tmp_path / "terminated"
    runner = legacy("Wrapping")
    log = tmp_path / "log"
    with open(log, "ab") as handle:
        process = runner.start(2, "echo started; exec sleep 60", handle.fileno(),
                               {**os.environ, "TERMINATED": str(marker)})
    wait_for(lambda: "started" in log.read_text(), what="the task to start")
    BasicRunner.kill(process, signal.SIGTERM)  # what a stopping worker does first
    # The sleep died of the group's SIGTERM or of terminate()'s SIGKILL; the helper passes it on.
    assert process.wait() in (-signal.SIGTERM, -signal.SIGKILL)
    assert marker.read_text() == "2\n"


def test_farmer_with_a_legacy_runner(legacy_module: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".pytaskfarmer" / "runners.d").mkdir(parents=True)
    (home / ".pytaskfarmer" / "runners.d" / "old.ini").write_text(
        "[old]\nRunner = oldrunners.Wrapping\nprefix = ##\n")
    tasks = write_tasklist(tmp_path / "tasks", ["echo ok", "exit 5", "echo $PROC_NUMBER"])
    env = {"HOME": str(home), "PYTHONPATH": str(legacy_module),
           "TERMINATED": str(tmp_path / "t")}
    result = run_farmer([str(tasks), "-n", "2", "--runner", "old"], env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    workdir = tmp_path / "tasks_workdir"
    assert sorted(ids(workdir / "finished")) == [0, 2]
    assert ids(workdir / "failed") == [1]
    assert (workdir / "logs" / "log_2").read_text() == "## task 2 PROC_NUMBER=2\n2\n"


@pytest.mark.parametrize("name", ["Wrapping", "Pytf", "BrokenTerminate"])
def test_farmer_stop_with_a_legacy_runner(legacy_module: Path, tmp_path: Path,
                                          name: str) -> None:
    """A stop calls terminate() (which may use PyTaskFarmer's attribute ``execute``); if it
    raises, the task's processes are killed all the same (they ignore SIGTERM here: only
    SIGKILL ends them). The tasks go back to toprocess."""
    home = tmp_path / "home"
    (home / ".pytaskfarmer" / "runners.d").mkdir(parents=True)
    (home / ".pytaskfarmer" / "runners.d" / "old.ini").write_text(
        f"[old]\nRunner = oldrunners.{name}\n")
    pids = tmp_path / "pids"
    pids.mkdir()
    line = f"trap '' TERM; echo $$ > {pids}/$PROC_NUMBER.pid; exec sleep 600"
    tasks = write_tasklist(tmp_path / "tasks", [line, line])
    env = {"HOME": str(home), "PYTHONPATH": str(legacy_module),
           "TERMINATED": str(tmp_path / "terminated")}
    farmer = start_farmer([str(tasks), "-n", "2", "--runner", "old"], env=env, cwd=tmp_path)
    try:
        wait_for(lambda: len(pids_in(pids)) == 2, what="both tasks to start")
        result = stop(farmer)
    finally:
        if farmer.poll() is None:
            farmer.kill()
    assert result.returncode == 3, result.stderr
    workdir = tmp_path / "tasks_workdir"
    assert sorted(ids(workdir / "toprocess")) == [0, 1]
    assert ids(workdir / "failed") == [] and ids(workdir / "finished") == []
    wait_for(lambda: not any(alive(pid) for pid in pids_in(pids)), timeout=30,
             what="the tasks' processes to die")
    if name == "BrokenTerminate":
        assert ("BrokenTerminate.terminate() raised AttributeError"
                in (workdir / "logs" / "log_0").read_text())
    else:
        assert sorted((tmp_path / "terminated").read_text().split()) == ["0", "1"]


def test_legacy_tasks_signalled_with_the_farmer_are_requeued(legacy_module: Path,
                                                             tmp_path: Path) -> None:
    """SLURM signals every process of a step: the helper gets SIGUSR1 itself, calls
    terminate(), and must end as stopped (not failed) whatever the worker sees first."""
    home = tmp_path / "home"
    (home / ".pytaskfarmer" / "runners.d").mkdir(parents=True)
    (home / ".pytaskfarmer" / "runners.d" / "old.ini").write_text(
        "[old]\nRunner = oldrunners.Wrapping\n")
    pids = tmp_path / "pids"
    pids.mkdir()
    line = f"echo $$ > {pids}/$PROC_NUMBER.pid; exec sleep 600"
    tasks = write_tasklist(tmp_path / "tasks", [line] * 4)
    env = {"HOME": str(home), "PYTHONPATH": str(legacy_module),
           "TERMINATED": str(tmp_path / "terminated")}
    farmer = start_farmer([str(tasks), "-n", "2", "--runner", "old"], env=env, cwd=tmp_path)
    try:
        wait_for(lambda: len(pids_in(pids)) == 2, what="both tasks to start")
        signal_tree(farmer.pid, signal.SIGUSR1)
        _, err = farmer.communicate(timeout=30)
    finally:
        if farmer.poll() is None:
            farmer.kill()
    assert farmer.returncode == 3, err
    workdir = tmp_path / "tasks_workdir"
    assert ids(workdir / "failed") == [] and ids(workdir / "finished") == []
    assert sorted(ids(workdir / "toprocess")) == [0, 1, 2, 3]


def test_tasks_inherit_exactly_the_runner_environment(tmp_path: Path) -> None:
    """The worker applies only the differences to its own environment (so this runs in a
    child process); each task sees exactly the environment it was given, plus PROC_NUMBER."""
    script = textwrap.dedent(f"""
        import json
        from taskfarmer.runners import BasicRunner
        runner = BasicRunner()
        for task_id, environ in enumerate([{{"A": "1", "B": "2"}}, {{"A": "1"}},
                                           {{"A": "3", "C": "4"}}]):
            with open("{tmp_path}/env_%d" % task_id, "w") as log:
                assert runner.start(task_id, "env", log.fileno(), environ).wait() == 0
        """)
    subprocess.run([sys.executable, "-c", script], check=True)
    expected = [{"A": "1", "B": "2"}, {"A": "1"}, {"A": "3", "C": "4"}]
    for task_id, environ in enumerate(expected):
        lines = (tmp_path / f"env_{task_id}").read_text().splitlines()
        seen = dict(line.split("=", 1) for line in lines if "=" in line)
        for shell_own in ("PWD", "SHLVL", "_"):
            seen.pop(shell_own, None)
        assert seen == {**environ, "PROC_NUMBER": str(task_id)}


def test_the_null_runner_runs_nothing_and_records_every_task(tmp_path: Path) -> None:
    """The zero-execution mode of the benchmarks: the farm's own cost, no process per task."""
    (tmp_path / "runners.d").mkdir()
    (tmp_path / "runners.d" / "null.ini").write_text(
        "[null]\nRunner = taskfarmer.runners.NullRunner\n")
    marker = tmp_path / "ran"
    tasks = write_tasklist(tmp_path / "tasks", [f"touch {marker}; exit 3"] * 300)
    result = run_farmer([str(tasks), "-n", "4", "--runner", "null"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    workdir = tmp_path / "tasks_workdir"
    assert sorted(ids(workdir / "finished")) == list(range(300))
    assert not marker.exists() and ids(workdir / "failed") == []
    assert list((workdir / "logs").iterdir()) == []
