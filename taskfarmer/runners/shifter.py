"""Run each task inside a Shifter image (NERSC), as PyTaskFarmer's ShifterRunner did."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping

from ..ini import flag, words
from .container import ContainerRunner


class ShifterRunner(ContainerRunner):
    """``shifter --image=IMAGE [--workdir=TMP] --volume=... --module=... -- /bin/bash -c
    "SETUP && TASK"``, with ``BASH_ENV`` cleared so no startup file runs before the setup.

    Shifter keeps the environment (``PROC_NUMBER`` included) and the current directory.

    Args:
        image: the Shifter image, e.g. ``docker:ubuntu:22.04``.
        setup: shell commands run before each task (``source setup.sh``).
        volumes: space-separated ``--volume`` bindings (``/host/path:/container/path``).
        modules: space-separated Shifter modules (``cvmfs``, ``gpu`` ...).
        tempdir: ``True`` runs each task in a fresh directory of ``$TMPDIR`` (``--workdir``),
            removed when the task ends.
        options: more ``shifter`` arguments, before ``--``.
        shell: the shell inside the image.
    """

    def __init__(self, image: str, setup: str = "", volumes: str = "", modules: str = "",
                 tempdir: bool | str = False, options: str = "",
                 shell: str = "/bin/bash") -> None:
        super().__init__(image, setup, options, shell, engine="shifter")
        self.volumes = words(volumes)
        self.modules = words(modules)
        self.tempdir: str | None = tempfile.gettempdir() if flag(tempdir, "tempdir") else None

    def task_directory(self, task_id: int) -> str | None:
        """The directory this execution of the task runs in with ``tempdir``, else None."""
        if self.tempdir is None:
            return None
        return os.path.join(self.tempdir, self.execution_name(task_id))

    def argv(self, task_id: int, command: str) -> list[str]:
        """``shifter --image=IMAGE ... -- /bin/bash -c "SETUP && TASK"``."""
        argv = [self.engine, f"--image={self.image}"]
        directory = self.task_directory(task_id)
        if directory is not None:
            argv.append(f"--workdir={directory}")
        argv += [f"--volume={volume}" for volume in self.volumes]
        argv += [f"--module={module}" for module in self.modules]
        return [*argv, *self.options, "--", *self.inner_argv(command)]

    def environment(self, task_id: int, environ: Mapping[str, str]) -> dict[str, str]:
        """Ours plus ``PROC_NUMBER``, with ``BASH_ENV`` empty (as PyTaskFarmer did)."""
        env = super().environment(task_id, environ)
        env["BASH_ENV"] = ""
        return env

    def start(self, task_id: int, command: str, log_fd: int,
              environ: Mapping[str, str]) -> subprocess.Popen:
        """Make the task's directory (``tempdir``), then start ``shifter``."""
        directory = self.task_directory(task_id)
        if directory is None:
            return super().start(task_id, command, log_fd, environ)
        os.mkdir(directory, 0o700)
        try:
            return super().start(task_id, command, log_fd, environ)
        except OSError:  # no shifter: the worker will not call cleanup
            os.rmdir(directory)
            raise

    def cleanup(self, task_id: int) -> None:
        """Remove the task's directory (``tempdir``)."""
        directory = self.task_directory(task_id)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
