"""Run each task in a Docker (or Podman) container, removed by name when the task ends.

Killing the ``docker`` client does not stop its container: the daemon runs it. So each
container gets a name unique to the execution (:meth:`ContainerRunner.execution_name`) and
:meth:`DockerRunner.cleanup`, which the worker calls after every task however it ended,
removes it with ``docker rm -f NAME``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping

from ..errors import ConfigError
from ..hpc.resources import AMD, NVIDIA, SlotResources
from ..ini import words
from .container import ContainerRunner

#: Seconds ``docker rm -f`` may take in :meth:`DockerRunner.cleanup`. A stopping worker has
#: ``KILL_GRACE`` (2 s) plus 10 s before the farm kills it; this fits in between.
REMOVE_TIMEOUT = 8.0

#: Seconds ``docker version`` may take to answer in :meth:`DockerRunner.check`.
CHECK_TIMEOUT = 30.0

#: ``docker rm -f`` messages meaning there is nothing left to remove.
_GONE = re.compile(r"no such container|already in progress", re.IGNORECASE)


def resource_options(resources: SlotResources, engine: str) -> list[str]:
    """``docker run`` arguments that give the container its worker slot's devices and CPUs.

    The container does not see the client's environment, nor is it a child of the worker
    (the daemon starts it), so neither the slot's variables nor the worker's CPU affinity
    reach it by themselves: ``TASKFARMER_SLOT`` and the device variables are passed by
    value, ``OMP_NUM_THREADS`` from the client's environment (the user's or the slot's),
    the CPUs with ``--cpuset-cpus``. NVIDIA devices: ``--gpus="device=..."`` (Docker; the
    quotes keep the comma inside one field) or one CDI ``--device=nvidia.com/gpu=ID`` each
    (Podman); the container numbers them from 0, so ``CUDA_VISIBLE_DEVICES`` is not passed.
    AMD: ``/dev/kfd`` and ``/dev/dri`` with ``ROCR_VISIBLE_DEVICES`` choosing among them.
    Devices of unknown vendor: only their variables (add the device options you need).
    """
    options = [f"--env=TASKFARMER_SLOT={resources.slot}"]
    if resources.devices:
        devices = ",".join(resources.devices)
        if resources.vendor == NVIDIA and "podman" in os.path.basename(engine):
            options += [f"--device=nvidia.com/gpu={device}" for device in resources.devices]
        elif resources.vendor == NVIDIA:
            options.append(f'--gpus="device={devices}"')
        else:
            if resources.vendor == AMD:
                options += ["--device=/dev/kfd", "--device=/dev/dri"]
            options += [f"--env={name}={value}"
                        for name, value in resources.device_variables().items()]
    if resources.cpus:
        options += ["--env=OMP_NUM_THREADS",
                    f"--cpuset-cpus={','.join(str(cpu) for cpu in resources.cpus)}"]
    return options


def client(argv: list[str], environ: Mapping[str, str], timeout: float,
           gone: re.Pattern[str] | None = None) -> str | None:
    """Run the container client ``argv`` for at most ``timeout`` seconds; None if it
    succeeded (or its error output matches ``gone``: nothing left to do), else what went
    wrong, in one line."""
    try:
        done = subprocess.run(argv, env=dict(environ), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"no answer in {timeout:g} s"
    except OSError as error:
        return error.strerror or str(error)
    if done.returncode == 0 or (gone is not None and gone.search(done.stderr)):
        return None
    return " ".join(done.stderr.split()) or f"exit code {done.returncode}"


class DockerRunner(ContainerRunner):
    """``docker run --rm --init --name NAME ... IMAGE /bin/sh -c "SETUP && TASK"``.

    Args:
        image: the image.
        setup: shell commands run in the container before each task.
        volumes: space-separated ``--volume`` bindings (``/host/path:/container/path[:ro]``).
        env: space-separated ``NAME`` (passed from the farmer's environment) or ``NAME=VALUE``.
            ``PROC_NUMBER`` is always set.
        workdir: the task's working directory in the container. By default, the directory
            the farmer runs in, bound at the same path, so that relative paths in the tasks
            mean what they mean outside. Set a path to use a directory of the image (or of
            ``volumes``) instead, nothing bound; set it empty to keep the image's.
        user: ``UID:GID`` the task runs as; by default the farmer's, so files written in
            bound directories belong to you. Empty: the image's user.
        options: more ``docker run`` arguments (``--network none``, ``--gpus all`` ...).
        engine: the client: ``docker``, ``podman`` or another with the same arguments.
        shell: the shell inside the image (``/bin/sh``: busybox or alpine have no bash).
    """

    def __init__(self, image: str, setup: str = "", volumes: str = "", env: str = "",
                 workdir: str | None = None, user: str | None = None,
                 options: str = "", engine: str = "docker", shell: str = "/bin/sh") -> None:
        super().__init__(image, setup, options, shell, engine)
        self.volumes = words(volumes)
        self.env = words(env)
        self.bind_workdir = workdir is None
        self.workdir = os.getcwd() if workdir is None else workdir.strip()
        self.user = f"{os.getuid()}:{os.getgid()}" if user is None else user.strip()
        self._environ: dict[str, str] | None = None

    def argv(self, task_id: int, command: str) -> list[str]:
        """``docker run --rm --init --name NAME --env=PROC_NUMBER=ID`` :func:`resource_options`
        ``... IMAGE SHELL -c ...``."""
        argv = [self.engine, "run", "--rm", "--init", f"--name={self.execution_name(task_id)}",
                f"--env=PROC_NUMBER={task_id}", *resource_options(self.resources, self.engine)]
        argv += [f"--env={variable}" for variable in self.env]
        argv += [f"--volume={volume}" for volume in self.volumes]
        if self.bind_workdir:
            argv.append(f"--volume={self.workdir}:{self.workdir}")
        if self.workdir:
            argv.append(f"--workdir={self.workdir}")
        if self.user:
            argv.append(f"--user={self.user}")
        return [*argv, *self.options, self.image, *self.inner_argv(command)]

    def check(self, environ: Mapping[str, str]) -> None:
        """The client is on ``PATH`` and ``ENGINE version`` answers: Docker's daemon (or
        Podman's service, with a remote ``CONTAINER_HOST``) runs and lets us in.

        Raises:
            ConfigError: no client, or no answer within :data:`CHECK_TIMEOUT`.
        """
        super().check(environ)
        problem = client([self.engine, "version"], environ, CHECK_TIMEOUT)
        if problem is not None:
            raise ConfigError(f"no task can run on this node: '{self.engine} version' failed: "
                              f"{problem}")

    def start(self, task_id: int, command: str, log_fd: int,
              environ: Mapping[str, str]) -> subprocess.Popen:
        """Start the client; remember the environment (``DOCKER_HOST`` ...) for cleanup."""
        self._environ = dict(environ)
        return super().start(task_id, command, log_fd, environ)

    def cleanup(self, task_id: int) -> None:
        """``docker rm -f NAME``, bounded by :data:`REMOVE_TIMEOUT`; a line on stderr if the
        container may be left behind."""
        name = self.execution_name(task_id)
        problem = client([self.engine, "rm", "-f", name], self._environ or os.environ,
                         REMOVE_TIMEOUT, gone=_GONE)
        if problem is None:
            return
        print(f"taskfarmer: could not remove container {name} ({problem}); it may still run: "
              f"{self.engine} rm -f {name}", file=sys.stderr)
