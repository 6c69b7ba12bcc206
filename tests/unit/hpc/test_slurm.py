"""The SLURM environment: the default process count and the job labels."""

from __future__ import annotations

from taskfarmer.hpc.slurm import default_proc, job_labels


def test_default_proc_follows_slurm() -> None:
    assert default_proc({}, affinity=8) == 8
    assert default_proc({"SLURM_CPUS_ON_NODE": "4"}, affinity=8) == 4
    assert default_proc({"SLURM_CPUS_ON_NODE": "4", "SLURM_CPUS_PER_TASK": "2"}, affinity=8) == 2
    assert default_proc({"SLURM_CPUS_ON_NODE": "64"}, affinity=8) == 8
    assert default_proc({"SLURM_CPUS_ON_NODE": "bogus"}, affinity=3) == 3


def test_job_labels() -> None:
    env = {"SLURM_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "3", "SLURMD_NODENAME": "n2"}
    assert job_labels(env) == {"job": "12", "array_task": "3", "node": "n2"}
    assert job_labels({"SLURM_JOB_ID": "12", "SLURM_RESTART_COUNT": "1"}) == {
        "job": "12", "restart": "1"}
