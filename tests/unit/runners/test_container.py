"""Runner pieces: container setup scripts, INI flags and options, keyword checks, execution names,
bounded docker cleanup, the checks that a runner can work on this node."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from taskfarmer.errors import ConfigError
from taskfarmer.ini import flag
from taskfarmer.registry.build import keyword_problem
from taskfarmer.runners import ApptainerRunner, DockerRunner, ShifterRunner
from taskfarmer.runners.container import split_options, with_setup


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


def _program(directory: Path, name: str, script: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(f"#!/bin/sh\n{script}\n")
    (directory / name).chmod(0o755)
    return directory


def test_a_container_runner_needs_its_engine_on_path(tmp_path: Path) -> None:
    empty = {"PATH": str(tmp_path)}
    with pytest.raises(ConfigError) as raised:
        ApptainerRunner("x.sif", engine="no-such-apptainer").check(empty)
    assert str(raised.value) == ("no task can run on this node: no-such-apptainer: no such "
                                 "program on PATH")
    with pytest.raises(ConfigError, match="shifter: no such program on PATH"):
        ShifterRunner("img").check(empty)
    found = _program(tmp_path / "bin", "shifter", "exit 0")
    ShifterRunner("img").check({"PATH": str(found)})


def test_the_docker_runner_asks_the_daemon_once(tmp_path: Path) -> None:
    down = _program(tmp_path / "down", "docker", (
        '[ "$1" = version ] || touch "$0.ran"\n'
        'echo "Cannot connect to the Docker daemon at unix:///nowhere.sock." >&2; exit 1'))
    with pytest.raises(ConfigError) as raised:
        DockerRunner("img").check({"PATH": str(down)})
    assert str(raised.value) == ("no task can run on this node: 'docker version' failed: Cannot "
                                 "connect to the Docker daemon at unix:///nowhere.sock.")
    assert not (down / "docker.ran").exists()
    up = _program(tmp_path / "up", "podman", '[ "$1" = version ]')
    DockerRunner("img", engine="podman").check({"PATH": str(up)})


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client installed")
def test_the_real_docker_client_without_a_daemon(tmp_path: Path) -> None:
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
               "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    with pytest.raises(ConfigError, match=r"'docker version' failed: .*no-daemon\.sock"):
        DockerRunner("img").check(environ)
