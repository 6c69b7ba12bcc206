"""``farmer`` against the real PyTaskFarmer 0.1.0 (from PyPI, in its own virtualenv): user
classes written as PyTaskFarmer's documentation shows give the same results under both, and
workdirs that PyTaskFarmer left half done (stopped by --timeout, by SIGUSR1) are continued by
``farmer`` with every task recorded exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from helpers.farmer import farmer_env, ids, run_farmer, wait_for, write_tasklist
from helpers.pytaskfarmer_env import PyTaskFarmer

#: A user's module: a tasklist handler and runners written as PyTaskFarmer's docs and source
#: show (its ``taskfarmer.task`` and ``taskfarmer.runners`` classes).
USER_MODULE = '''
import subprocess

from taskfarmer.runners import BasicRunner, Runner
from taskfarmer.task import ListTaskList


class Greetings(ListTaskList):
    """Each line is a name; the task greets it (the line 'fail' fails)."""

    def __init__(self, path, workdir, greeting="hello"):
        super().__init__(path, workdir)
        self.greeting = greeting

    def __getitem__(self, taskid):
        line = self.tasks[taskid]
        return "false" if line == "fail" else f"echo {self.greeting} {line}"


class Tagged(Runner):
    """Its own run() and terminate(), as PyTaskFarmer's BasicRunner is written."""

    def __init__(self, tag):
        super().__init__()
        self.tag = tag
        self.execute = None

    def run(self, taskid, command, logfh):
        logfh.write(f"[{self.tag}] task {taskid}\\n")
        logfh.flush()
        self.execute = subprocess.Popen(command.split(), stdin=None, stdout=logfh,
                                        stderr=logfh)
        self.execute.communicate()
        return self.execute.returncode

    def terminate(self):
        if self.execute is None:
            return
        self.execute.kill()


class Wrapped(BasicRunner):
    """Extends the basic runner through super().run(), stops it through self.execute."""

    def run(self, taskid, command, logfh):
        logfh.write(f"wrapped {taskid}\\n")  # (PyTaskFarmer set PROC_NUMBER in super().run)
        logfh.flush()
        return super().run(taskid, command, logfh)

    def terminate(self):
        self.execute.kill()
'''

RUNNERS_INI = """
[default]
Runner = userclasses.Tagged
tag = D

[tagged]
Runner = userclasses.Tagged
tag = T

[wrapped]
Runner = userclasses.Wrapped
"""

TASKLISTS_INI = """
[greetings]
TaskList = userclasses.Greetings
greeting = hi
"""


@pytest.fixture
def user(tmp_path: Path) -> dict[str, str]:
    """HOME with the INI files in ~/.pytaskfarmer, the module on PYTHONPATH: the environment
    both farmers run with."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "userclasses.py").write_text(textwrap.dedent(USER_MODULE))
    home = tmp_path / "home"
    for directory, text in (("runners.d", RUNNERS_INI), ("tasklists.d", TASKLISTS_INI)):
        (home / ".pytaskfarmer" / directory).mkdir(parents=True)
        (home / ".pytaskfarmer" / directory / "user.ini").write_text(text)
    return {"HOME": str(home), "PYTHONPATH": str(modules)}


def outcome(workdir: Path) -> dict[str, object]:
    """What a run left that both farmers write alike: finished, failed, the logs."""
    return {
        "finished": sorted((workdir / "finished").read_text().splitlines()),
        "failed": sorted((workdir / "failed").read_text().splitlines()),
        "logs": {log.name: log.read_text() for log in (workdir / "logs").iterdir()},
    }


@pytest.mark.parametrize("runner", ["tagged", "wrapped", "default"])
def test_user_classes_run_unchanged(pytaskfarmer: PyTaskFarmer, user: dict[str, str],
                                    tmp_path: Path, runner: str) -> None:
    tasks = write_tasklist(tmp_path / "names", ["alice", "bob", "fail", "# nobody", "carol"])
    args = [str(tasks), "--runner", runner, "--tasklist", "greetings", "--proc", "2"]
    theirs = pytaskfarmer.run([*args, "--workdir", str(tmp_path / "theirs")], tmp_path, user)
    assert theirs.returncode == 0, theirs.stderr  # PyTaskFarmer exits 0 despite the failure
    ours = run_farmer([*args, "--workdir", str(tmp_path / "ours")], env=user, cwd=tmp_path)
    assert ours.returncode == 1, ours.stderr
    expected = outcome(tmp_path / "theirs")
    assert expected["finished"] == ["0 alice", "1 bob", "3 carol"]
    assert expected["failed"] == ["2 fail"]
    assert outcome(tmp_path / "ours") == expected


# -- continuing PyTaskFarmer's workdirs ------------------------------------------------------

#: How long PyTaskFarmer gets to stop before all its processes are killed (it sometimes hangs;
#: either way it leaves a workdir half done, which is what the tests need).
STOP_WAIT = 5.0

TASK_SCRIPT = """\
sleep "$2"
echo "$1" >> "$(dirname "$0")/runs/$1"
"""


def half_done_list(tmp_path: Path, count: int, seconds: float) -> Path:
    """``count`` tasks that sleep, then append a line to ``runs/ID`` when they complete.

    PyTaskFarmer splits task lines on spaces (no shell), so each task runs a script."""
    script = tmp_path / "task.sh"
    script.write_text(TASK_SCRIPT)
    (tmp_path / "runs").mkdir()
    return write_tasklist(tmp_path / "tasks", [f"sh {script} {i} {seconds}"
                                               for i in range(count)])


def completions(tmp_path: Path) -> Counter:
    """How many times each task ran to its end."""
    return Counter({int(p.name): len(p.read_text().splitlines())
                    for p in (tmp_path / "runs").iterdir()})


def continue_and_check(tmp_path: Path, count: int) -> None:
    """Run ``farmer`` on the workdir PyTaskFarmer left; check that it ran exactly the tasks
    PyTaskFarmer had not recorded, each once, and said what it adopted."""
    workdir = tmp_path / "tasks_workdir"
    before_finished = ids(workdir / "finished")
    before_runs = completions(tmp_path)
    assert len(set(before_finished)) < count, "PyTaskFarmer finished everything: no test"
    result = run_farmer([str(tmp_path / "tasks"), "--proc", "4"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [adopted] = [line for line in result.stdout.splitlines() if "adopted" in line]
    assert f"{len(set(before_finished))} finished" in adopted
    after = ids(workdir / "finished")
    assert after[:len(before_finished)] == before_finished  # kept, appended to
    new = after[len(before_finished):]
    assert sorted(new) == sorted(set(range(count)) - set(before_finished))  # each once
    runs = completions(tmp_path)
    for task_id in range(count):
        expected = before_runs[task_id] + (task_id in new)
        assert runs[task_id] == expected, f"task {task_id}"
    assert (workdir / "toprocess").read_text() == ""
    again = run_farmer([str(tmp_path / "tasks")], cwd=tmp_path)
    assert again.returncode == 0 and "adopted" not in again.stdout
    assert ids(workdir / "finished") == after


def session_members(sid: int) -> list[int]:
    """The live processes of session ``sid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(entry))
    return members


def end_or_kill(process: subprocess.Popen, timeout: float) -> None:
    """Wait for PyTaskFarmer to stop; then kill whatever is left of it, as the end of a SLURM
    job would: it can hang (its stop handler may wait for the workdir lock its own main process
    holds), and a worker killed at the wrong moment leaves its task running, orphaned."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for pid in session_members(process.pid):  # started in a session of its own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.communicate()
        wait_for(lambda: not session_members(process.pid), what="PyTaskFarmer's processes")


def test_continue_a_workdir_stopped_by_timeout(pytaskfarmer: PyTaskFarmer,
                                               tmp_path: Path) -> None:
    count = 60
    tasks = half_done_list(tmp_path, count, 0.3)
    farmer = pytaskfarmer.start([str(tasks), "--proc", "4", "--timeout", "2"], tmp_path, {})
    end_or_kill(farmer, 2 + STOP_WAIT)
    continue_and_check(tmp_path, count)


def test_continue_a_workdir_stopped_by_sigusr1(pytaskfarmer: PyTaskFarmer,
                                               tmp_path: Path) -> None:
    """SIGUSR1, as SLURM sends it before the time limit."""
    count = 60
    tasks = half_done_list(tmp_path, count, 0.3)
    farmer = pytaskfarmer.start([str(tasks), "--proc", "4"], tmp_path, {})
    workdir = tmp_path / "tasks_workdir"
    try:
        wait_for(lambda: len(ids(workdir / "finished")) >= 4, what="4 tasks to finish")
        farmer.send_signal(signal.SIGUSR1)
    finally:
        end_or_kill(farmer, STOP_WAIT)
    continue_and_check(tmp_path, count)


def test_adoption_reconciles_a_messy_workdir(tmp_path: Path) -> None:
    """What PyTaskFarmer's unclean stops leave, written by hand: a finished task back in
    toprocess, lost tasks in no file, a task finished twice."""
    count = 8
    tasks = half_done_list(tmp_path, count, 0)
    workdir = tmp_path / "tasks_workdir"
    workdir.mkdir()
    lines: list[str] = tasks.read_text().splitlines()
    (workdir / "toprocess").write_text("".join(f"{i} {lines[i]}\n" for i in (2, 3, 6)))
    (workdir / "finished").write_text("".join(f"{i} {lines[i]}\n" for i in (0, 2, 0)))
    (workdir / "failed").write_text(f"1 {lines[1]}\n")
    result = run_farmer([str(tasks)], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    [adopted] = [line for line in result.stdout.splitlines() if "adopted" in line]
    assert ("2 finished, 1 failed, 5 to do; put back 3 task(s) found in no file, took 1 "
            "finished or failed task(s) out of toprocess; 1 task(s) recorded more than once"
            in adopted)
    after = ids(workdir / "finished")
    assert after[:3] == [0, 2, 0] and sorted(after[3:]) == [3, 4, 5, 6, 7]
    assert ids(workdir / "failed") == [1]
    assert sorted(completions(tmp_path)) == [3, 4, 5, 6, 7]


# -- the command line ------------------------------------------------------------------------

#: Our ``pytaskfarmer.py`` console script, run from the checkout under test.
OURS_AS_PYTASKFARMER = [sys.executable, "-c",
                        "from taskfarmer.cli import pytaskfarmer_main; pytaskfarmer_main()"]


def test_job_script_arguments_run_unchanged(pytaskfarmer: PyTaskFarmer, tmp_path: Path) -> None:
    """PyTaskFarmer's argparse accepted abbreviations and a value after --verbose."""
    tasks = write_tasklist(tmp_path / "tasks", ["echo one", "echo two", "false"])
    for name, run in (("theirs", lambda args: pytaskfarmer.run(args, tmp_path, {})),
                      ("ours", lambda args: subprocess.run(
                          [*OURS_AS_PYTASKFARMER, *args], capture_output=True, text=True,
                          cwd=tmp_path, env=farmer_env(), timeout=120))):
        result = run(["--pro", "2", "--work", str(tmp_path / name), "-v", "1",
                      "--tasklist=default", "--verb=True", str(tasks)])
        assert result.returncode in (0, 1), result.stderr
        assert "task" in result.stdout.lower()
    assert outcome(tmp_path / "ours") == outcome(tmp_path / "theirs")
    ambiguous = subprocess.run([*OURS_AS_PYTASKFARMER, "--t", "5", str(tasks)],
                               capture_output=True, text=True, cwd=tmp_path, env=farmer_env())
    assert ambiguous.returncode == 2
    assert ambiguous.stderr == ("pytaskfarmer.py: error: --t: ambiguous option: could be "
                                "--tasklist, --timeout\n")


@pytest.mark.parametrize("installed_last", ["PyTaskFarmer", "taskfarmer"])
def test_pytaskfarmer_installed_alongside_is_refused(pytaskfarmer: PyTaskFarmer,
                                                     tmp_path: Path, installed_last: str) -> None:
    """Both ship the package 'taskfarmer': whichever was installed last, one line says so."""
    site = tmp_path / "site"
    ours = Path(__file__).resolve().parents[3] / "taskfarmer"
    theirs = pytaskfarmer.package()
    layers = [theirs, ours] if installed_last == "taskfarmer" else [ours, theirs]
    for layer in layers:
        shutil.copytree(layer, site / "taskfarmer", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    [info] = theirs.parent.glob("PyTaskFarmer-*.dist-info")
    shutil.copytree(info, site / info.name)
    tasks = write_tasklist(tmp_path / "tasks", ["true"])
    result = subprocess.run([sys.executable, "-m", "taskfarmer", str(tasks)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120,
                            env=farmer_env({"PYTHONPATH": str(site)}))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("farmer: error: PyTaskFarmer is installed here too and both ship "
                           "the package 'taskfarmer': run 'pip uninstall PyTaskFarmer' then "
                           "'pip install --force-reinstall taskfarmer' (found "), line
    assert not (tmp_path / "tasks_workdir").exists()
