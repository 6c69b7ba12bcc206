"""Runner command lines: a shell task's argv, the container runners' argv and environment,
resource options and slot variables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskfarmer.hpc.resources import AMD, ANY, NVIDIA, SlotResources
from taskfarmer.runners import ApptainerRunner, BasicRunner, DockerRunner, ShifterRunner
from taskfarmer.runners.basic import shell_argv
from taskfarmer.runners.docker import resource_options


def test_shell_argv() -> None:
    assert shell_argv("echo 'a b' | wc") == ["/bin/sh", "-c", "echo 'a b' | wc"]


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
