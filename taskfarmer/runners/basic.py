"""The default runner: the task line through ``/bin/sh -c``."""

from __future__ import annotations

from .base import Runner


def shell_argv(command: str, shell: str = "/bin/sh") -> list[str]:
    """``/bin/sh -c COMMAND``: pipes, redirections, quotes and ``$VARS`` work."""
    return [shell, "-c", command]


class BasicRunner(Runner):
    """Runs each task with ``/bin/sh -c`` in the farmer's environment."""

    def argv(self, task_id: int, command: str) -> list[str]:
        """``/bin/sh -c COMMAND``."""
        return shell_argv(command)
