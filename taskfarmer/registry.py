"""Named runner and tasklist-handler definitions (``--runner NAME``, ``--tasklist NAME``).

``default`` is always the basic runner and the line-list handler.
"""

from __future__ import annotations

from typing import Callable, Dict

from .errors import ConfigError
from .runners import BasicRunner
from .runners.base import Runner
from .tasks import ListTaskList, TaskList


class Registry:
    """Definitions by name; a definition is a factory that builds the object."""

    def __init__(self) -> None:
        self.runners: Dict[str, Callable[[], Runner]] = {"default": BasicRunner}
        self.tasklists: Dict[str, Callable[[], TaskList]] = {"default": ListTaskList}

    def runner(self, name: str) -> Runner:
        """Build the runner called ``name``."""
        return self._build(self.runners, name, "runner", "--runner")

    def tasklist(self, name: str) -> TaskList:
        """Build the tasklist handler called ``name``."""
        return self._build(self.tasklists, name, "tasklist handler", "--tasklist")

    @staticmethod
    def _build(table: Dict[str, Callable[[], object]], name: str, kind: str,
               option: str) -> object:
        factory = table.get(name)
        if factory is None:
            known = ", ".join(sorted(table))
            raise ConfigError(f"unknown {kind} {name!r} (known: {known})", option=option)
        return factory()
