"""Run each task inside an Apptainer (or Singularity) image: what most HPC centres run."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..hpc.resources import AMD, NVIDIA
from ..ini import words
from .container import ContainerRunner

#: The ``apptainer exec`` option that makes a vendor's GPUs usable in the container.
GPU_OPTIONS = {NVIDIA: "--nv", AMD: "--rocm"}


class ApptainerRunner(ContainerRunner):
    """``apptainer exec --bind=... IMAGE /bin/sh -c "SETUP && TASK"``.

    Apptainer keeps the environment, the current directory and your user; it binds ``$HOME``
    and the current directory itself. ``PROC_NUMBER`` is also passed as
    ``APPTAINERENV_PROC_NUMBER`` (``SINGULARITYENV_`` for ``singularity``), so it reaches the
    task even with ``--cleanenv``. The task runs as a child of ``apptainer``, so stopping the
    process group stops it.

    Args:
        image: a ``.sif`` file, a sandbox directory, or ``docker://...``.
        setup: shell commands run in the container before each task.
        binds: space-separated ``--bind`` specs (``/host/path[:/container/path[:ro]]``).
        options: more ``apptainer exec`` arguments (``--nv``, ``--cleanenv`` ...).
        engine: ``apptainer``, or ``singularity`` where only that is installed.
        shell: the shell inside the image.
    """

    def __init__(self, image: str, setup: str = "", binds: str = "", options: str = "",
                 engine: str = "apptainer", shell: str = "/bin/sh") -> None:
        super().__init__(image, setup, options, shell, engine)
        self.binds = words(binds)

    def argv(self, task_id: int, command: str) -> list[str]:
        """``apptainer exec --bind=... [--nv|--rocm] OPTIONS IMAGE SHELL -c "SETUP && TASK"``:
        ``--nv`` (``--rocm``) when the worker slot has NVIDIA (AMD) GPUs and the options do not
        already say it."""
        binds = [f"--bind={bind}" for bind in self.binds]
        gpu = GPU_OPTIONS.get(self.resources.vendor) if self.resources.devices else None
        gpus = [gpu] if gpu is not None and gpu not in self.options else []
        return [self.engine, "exec", *binds, *gpus, *self.options, self.image,
                *self.inner_argv(command)]

    def environment(self, task_id: int, environ: Mapping[str, str]) -> dict[str, str]:
        """Ours plus ``PROC_NUMBER``; it and the worker slot's variables (``TASKFARMER_SLOT``,
        ``CUDA_VISIBLE_DEVICES`` ...) also for inside a clean environment."""
        env = super().environment(task_id, environ)
        prefix = "SINGULARITY" if "singularity" in os.path.basename(self.engine) else "APPTAINER"
        env[f"{prefix}ENV_PROC_NUMBER"] = str(task_id)
        for name in self.resources.variables(environ):
            if name in environ:
                env[f"{prefix}ENV_{name}"] = environ[name]
        return env
