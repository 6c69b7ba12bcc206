"""Tasklist handlers written for PyTaskFarmer (subclasses of :mod:`taskfarmer.task`'s classes).

PyTaskFarmer built its handler from the tasklist path and the workdir plus the INI arguments;
the handler read the list into ``tasks`` (one text per task, the task ID its index) and
``handler[task_id]`` was the command to run. :class:`LegacyTaskList` does the same once the
farm knows both paths (:meth:`LegacyTaskList.prepare`, in the farmer's main process, before its
workers are forked, so they share the built handler): ``tasks`` become the lines stored in
``toprocess`` (so ``finished`` and ``failed`` list them, as PyTaskFarmer's did) and
``handler[task.id]`` the command.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, TaskfarmerError, TasklistError
from ..tasks import Task, TaskList

if TYPE_CHECKING:  # registry builds these handlers: importing it here would be a cycle
    from ..registry.catalog import Definition


class LegacyTaskList(TaskList):
    """A PyTaskFarmer-style handler class, built when the farm prepares.

    Args:
        handler_class: the user's class (a subclass of :class:`taskfarmer.task.TaskList`).
        definition: its INI definition (arguments, and the file and section for errors).
    """

    def __init__(self, handler_class: type, definition: Definition) -> None:
        self.handler_class = handler_class
        self.definition = definition
        self.arguments: Mapping[str, str] = definition.arguments
        self.legacy: Any | None = None

    def prepare(self, tasklist: Path, workdir: Path) -> None:
        """Build the handler for ``tasklist`` farmed in ``workdir`` (which exists).

        Raises:
            TasklistError: the tasklist cannot be read.
            ConfigError: the constructor failed otherwise (naming the INI file and section).
        """
        self.open(tasklist).close()  # a missing or unreadable tasklist: our one-line error
        try:
            self.legacy = self.handler_class(str(tasklist), str(workdir), **self.arguments)
        except TaskfarmerError as error:
            raise self.definition.error(getattr(error, "reason", str(error))) from None
        except Exception as error:  # the user's constructor: report it in one line
            raise self._failed(error) from None

    def _failed(self, error: Exception) -> ConfigError:
        reason = " ".join(str(error).split())
        return self.definition.error(f"{self.definition.class_path}: "
                                     f"{type(error).__name__}: {reason}")

    def _built(self) -> Any:
        if self.legacy is None:
            raise ConfigError(f"{self.definition.class_path} used before the farm prepared it")
        return self.legacy

    def lines(self, path: Path) -> Iterator[str]:
        """The handler's ``tasks``, in task-ID order, as single lines.

        Raises:
            TasklistError: ``path`` cannot be opened (at once), or a task text holds a line
                break or a NUL byte (as the result is iterated).
        """
        self.open(path).close()
        return self._texts(path)

    def _texts(self, path: Path) -> Iterator[str]:
        for task_id, text in enumerate(self._built().tasks):
            line = str(text).strip()
            if "\n" in line or "\r" in line or "\0" in line:
                raise TasklistError(path, f"{self.definition.class_path} made task "
                                          f"{task_id} a text with a line break or NUL byte")
            yield line

    def command(self, task: Task) -> str:
        """``handler[task.id]``, as PyTaskFarmer ran it."""
        return str(self._built()[task.id])
