"""Runners: their command lines (pure functions, checked directly) and the adapter for
runner classes written for PyTaskFarmer (real helper processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
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
from taskfarmer.errors import ConfigError
from taskfarmer.hpc.resources import AMD, ANY, NVIDIA, SlotResources
from taskfarmer.ini import flag
from taskfarmer.registry.build import import_object, keyword_problem
from taskfarmer.runners import ApptainerRunner, BasicRunner, DockerRunner, ShifterRunner
from taskfarmer.runners.container import split_options, with_setup
from taskfarmer.runners.docker import resource_options

# -- pieces ----------------------------------------------------------------------------------


def test_with_setup() -> None:
    assert with_setup("", "echo hi") == "echo hi"
    assert with_setup("  ", "echo hi") == "echo hi"
    assert with_setup("source a.sh", "a; b") == "source a.sh && { a; b\n}"


@pytest.mark.parametrize("script, output", [
    (with_setup("false", "echo task; echo more"), ""),  # `;` in the task stays guarded
    (with_setup("true", "echo task # comment"), "task\n"),  # the comment ends at the newline
    (with_setup("X=1", "echo $X || echo no"), "1\n"),  # setup's variables reach the task
])
def test_setup_script_in_a_real_shell(script: str, output: str) -> None:
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True)
    assert done.stdout == output


def test_flag_values() -> None:
    assert [flag(v, "x") for v in ("True", "true", "YES", "1", "on", True)] == [True] * 6
    assert [flag(v, "x") for v in ("False", "no", "0", "off", "", False)] == [False] * 6
    with pytest.raises(ConfigError, match="tempdir = 'Ture': expected True or False"):
        flag("Ture", "tempdir")


def test_split_options() -> None:
    assert split_options("--network none -e 'A=b c'") == ["--network", "none", "-e", "A=b c"]
    with pytest.raises(ConfigError, match="No closing quotation"):
        split_options("-e 'x")


def test_keyword_problem() -> None:
    def target(image: str, setup: str = "", **rest: str) -> None:
        """Takes anything."""

    assert keyword_problem(target, ["image", "whatever"]) is None
    assert keyword_problem(target, []) == "missing argument 'image'"
    assert keyword_problem(ShifterRunner, ["image", "volume"]) == (
        "unknown argument 'volume' (accepted: image, setup, volumes, modules, tempdir, options, "
        "shell)")


def test_container_runners_need_an_image() -> None:
    for runner_class in (ShifterRunner, DockerRunner, ApptainerRunner):
        with pytest.raises(ConfigError, match="image is empty"):
            runner_class(" ")
    with pytest.raises(ConfigError, match="engine is empty"):
        DockerRunner("busybox", engine="")


def test_execution_names_differ_between_runs_and_tasks() -> None:
    first, second = DockerRunner("i"), DockerRunner("i")
    name = first.execution_name(7)
    assert name == first.execution_name(7)
    assert name != second.execution_name(7) and name != first.execution_name(8)
    assert name.startswith("taskfarmer-") and name.endswith(f"-{os.getpid()}-7")
    assert all(c.isalnum() or c in "_.-" for c in name)


def test_docker_cleanup_is_bounded_and_reports_a_leftover(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    hanging = tmp_path / "hanging-docker"
    hanging.write_text("#!/bin/sh\nexec sleep 600\n")
    hanging.chmod(0o755)
    monkeypatch.setattr("taskfarmer.runners.docker.REMOVE_TIMEOUT", 0.5)
    runner = DockerRunner("img", engine=str(hanging))
    started = time.monotonic()
    runner.cleanup(4)
    assert time.monotonic() - started < 10
    name = runner.execution_name(4)
    assert capsys.readouterr().err == (
        f"taskfarmer: could not remove container {name} (no answer in 0.5 s); it may still "
        f"run: {hanging} rm -f {name}\n")


# -- command lines ---------------------------------------------------------------------------


def test_basic_argv_and_environment() -> None:
    runner = BasicRunner()
    assert runner.argv(4, "echo $PROC_NUMBER | wc") == ["/bin/sh", "-c", "echo $PROC_NUMBER | wc"]
    assert runner.environment(4, {"A": "1"}) == {"A": "1", "PROC_NUMBER": "4"}


def test_shifter_argv() -> None:
    runner = ShifterRunner("docker:ubuntu:22.04", setup="source a.sh",
                           volumes="/global/a:/a  /b:/b", modules="cvmfs gpu",
                           options="--entrypoint")
    assert runner.argv(5, "reco x") == [
        "shifter", "--image=docker:ubuntu:22.04", "--volume=/global/a:/a", "--volume=/b:/b",
        "--module=cvmfs", "--module=gpu", "--entrypoint", "--", "/bin/bash", "-c",
        "source a.sh && { reco x\n}"]
    assert ShifterRunner("img").argv(0, "a && b") == [
        "shifter", "--image=img", "--", "/bin/bash", "-c", "a && b"]
    env = runner.environment(5, {"BASH_ENV": "~/.bashrc", "X": "y"})
    assert env == {"BASH_ENV": "", "X": "y", "PROC_NUMBER": "5"}


def test_shifter_tempdir_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    runner = ShifterRunner("img", tempdir="True")
    directory = runner.task_directory(2)
    assert directory == str(tmp_path / runner.execution_name(2))
    assert runner.argv(2, "x")[:3] == ["shifter", "--image=img", f"--workdir={directory}"]
    assert ShifterRunner("img", tempdir="False").task_directory(2) is None


def test_docker_argv_defaults() -> None:
    runner = DockerRunner("busybox:latest")
    name = runner.execution_name(3)
    cwd = os.getcwd()
    assert runner.argv(3, "echo hi") == [
        "docker", "run", "--rm", "--init", f"--name={name}", "--env=PROC_NUMBER=3",
        "--env=TASKFARMER_SLOT=0",
        f"--volume={cwd}:{cwd}", f"--workdir={cwd}", f"--user={os.getuid()}:{os.getgid()}",
        "busybox:latest", "/bin/sh", "-c", "echo hi"]


def test_docker_argv_everything() -> None:
    runner = DockerRunner("alpine", setup=". /env", volumes="/d:/data:ro /s:/s", env="A B=2",
                          workdir="/data", user="", options="--network none --label 'a b'",
                          engine="podman", shell="/bin/bash")
    name = runner.execution_name(0)
    assert runner.argv(0, "run it") == [
        "podman", "run", "--rm", "--init", f"--name={name}", "--env=PROC_NUMBER=0",
        "--env=TASKFARMER_SLOT=0",
        "--env=A", "--env=B=2", "--volume=/d:/data:ro", "--volume=/s:/s", "--workdir=/data",
        "--network", "none", "--label", "a b", "alpine", "/bin/bash", "-c",
        ". /env && { run it\n}"]
    assert "--workdir" not in " ".join(DockerRunner("alpine", workdir="").argv(0, "x"))


def test_apptainer_argv_and_environment() -> None:
    runner = ApptainerRunner("lib.sif", setup="module load x", binds="/a /b:/c:ro",
                             options="--nv --cleanenv")
    assert runner.argv(9, "go") == [
        "apptainer", "exec", "--bind=/a", "--bind=/b:/c:ro", "--nv", "--cleanenv", "lib.sif",
        "/bin/sh", "-c", "module load x && { go\n}"]
    assert runner.environment(9, {}) == {"PROC_NUMBER": "9", "APPTAINERENV_PROC_NUMBER": "9"}
    old = ApptainerRunner("lib.sif", engine="/usr/bin/singularity")
    assert old.argv(1, "go")[:2] == ["/usr/bin/singularity", "exec"]
    assert old.environment(1, {})["SINGULARITYENV_PROC_NUMBER"] == "1"


def test_docker_resource_options() -> None:
    slot = SlotResources(2, ("2", "3"), NVIDIA, (1,))
    assert resource_options(slot, "docker") == [
        "--env=TASKFARMER_SLOT=2", '--gpus="device=2,3"', "--env=OMP_NUM_THREADS",
        "--cpuset-cpus=1"]
    assert resource_options(slot, "/usr/bin/podman") == [
        "--env=TASKFARMER_SLOT=2", "--device=nvidia.com/gpu=2", "--device=nvidia.com/gpu=3",
        "--env=OMP_NUM_THREADS", "--cpuset-cpus=1"]
    assert resource_options(SlotResources(1, ("1",), AMD), "docker") == [
        "--env=TASKFARMER_SLOT=1", "--device=/dev/kfd", "--device=/dev/dri",
        "--env=ROCR_VISIBLE_DEVICES=1"]
    assert resource_options(SlotResources(0, ("5",), ANY), "docker") == [
        "--env=TASKFARMER_SLOT=0", "--env=CUDA_VISIBLE_DEVICES=5", "--env=ZE_AFFINITY_MASK=5",
        "--env=GPU_DEVICE_ORDINAL=5"]
    runner = DockerRunner("img", user="", workdir="")
    runner.assign(SlotResources(1, cpus=(0, 1)))
    assert runner.argv(4, "x")[5:9] == ["--env=PROC_NUMBER=4", "--env=TASKFARMER_SLOT=1",
                                        "--env=OMP_NUM_THREADS", "--cpuset-cpus=0,1"]


def test_apptainer_gpus_and_slot_variables() -> None:
    runner = ApptainerRunner("lib.sif")
    runner.assign(SlotResources(1, ("1",), NVIDIA))
    assert runner.argv(0, "go")[:4] == ["apptainer", "exec", "--nv", "lib.sif"]
    env = runner.environment(0, {"TASKFARMER_SLOT": "1", "CUDA_VISIBLE_DEVICES": "1"})
    assert env["APPTAINERENV_TASKFARMER_SLOT"] == "1"
    assert env["APPTAINERENV_CUDA_VISIBLE_DEVICES"] == "1"
    already = ApptainerRunner("lib.sif", options="--nv")
    already.assign(SlotResources(1, ("1",), NVIDIA))
    assert already.argv(0, "go").count("--nv") == 1
    amd = ApptainerRunner("lib.sif")
    amd.assign(SlotResources(0, ("0",), AMD))
    assert amd.argv(0, "go")[2] == "--rocm"
    plain = ApptainerRunner("lib.sif")
    plain.assign(SlotResources(0, cpus=(0,)))
    assert plain.argv(0, "go")[2] == "lib.sif"


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
