"""Exceptions raised by the taskfarmer library.

Each carries its data as attributes; only :mod:`taskfarmer.cli` turns them into messages
for people. ``str(error)`` is a one-line description naming the file, line or option at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional


class TaskfarmerError(Exception):
    """Base class of every error the library raises on purpose."""


class TasklistError(TaskfarmerError):
    """A tasklist cannot be read or has a line that is not a task.

    Attributes:
        path: the tasklist file.
        line: 1-based line number of the offending line, or None for the whole file.
        reason: what is wrong.
    """

    def __init__(self, path: Path, reason: str, line: Optional[int] = None) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


class StateError(TaskfarmerError):
    """A state file in the workdir is malformed or cannot be read or written.

    Attributes:
        path: the state file or directory.
        reason: what is wrong.
        offset: byte offset of the offending line, where known.
    """

    def __init__(self, path: Path, reason: str, offset: Optional[int] = None) -> None:
        self.path = path
        self.reason = reason
        self.offset = offset
        where = f"{path} (byte {offset})" if offset is not None else str(path)
        super().__init__(f"{where}: {reason}")


class WorkdirError(StateError):
    """The workdir cannot be created or written."""


class ConfigError(TaskfarmerError):
    """A runner or tasklist-handler definition (INI file or option) is unusable.

    Attributes:
        reason: what is wrong.
        path: the INI file, where one is at fault.
        section: the INI section, where one is at fault.
        option: the command-line option, where one is at fault.
    """

    def __init__(
        self,
        reason: str,
        path: Optional[Path] = None,
        section: Optional[str] = None,
        option: Optional[str] = None,
    ) -> None:
        self.reason = reason
        self.path = path
        self.section = section
        self.option = option
        where = []
        if path is not None:
            where.append(str(path))
        if section is not None:
            where.append(f"[{section}]")
        if option is not None:
            where.append(option)
        prefix = " ".join(where)
        super().__init__(f"{prefix}: {reason}" if prefix else reason)


class UsageError(TaskfarmerError):
    """A command-line argument cannot be understood.

    Attributes:
        argument: the argument at fault, as given.
        reason: what is wrong.
    """

    def __init__(self, argument: str, reason: str) -> None:
        self.argument = argument
        self.reason = reason
        super().__init__(f"{argument}: {reason}")


class InstallError(TaskfarmerError):
    """taskfarmer's installation is broken.

    Attributes:
        path: the file that shows it.
        reason: what is wrong and how to repair it.
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{reason} (found {path})")
