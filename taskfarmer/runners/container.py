"""What the container runners share: an image, setup commands run before every task, extra
options for the container engine, the shell inside, and a name for each execution."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
from collections.abc import Mapping

from ..errors import ConfigError
from .base import Runner
from .basic import shell_argv

_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def with_setup(setup: str, command: str) -> str:
    """The script that runs ``setup`` and then, only if it succeeded, ``command``.

    ``source env.sh && { reco in.root
    }``: the braces keep a ``;`` or ``||`` in the task from escaping the ``&&``, and the
    newline ends a ``#`` comment the task may have. Without setup the script is the task.
    """
    setup = setup.strip()
    return f"{setup} && {{ {command}\n}}" if setup else command


def split_options(value: str, name: str = "options") -> list[str]:
    """Extra command-line arguments, split as a shell would (quotes group words).

    Raises:
        ConfigError: unbalanced quotes.
    """
    try:
        return shlex.split(value)
    except ValueError as error:
        raise ConfigError(f"{name} = {value!r}: {error}") from None


def host_tag() -> str:
    """This host's short name, safe for container and file names, plus a random part."""
    host = _NOT_NAME.sub("-", socket.gethostname().split(".")[0]).strip("-.") or "host"
    return f"{host}-{os.urandom(3).hex()}"


class ContainerRunner(Runner):
    """Base of the runners that run each task inside a container image.

    Args:
        image: the image (required).
        setup: shell commands run in the container before each task; the task runs only if
            they succeed.
        options: more arguments for the container engine, split like a shell command line.
        shell: the shell inside the image that runs ``setup && task``.
        engine: the program that runs containers (``docker``, ``podman``, ``apptainer`` ...).
    """

    def __init__(self, image: str, setup: str, options: str, shell: str, engine: str) -> None:
        for name, value in (("image", image), ("engine", engine)):
            if not value.strip():
                raise ConfigError(f"{name} is empty")
        self.engine = engine.strip()
        self.image = image.strip()
        self.setup = setup
        self.options = split_options(options)
        self.shell = shell
        self.tag = host_tag()

    def check(self, environ: Mapping[str, str]) -> None:
        """The engine is an executable on the tasks' ``PATH``.

        Raises:
            ConfigError: it is not.
        """
        if shutil.which(self.engine, path=environ.get("PATH", os.defpath)) is None:
            raise ConfigError(f"no task can run on this node: {self.engine}: no such program "
                              "on PATH")

    def execution_name(self, task_id: int) -> str:
        """A name unique to this execution of task ``task_id``, the same in :meth:`argv` and
        :meth:`cleanup`: host, a random part drawn once per farmer run, worker PID, task ID."""
        return f"taskfarmer-{self.tag}-{os.getpid()}-{task_id}"

    def inner_argv(self, command: str) -> list[str]:
        """``SHELL -c "SETUP && TASK"``: what runs inside the container."""
        return shell_argv(with_setup(self.setup, command), self.shell)
