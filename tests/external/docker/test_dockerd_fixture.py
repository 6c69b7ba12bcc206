"""The private Docker daemon and busybox image behave like a DockerRunner needs them to."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker


def _docker(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the same `docker` client the farmer would run (the first on PATH)."""
    client = shutil.which("docker", path=env.get("PATH")) or "/usr/bin/docker"
    return subprocess.run(
        [client, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _names(env: dict[str, str], *ps_args: str) -> list[str]:
    proc = _docker(env, "ps", *ps_args, "--format", "{{.Names}}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_exit_code_and_output_propagate(docker_daemon, docker_image):
    env = docker_daemon.env()
    proc = _docker(
        env, "run", "--rm", "--network", "none", docker_image,
        "sh", "-c", "echo hi; echo oops >&2; exit 3",
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "hi\n"
    assert proc.stderr == "oops\n"


def test_bind_volume_is_writable(docker_daemon, docker_image, tmp_path: Path):
    hostdir = tmp_path / "shared"
    hostdir.mkdir()
    (hostdir / "in.txt").write_text("from host\n")
    proc = _docker(
        docker_daemon.env(), "run", "--rm", "--network", "none",
        "-v", f"{hostdir}:/data", docker_image,
        "sh", "-c", "cat /data/in.txt > /data/out.txt && echo from container >> /data/out.txt",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (hostdir / "out.txt").read_text() == "from host\nfrom container\n"


def test_rm_f_kills_and_removes_named_container(docker_daemon, docker_image):
    env = docker_daemon.env()
    name = f"tf-test-{uuid.uuid4().hex[:12]}"
    runner = subprocess.Popen(
        [shutil.which("docker", path=env.get("PATH")) or "/usr/bin/docker",
         "run", "--rm", "--init", "--name", name, "--network", "none",
         docker_image, "sleep", "100"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while name not in _names(env):
            assert runner.poll() is None, runner.communicate()
            assert time.monotonic() < deadline, f"{name} never showed up in `docker ps`"
            time.sleep(0.05)

        started = time.monotonic()
        proc = _docker(env, "rm", "-f", name)
        assert proc.returncode == 0, proc.stderr
        assert runner.wait(timeout=30) != 0  # 137: killed
        assert time.monotonic() - started < 15
        assert name not in _names(env, "-a")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_docker_env_reaches_child_processes(docker_env, docker_image):
    # No env= here: the client inherits os.environ, as a farmer's child process would.
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", docker_image, "sh", "-c", "exit 0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert docker_env["DOCKER_HOST"].startswith("unix://")
