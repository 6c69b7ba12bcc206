"""What SLURM tells a farmer through its environment: CPUs to use, node and job names."""

from __future__ import annotations

import os
from collections.abc import Mapping


def _positive_int(value: str | None) -> int | None:
    try:
        number = int((value or "").split("(")[0])
    except ValueError:
        return None
    return number if number > 0 else None


def default_proc(environ: Mapping[str, str], affinity: int | None = None) -> int:
    """The default ``--proc``: the CPUs this process may use.

    That is the CPU affinity mask; inside a SLURM allocation, no more than the CPUs SLURM gave
    this step (``SLURM_CPUS_PER_TASK``) or this node (``SLURM_CPUS_ON_NODE``), since with
    ``TaskPlugin=task/none`` the affinity mask still spans the whole machine.
    """
    if affinity is None:
        affinity = len(os.sched_getaffinity(0))
    limit = _positive_int(environ.get("SLURM_CPUS_PER_TASK")) or _positive_int(
        environ.get("SLURM_CPUS_ON_NODE"))
    return max(1, min(affinity, limit) if limit else affinity)


def job_labels(environ: Mapping[str, str]) -> dict[str, str]:
    """SLURM job, array and step ids, for the timeline's track labels.

    ``restart`` is the number of times a requeued job was started again: it tells the runs of
    one job id apart.
    """
    names = {
        "SLURM_JOB_ID": "job",
        "SLURM_ARRAY_JOB_ID": "array_job",
        "SLURM_ARRAY_TASK_ID": "array_task",
        "SLURM_STEP_ID": "step",
        "SLURM_RESTART_COUNT": "restart",
        "SLURMD_NODENAME": "node",
    }
    return {label: environ[key] for key, label in names.items() if environ.get(key)}
