"""DockerRunner through the real ``farmer`` against a real, private Docker daemon.

The daemon has no bridge network, so the runner definitions carry ``options = --network
none`` (what the ``options`` key is for).
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
from helpers.farmer import ids, run_farmer, start_farmer, stop, wait_for, write_tasklist

pytestmark = pytest.mark.docker


def our_containers(daemon: object, *flags: str) -> list[str]:
    """Names of the containers a DockerRunner made (``taskfarmer-...``)."""
    done = daemon.docker("ps", *flags, "--filter", "name=taskfarmer-",  # type: ignore[attr-defined]
                         "--format", "{{.Names}}")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def exit_codes(workdir: Path) -> dict[int, int]:
    """Task ID to exit code, from the timeline."""
    events = json.loads((workdir / "timeline.json").read_text())
    return {e["args"]["id"]: e["args"]["exit"] for e in events if e["ph"] == "X"}


def define(directory: Path, image: str, extra: str = "") -> None:
    (directory / "runners.d").mkdir(exist_ok=True)
    (directory / "runners.d" / "box.ini").write_text(textwrap.dedent(f"""
        [box]
        Runner = taskfarmer.runners.DockerRunner
        image = {image}
        options = --network none
        """) + textwrap.dedent(extra))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_setup_volumes_proc_number_and_exit_codes(
        docker_daemon: object, docker_image: str, docker_env: dict[str, str], home: Path,
        tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from the host\n")
    define(tmp_path, docker_image, f"""
        setup = echo setup > order_$PROC_NUMBER && GREETING=hello
        volumes = {shared}:/data
        env = FROM_FARMER PLAIN=value
        """)
    tasks = write_tasklist(tmp_path / "tasks", [
        "echo task >> order_$PROC_NUMBER; cat /data/in.txt > /data/out_$PROC_NUMBER",
        "echo $PROC_NUMBER $GREETING $FROM_FARMER $PLAIN > id_$PROC_NUMBER",
        "exit 7",
        "kill -9 $$",
    ])
    result = run_farmer([str(tasks), "-n", "2", "--runner", "box"], cwd=tmp_path,
                        env={"FROM_FARMER": "passed"})
    assert result.returncode == 1, result.stderr
    workdir = tmp_path / "tasks_workdir"
    assert sorted(ids(workdir / "finished")) == [0, 1]
    assert sorted(ids(workdir / "failed")) == [2, 3]
    assert (tmp_path / "order_0").read_text() == "setup\ntask\n"  # in the farmer's directory
    assert (shared / "out_0").read_text() == "from the host\n"
    assert (tmp_path / "id_1").read_text() == "1 hello passed value\n"
    assert exit_codes(workdir) == {0: 0, 1: 0, 2: 7, 3: 137}
    assert our_containers(docker_daemon, "-a") == []


def test_failing_setup_skips_the_task(docker_daemon: object, docker_image: str,
                                      docker_env: dict[str, str], home: Path,
                                      tmp_path: Path) -> None:
    define(tmp_path, docker_image, "setup = exit 4\n")
    tasks = write_tasklist(tmp_path / "tasks", ["echo ran > ran"])
    result = run_farmer([str(tasks), "--runner", "box"], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert not (tmp_path / "ran").exists()
    assert exit_codes(tmp_path / "tasks_workdir") == {0: 4}


def test_stop_removes_every_container_and_requeues(
        docker_daemon: object, docker_image: str, docker_env: dict[str, str], home: Path,
        tmp_path: Path) -> None:
    define(tmp_path, docker_image)
    # Task 1 ignores SIGTERM: its container outlives the killed client until `docker rm -f`.
    tasks = write_tasklist(tmp_path / "tasks", [
        "exec sleep 600",
        "trap '' TERM; sleep 600; sleep 600",
        "exec sleep 600",
    ])
    farmer = start_farmer([str(tasks), "-n", "2", "--runner", "box"], cwd=tmp_path)
    try:
        wait_for(lambda: len(our_containers(docker_daemon)) == 2, timeout=120,
                 what="two running containers")
        running = our_containers(docker_daemon)
        assert sorted(name.rsplit("-", 1)[1] for name in running) == ["0", "1"]
        started = time.monotonic()
        result = stop(farmer, signal.SIGUSR1, timeout=60)
        stopping = time.monotonic() - started
    finally:
        if farmer.poll() is None:
            farmer.kill()
    assert result.returncode == 3, result.stderr
    assert "could not remove container" not in result.stderr
    workdir = tmp_path / "tasks_workdir"
    assert sorted(ids(workdir / "toprocess")) == [0, 1, 2]
    assert ids(workdir / "failed") == [] and ids(workdir / "finished") == []
    assert our_containers(docker_daemon, "-a") == []
    assert stopping < 20




def test_task_timeout_removes_the_container(
        docker_daemon: object, docker_image: str, docker_env: dict[str, str], home: Path,
        tmp_path: Path) -> None:
    define(tmp_path, docker_image)
    # Ignores SIGTERM: only `docker rm -f` ends it. 8 s leave a loaded machine time to start it.
    tasks = write_tasklist(tmp_path / "tasks", ["trap '' TERM; touch started; sleep 600"])
    result = run_farmer([str(tasks), "--runner", "box", "--task-timeout", "8"], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "started").exists()
    workdir = tmp_path / "tasks_workdir"
    assert ids(workdir / "failed") == [0]
    events = json.loads((workdir / "timeline.json").read_text())
    assert [e["args"].get("timed_out") for e in events if e["ph"] == "X"] == [True]
    assert our_containers(docker_daemon, "-a") == []


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_cpus_and_slot_reach_the_container(docker_image: str, docker_env: dict[str, str],
                                           home: Path, tmp_path: Path) -> None:
    """--cpus-per-task 1: the daemon starts the container, so only --cpuset-cpus pins it;
    TASKFARMER_SLOT and OMP_NUM_THREADS are passed with --env."""
    define(tmp_path, docker_image)
    tasks = write_tasklist(tmp_path / "tasks", [
        "grep Cpus_allowed_list /proc/self/status > cpus_$TASKFARMER_SLOT; "
        "echo $OMP_NUM_THREADS >> cpus_$TASKFARMER_SLOT"] * 2)
    result = run_farmer([str(tasks), "--cpus-per-task", "1", "--runner", "box"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = {p.name: p.read_text().split() for p in tmp_path.glob("cpus_*")}
    mine = sorted(os.sched_getaffinity(0))
    assert set(seen) <= {f"cpus_{slot}" for slot in range(len(mine))} and seen
    for name, (_, cpus, omp) in seen.items():
        assert omp == "1" and int(cpus) == mine[int(name.split("_")[1])]
