"""Named runner and tasklist-handler definitions (``--runner NAME``, ``--tasklist NAME``).

``default`` is the basic runner and the line-list handler unless an INI file defines it
(``[default]``, as PyTaskFarmer allowed); every other name comes from the INI files of
:mod:`taskfarmer.registry.catalog`. A definition is imported and built only when asked for, so
a broken one that the run does not use costs a warning (:meth:`Registry.warnings`), not the run.
Runner classes written for PyTaskFarmer (``run``/``terminate``) are wrapped in
:class:`~taskfarmer.compat.runner.LegacyRunner`.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable

from .. import task
from ..compat.runner import LegacyRunner, is_legacy
from ..compat.tasklist import LegacyTaskList
from ..errors import ConfigError
from ..runners.base import Runner
from ..tasks import TaskList
from .catalog import RUNNERS, TASKLISTS, Catalog, Definition, search_directories


class Registry:
    """The runner and tasklist-handler definitions visible from ``cwd`` with ``HOME``.

    Args:
        environ: the environment (``HOME``); default ``os.environ``.
        cwd: the current directory (``./runners.d``, ``./tasklists.d``); default the process's.
    """

    def __init__(self, environ: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
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

    def warnings(self) -> list[ConfigError]:
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


def _check_arguments(definition: Definition, target: object, given: list[str]) -> None:
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


def import_object(path: str) -> object:
    """Import ``module.Name`` and return ``Name``.

    Raises:
        ConfigError: ``path`` is not dotted, the module fails to import, or lacks ``Name``
            (no file or section set: the caller knows them).
    """
    module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise ConfigError(f"{path!r} is not a module.Class path")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any error of the user's module: report it in one line
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ConfigError(f"cannot import {module_name}: {reason}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"module {module_name} has no {attribute!r}") from None


def keyword_problem(target: object, arguments: Sequence[str]) -> str | None:
    """Why calling ``target`` with these keyword names would fail, or None if it would not.

    Only names are checked (every value is a string): unknown and missing arguments.
    """
    try:
        signature = inspect.signature(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    parameters = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    accepted = [name for name, p in parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [name for name in arguments if name not in accepted]
    if unknown and not takes_any:
        return (f"unknown argument {unknown[0]!r} (accepted: "
                f"{', '.join(accepted) or 'none'})")
    missing = [name for name in accepted
               if parameters[name].default is parameters[name].empty and name not in arguments]
    if missing:
        return f"missing argument {missing[0]!r}"
    return None
