"""Runner and tasklist-handler definitions read from INI files.

A definition is an INI section: its name is the section name, one key names the class
(``Runner = module.Class`` or ``TaskList = module.Class``) and the other keys are passed to the
class's constructor as keyword arguments, as strings. Every ``*.ini`` file (in name order) of
these directories is read, and a later definition of a name replaces an earlier one:

1. the definitions shipped with taskfarmer (the repository's ``runners.d/``, ``tasklists.d/``),
2. ``~/.pytaskfarmer/runners.d`` (``tasklists.d``): PyTaskFarmer's location,
3. ``~/.taskfarmer/runners.d`` (``tasklists.d``),
4. ``./runners.d`` (``./tasklists.d``) in the current directory.

``default`` is the built-in basic runner (line-list handler) unless a ``[default]`` section
defines it: PyTaskFarmer's users make every task run in a container that way.

Files are parsed as PyTaskFarmer parsed them (:class:`configparser.ConfigParser`, keys keep
their case, ``%`` interpolation, so a literal ``%`` is written ``%%``). Nothing is imported
here: a broken file or section is remembered as a :class:`~taskfarmer.errors.ConfigError`
that is raised only when its name is asked for (:meth:`Catalog.get`), so a run that does not
use it can merely warn.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

#: The name that always means the built-in basic runner / line-list handler.
DEFAULT_NAME = "default"



@dataclass(frozen=True)
class Kind:
    """One kind of definition: runners or tasklist handlers."""

    noun: str
    key: str
    directory: str
    option: str
    default_class: str


RUNNERS = Kind("runner", "Runner", "runners.d", "--runner", "taskfarmer.runners.BasicRunner")
TASKLISTS = Kind("tasklist handler", "TaskList", "tasklists.d", "--tasklist",
                 "taskfarmer.tasks.ListTaskList")


@dataclass(frozen=True)
class Definition:
    """One named definition: the class to build and its constructor's keyword arguments.

    ``path`` is the INI file (None for the built-in ``default``); the section is ``name``.
    """

    name: str
    class_path: str
    arguments: Mapping[str, str]
    path: Path | None

    @property
    def origin(self) -> str:
        """The INI file the definition comes from, or ``built-in``."""
        return str(self.path) if self.path is not None else "built-in"

    def error(self, reason: str) -> ConfigError:
        """A :class:`ConfigError` naming this definition's file and section."""
        return ConfigError(reason, path=self.path, section=self.name)


@dataclass(frozen=True)
class Entry:
    """A line of :meth:`Catalog.listing`: a definition as read, and what became of it."""

    name: str
    class_path: str
    origin: str
    note: str


@dataclass
class Catalog:
    """The definitions of one kind read from a sequence of directories (later wins)."""

    kind: Kind
    definitions: dict[str, Definition] = field(default_factory=dict)
    broken: dict[str, ConfigError] = field(default_factory=dict)
    #: Every definition and every problem, in the order read.
    history: list[Definition | ConfigError] = field(default_factory=list)

    @classmethod
    def load(cls, kind: Kind, directories: Iterable[Path]) -> Catalog:
        """Read every ``*.ini`` of ``directories``, in order, skipping missing directories."""
        catalog = cls(kind)
        seen = set()
        for directory in directories:
            resolved = directory.resolve()
            if resolved in seen or not directory.is_dir():
                continue
            seen.add(resolved)
            try:
                files = sorted(directory.glob("*.ini"))
            except OSError as error:
                catalog.history.append(ConfigError(f"cannot list: {error.strerror}",
                                                   path=directory))
                continue
            for path in files:
                catalog.read(path)
        return catalog

    def read(self, path: Path) -> None:
        """Add the definitions of the INI file ``path``."""
        parser = configparser.ConfigParser()
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
        text = ""
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            parser.read_string(text, source=str(path))
        except (OSError, UnicodeDecodeError, configparser.Error) as error:
            reason = _describe(error)
            self.history.append(ConfigError(reason, path=path))
            for name in _section_names(text):  # whichever it meant to define is broken
                self.definitions.pop(name, None)
                self.broken[name] = ConfigError(reason, path=path, section=name)
            return
        for name in parser.sections():
            self._section(path, name, parser[name])

    def _section(self, path: Path, name: str, section: configparser.SectionProxy) -> None:
        try:
            values = {key: section[key] for key in section}
        except configparser.Error as error:
            self._drop(name, ConfigError(_describe(error), path=path, section=name))
            return
        class_path = values.pop(self.kind.key, None)
        if class_path is None:
            self._drop(name, ConfigError(f"no {self.kind.key} key (the class of this "
                                         f"{self.kind.noun}: {self.kind.key} = module.Class)",
                                         path=path, section=name))
            return
        definition = Definition(name, class_path.strip(), values, path)
        self.definitions[name] = definition
        self.broken.pop(name, None)
        self.history.append(definition)

    def _drop(self, name: str, problem: ConfigError) -> None:
        """``name``'s latest definition is broken: asking for it raises ``problem``."""
        self.definitions.pop(name, None)
        self.broken[name] = problem
        self.history.append(problem)

    def get(self, name: str) -> Definition:
        """The definition called ``name``.

        Raises:
            ConfigError: ``name``'s latest definition is broken, or there is none.
        """
        if name == DEFAULT_NAME and name not in self.definitions and name not in self.broken:
            return Definition(DEFAULT_NAME, self.kind.default_class, {}, None)
        if name in self.broken:
            raise self.broken[name]
        if name not in self.definitions:
            known = ", ".join(sorted({DEFAULT_NAME, *self.definitions}))
            raise ConfigError(f"unknown {self.kind.noun} {name!r} (known: {known})",
                              option=self.kind.option)
        return self.definitions[name]

    def warnings(self) -> list[ConfigError]:
        """Every problem met while reading, in order (for a run that did not need them)."""
        return [item for item in self.history if isinstance(item, ConfigError)]

    def listing(self) -> list[Entry]:
        """Every definition read, in order, with ``default`` first and a note saying whether
        it is the one in use, replaced by a later one, or broken."""
        default = self.definitions.get(DEFAULT_NAME) or self.broken.get(DEFAULT_NAME)
        note = f"replaced by {default.path}" if default is not None else ""
        entries = [Entry(DEFAULT_NAME, self.kind.default_class, "built-in", note)]
        for item in self.history:
            if isinstance(item, ConfigError):
                entries.append(Entry(item.section or "", "", str(item.path),
                                     f"error: {item.reason}"))
                continue
            current = self.definitions.get(item.name)
            if current is item:
                note = ""
            elif current is not None:
                note = f"replaced by {current.origin}"
            else:
                note = "replaced by a broken definition"
            entries.append(Entry(item.name, item.class_path, item.origin, note))
        return entries


def _section_names(text: str) -> list[str]:
    """The ``[section]`` headers of an INI text, found line by line as configparser does."""
    names = []
    for line in text.splitlines():
        match = configparser.ConfigParser.SECTCRE.match(line.strip())
        if match:
            names.append(match.group("header"))
    return names


def _describe(error: Exception) -> str:
    """One line for an error met while reading an INI file."""
    if isinstance(error, OSError):
        return f"cannot read: {error.strerror}"
    if isinstance(error, UnicodeDecodeError):
        return "not a UTF-8 text file"
    if isinstance(error, configparser.MissingSectionHeaderError):
        return f"line {error.lineno}: {error.line.strip()!r} comes before any [section]"
    if isinstance(error, configparser.DuplicateSectionError):
        return f"line {error.lineno}: section [{error.section}] appears twice in this file"
    if isinstance(error, configparser.DuplicateOptionError):
        return (f"line {error.lineno}: key {error.option!r} appears twice in "
                f"[{error.section}]")
    if isinstance(error, configparser.ParsingError):
        number, line = error.errors[0]
        more = f" (and {len(error.errors) - 1} more lines)" if len(error.errors) > 1 else ""
        return f"line {number}: not 'key = value' nor a [section]: {line}{more}"
    return " ".join(str(error).split())


# -- where definitions live ----------------------------------------------------------------------


def shipped_directory(name: str) -> Path | None:
    """The directory ``name`` (``runners.d``, ``tasklists.d``) shipped with taskfarmer.

    In a source checkout (editable install included) that is the repository's top-level
    directory; in an installed package it is where ``[options.data_files]`` put it
    (``PREFIX/share/taskfarmer/NAME``, found through the installed file list, whatever the
    prefix: venv, ``--user``, system).
    """
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "setup.cfg").is_file() and (checkout / name).is_dir():
        return checkout / name
    from importlib import metadata  # here: a checkout needs none (tests/unit/cli/test_imports.py)

    try:
        files = metadata.files("taskfarmer") or []
    except metadata.PackageNotFoundError:
        return None
    for item in files:
        if item.parts[-3:-1] == ("taskfarmer", name) and item.name.endswith(".ini"):
            return Path(str(item.locate())).resolve().parent
    return None


def search_directories(kind: Kind, environ: Mapping[str, str], cwd: Path) -> list[Path]:
    """The directories definitions of ``kind`` are read from, earliest (weakest) first."""
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    shipped = shipped_directory(kind.directory)
    return [
        *([shipped] if shipped is not None else []),
        home / ".pytaskfarmer" / kind.directory,
        home / ".taskfarmer" / kind.directory,
        cwd / kind.directory,
    ]
