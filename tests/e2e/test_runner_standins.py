"""ShifterRunner and ApptainerRunner through the real ``farmer``, with stand-in ``shifter`` and
``apptainer`` executables on PATH: they record their argv and run the command after ``--``
(shifter, honouring ``--workdir``) or after the image (apptainer, honouring ``--cleanenv``)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from helpers.farmer import (
    alive,
    ids,
    pids_in,
    run_farmer,
    start_farmer,
    stop,
    wait_for,
    write_tasklist,
)

SHIFTER = r"""#!/bin/sh
printf '%s\0' "$@" > "$RECORD/shifter.$PROC_NUMBER"
for arg; do
    case "$arg" in --workdir=*) cd "${arg#--workdir=}" || exit 90;; esac
done
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift
exec "$@"
"""

APPTAINER = r"""#!/bin/sh
printf '%s\0' "$@" > "$RECORD/apptainer.$PROC_NUMBER"
[ "$1" = exec ] || exit 91
shift
clean=no
while [ "$#" -gt 0 ]; do
    case "$1" in --cleanenv) clean=yes;; -*) ;; *) break;; esac
    shift
done
shift  # the image
if [ "$clean" = yes ]; then
    exec env -i PATH="$PATH" $(env | sed -n 's/^APPTAINERENV_//p') "$@"
fi
exec "$@"
"""

#: A Shifter runner that runs each task in its own temporary directory.
SCRATCH = """
    [scratch]
    Runner = taskfarmer.runners.ShifterRunner
    image = img
    tempdir = True
    """


@pytest.fixture
def place(tmp_path: Path) -> dict[str, str]:
    """Stand-ins in tmp_path/bin, a record directory, a HOME; the farmer's extra environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("shifter", SHIFTER), ("apptainer", APPTAINER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "record").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "tmp").mkdir()
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(tmp_path / "record"),
            "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp")}


def define(directory: Path, text: str) -> None:
    (directory / "runners.d").mkdir(exist_ok=True)
    (directory / "runners.d" / "test.ini").write_text(textwrap.dedent(text))


def recorded(tmp_path: Path, program: str, task_id: int) -> list[str]:
    return (tmp_path / "record" / f"{program}.{task_id}").read_text().split("\0")[:-1]


def test_shifter_runner(tmp_path: Path, place: dict[str, str]) -> None:
    define(tmp_path, """
        [shift]
        Runner = taskfarmer.runners.ShifterRunner
        image = docker:ubuntu:22.04
        setup = export GREETING=hello; echo setup >> ran
        volumes = /global/a:/a /b:/b
        modules = cvmfs
        [broken-setup]
        Runner = taskfarmer.runners.ShifterRunner
        image = img
        setup = exit 4
        """)
    tasks = write_tasklist(tmp_path / "tasks", [
        "echo task >> ran; echo $GREETING $PROC_NUMBER \"[$BASH_ENV]\" > out_$PROC_NUMBER",
        "exit 3",
    ])
    (tmp_path / "bash_env").write_text("echo BASH_ENV ran\n")
    env = {**place, "BASH_ENV": str(tmp_path / "bash_env")}
    result = run_farmer([str(tasks), "-n", "1", "--runner", "shift"], env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    workdir = tmp_path / "tasks_workdir"
    assert ids(workdir / "finished") == [0] and ids(workdir / "failed") == [1]
    assert (tmp_path / "ran").read_text() == "setup\ntask\nsetup\n"
    assert (tmp_path / "out_0").read_text() == "hello 0 []\n"
    assert "BASH_ENV ran" not in (workdir / "logs" / "log_0").read_text()
    assert recorded(tmp_path, "shifter", 1) == [
        "--image=docker:ubuntu:22.04", "--volume=/global/a:/a", "--volume=/b:/b",
        "--module=cvmfs", "--", "/bin/bash", "-c",
        "export GREETING=hello; echo setup >> ran && { exit 3\n}"]

    other = write_tasklist(tmp_path / "other", ["echo never > never"])
    result = run_farmer([str(other), "--runner", "broken-setup"], env=place, cwd=tmp_path)
    assert result.returncode == 1
    assert not (tmp_path / "never").exists()


def test_shifter_tempdir(tmp_path: Path, place: dict[str, str]) -> None:
    define(tmp_path, SCRATCH)
    out = tmp_path / "out"
    out.mkdir()
    tasks = write_tasklist(tmp_path / "tasks", [f"pwd > {out}/$PROC_NUMBER; touch junk"] * 3)
    result = run_farmer([str(tasks), "-n", "2", "--runner", "scratch"], env=place, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    directories = [Path((out / str(i)).read_text().strip()) for i in range(3)]
    assert len(set(directories)) == 3
    for task_id, directory in enumerate(directories):
        assert directory.parent == tmp_path / "tmp"
        assert directory.name.startswith("taskfarmer-")
        assert directory.name.endswith(f"-{task_id}")
        assert not directory.exists()  # removed with what the task left there
        assert recorded(tmp_path, "shifter", task_id)[1] == f"--workdir={directory}"


def test_shifter_stop_kills_tasks_and_removes_tempdirs(tmp_path: Path,
                                                       place: dict[str, str]) -> None:
    define(tmp_path, SCRATCH)
    pids = tmp_path / "pids"
    pids.mkdir()
    tasks = write_tasklist(tmp_path / "tasks",
                           [f"echo $$ > {pids}/$PROC_NUMBER.pid; exec sleep 600"] * 3)
    farmer = start_farmer([str(tasks), "-n", "2", "--runner", "scratch"], env=place,
                          cwd=tmp_path)
    try:
        wait_for(lambda: len(pids_in(pids)) == 2, what="two tasks to start")
        result = stop(farmer)
    finally:
        if farmer.poll() is None:
            farmer.kill()
    assert result.returncode == 3, result.stderr
    assert not any(alive(pid) for pid in pids_in(pids))
    workdir = tmp_path / "tasks_workdir"
    assert sorted(ids(workdir / "toprocess")) == [0, 1, 2]
    assert ids(workdir / "failed") == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_apptainer_runner(tmp_path: Path, place: dict[str, str]) -> None:
    define(tmp_path, """
        [app]
        Runner = taskfarmer.runners.ApptainerRunner
        image = /images/lib.sif
        setup = MESSAGE=from-setup
        binds = /scratch /data:/data:ro
        options = --nv --cleanenv
        """)
    tasks = write_tasklist(tmp_path / "tasks", [
        "echo $MESSAGE $PROC_NUMBER ${SECRET:-clean} > out_$PROC_NUMBER",
        "exit 6",
    ])
    env = {**place, "SECRET": "leaked"}
    result = run_farmer([str(tasks), "-n", "2", "--runner", "app"], env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    workdir = tmp_path / "tasks_workdir"
    assert ids(workdir / "finished") == [0] and ids(workdir / "failed") == [1]
    # --cleanenv dropped SECRET, yet PROC_NUMBER arrived (as APPTAINERENV_PROC_NUMBER).
    assert (tmp_path / "out_0").read_text() == "from-setup 0 clean\n"
    assert recorded(tmp_path, "apptainer", 1) == [
        "exec", "--bind=/scratch", "--bind=/data:/data:ro", "--nv", "--cleanenv",
        "/images/lib.sif", "/bin/sh", "-c", "MESSAGE=from-setup && { exit 6\n}"]


def test_a_runner_that_cannot_work_here_stops_the_farmer_before_any_task(
        tmp_path: Path, place: dict[str, str]) -> None:
    """Shifter missing, or Docker's daemon down: one line and exit 2 before the workdir is
    touched, instead of every task failing within seconds; the tasks stay pending."""
    define(tmp_path, """
        [nowhere]
        Runner = taskfarmer.runners.ApptainerRunner
        image = x.sif
        engine = no-such-apptainer
        [docker-down]
        Runner = taskfarmer.runners.DockerRunner
        image = img
        """)
    (Path(place["PATH"].split(":")[0]) / "docker").write_text(
        '#!/bin/sh\n[ "$1" = version ] || touch "$RECORD/docker-ran"\n'
        'echo "Cannot connect to the Docker daemon at unix:///x.sock." >&2; exit 1\n')
    (Path(place["PATH"].split(":")[0]) / "docker").chmod(0o755)
    tasks = write_tasklist(tmp_path / "tasks", ["true"] * 3)
    workdir = tmp_path / "tasks_workdir"
    for runner, problem in (
            ("nowhere", "no-such-apptainer: no such program on PATH"),
            ("docker-down", "'docker version' failed: Cannot connect to the Docker daemon at "
                            "unix:///x.sock.")):
        result = run_farmer([str(tasks), "--runner", runner], env=place, cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.splitlines() == [
            f"farmer: error: --runner {runner}: no task can run on this node: {problem}"]
        assert not workdir.exists()
    assert not (tmp_path / "record" / "docker-ran").exists()

    # With a workdir already there (made by a farmer that started no task), its tasks stay
    # pending.
    made = run_farmer([str(tasks), "--timeout", "30", "--task-time", "40"], cwd=tmp_path)
    assert made.returncode == 3 and ids(workdir / "toprocess") == [0, 1, 2]
    refused = run_farmer([str(tasks), "--runner", "docker-down"], env=place, cwd=tmp_path)
    assert refused.returncode == 2 and ids(workdir / "toprocess") == [0, 1, 2]
    assert ids(workdir / "failed") == [] and not (workdir / "logs" / "log_0").exists()
