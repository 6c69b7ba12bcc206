"""Named runner and tasklist-handler definitions (``--runner NAME``, ``--tasklist NAME``).

``default`` is the basic runner and the line-list handler unless an INI file defines it
(``[default]``, as PyTaskFarmer allowed); every other name comes from the INI files of
:mod:`taskfarmer.config`. A definition is imported and built only when asked for, so a broken
one that the run does not use costs a warning (:meth:`Registry.warnings`), not the run.
Runner classes written for PyTaskFarmer (``run``/``terminate``) are wrapped in
:class:`~taskfarmer.runners.legacy.LegacyRunner`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Mapping, Optional, TextIO

from rich.console import Console
from rich.table import Table

from . import task
from .config import (
    RUNNERS,
    TASKLISTS,
    Catalog,
    Definition,
    import_object,
    keyword_problem,
    search_directories,
)
from .errors import ConfigError
from .legacy_tasklist import LegacyTaskList
from .runners.base import Runner
from .runners.legacy import LegacyRunner, is_legacy
from .tasks import TaskList

_HEADERS = ("NAME", "CLASS", "DEFINED IN", "NOTE")


class Registry:
    """The runner and tasklist-handler definitions visible from ``cwd`` with ``HOME``.

    Args:
        environ: the environment (``HOME``); default ``os.environ``.
        cwd: the current directory (``./runners.d``, ``./tasklists.d``); default the process's.
    """

    def __init__(self, environ: Optional[Mapping[str, str]] = None,
                 cwd: Optional[Path] = None) -> None:
        environ = os.environ if environ is None else environ
        cwd = Path.cwd() if cwd is None else cwd
        self.runners = Catalog.load(RUNNERS, search_directories(RUNNERS, environ, cwd))
        self.tasklists = Catalog.load(TASKLISTS, search_directories(TASKLISTS, environ, cwd))

    def runner(self, name: str) -> Runner:
        """Build the runner called ``name``.

        Raises:
            ConfigError: no such name, or its definition is broken, does not import or does
                not construct (naming the INI file and section).
        """
        definition = self.runners.get(name)
        made = _construct(definition)
        if is_legacy(type(made)):
            return LegacyRunner(made)
        if not isinstance(made, Runner):
            raise definition.error(f"{definition.class_path} is not a runner: subclass "
                                   "taskfarmer.runners.Runner (or define PyTaskFarmer's "
                                   "run(taskid, command, logfh))")
        return made

    def tasklist(self, name: str) -> TaskList:
        """Build the tasklist handler called ``name``.

        Raises:
            ConfigError: as for :meth:`runner`.
        """
        definition = self.tasklists.get(name)
        target = _import(definition)
        if isinstance(target, type) and issubclass(target, task.TaskList):
            _check_arguments(definition, target, ["path", "workdir"])
            return LegacyTaskList(target, definition)
        made = _construct(definition)
        if not isinstance(made, TaskList):
            raise definition.error(f"{definition.class_path} is not a tasklist handler: "
                                   "subclass taskfarmer.tasks.TaskList (or PyTaskFarmer's "
                                   "taskfarmer.task.ListTaskList)")
        return made

    def warnings(self) -> List[ConfigError]:
        """Every problem met in the INI files, for a run that did not need the broken parts."""
        return self.runners.warnings() + self.tasklists.warnings()


def _import(definition: Definition) -> Callable[..., object]:
    """The class ``definition`` names."""
    try:
        target = import_object(definition.class_path)
    except ConfigError as error:
        raise definition.error(error.reason) from None
    if not callable(target):
        raise definition.error(f"{definition.class_path} is not a class")
    return target


def _check_arguments(definition: Definition, target: object, given: List[str]) -> None:
    """Raise if ``target`` would not accept the INI arguments (besides ``given`` ones)."""
    problem = keyword_problem(target, [*given, *definition.arguments])
    if problem is not None:
        raise definition.error(f"{definition.class_path}: {problem}")


def _construct(definition: Definition) -> object:
    """Import the class of ``definition`` and call it with the INI arguments."""
    target = _import(definition)
    _check_arguments(definition, target, [])
    try:
        return target(**definition.arguments)
    except ConfigError as error:
        raise definition.error(error.reason) from None
    except Exception as error:  # the user's constructor: report it in one line
        reason = " ".join(str(error).split())
        raise definition.error(f"{definition.class_path}: {type(error).__name__}: "
                               f"{reason}") from None


def print_listing(catalog: Catalog, out: TextIO, terminal: bool) -> None:
    """Print every definition of ``catalog``, where it comes from and what became of it.

    A rich table on a ``terminal``; otherwise aligned plain-text columns, a line each.
    """
    rows = [(e.name, e.class_path, e.origin, e.note) for e in catalog.listing()]
    if terminal:
        table = Table(title=f"{catalog.kind.noun}s".capitalize())
        for header in _HEADERS:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console(file=out).print(table)
        return
    widths = [max(len(row[column]) for row in [_HEADERS, *rows]) for column in range(3)]
    for row in [_HEADERS, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        out.write("  ".join([*cells, row[3]]).rstrip() + "\n")
