"""Run each task inside an Apptainer (or Singularity) image: what most HPC centres run."""

from __future__ import annotations

import os
from typing import Dict, List, Mapping

from ..config import words
from .container import ContainerRunner


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

    def argv(self, task_id: int, command: str) -> List[str]:
        """``apptainer exec --bind=... OPTIONS IMAGE SHELL -c "SETUP && TASK"``."""
        binds = [f"--bind={bind}" for bind in self.binds]
        return [self.engine, "exec", *binds, *self.options, self.image,
                *self.inner_argv(command)]

    def environment(self, task_id: int, environ: Mapping[str, str]) -> Dict[str, str]:
        """Ours plus ``PROC_NUMBER``, also for inside a clean environment."""
        env = super().environment(task_id, environ)
        prefix = "SINGULARITY" if "singularity" in os.path.basename(self.engine) else "APPTAINER"
        env[f"{prefix}ENV_PROC_NUMBER"] = str(task_id)
        return env
