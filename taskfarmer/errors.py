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


class FilesystemError(StateError):
    """A filesystem operation on a workdir or lock file failed (disk full, quota, I/O error...).

    The farmer stops cleanly on it (running tasks put back, exit 2); no task is lost or
    recorded twice.

    Attributes:
        path: the file or directory the operation was on.
        operation: what was being done, as a verb phrase ("append", "create", "rename to X").
        errno: the ``errno`` of the failure (``None`` if not an ``OSError``).
        reason: the system's description of the failure ("No space left on device").
    """

    def __init__(self, path: Path, operation: str, reason: str,
                 errno: Optional[int] = None) -> None:
        self.operation = operation
        self.errno = errno
        super().__init__(path, f"cannot {operation}: {reason}")

    @classmethod
    def from_oserror(cls, path: Path, operation: str, error: OSError) -> FilesystemError:
        """The error for ``error`` raised by ``operation`` on ``path``."""
        return cls(path, operation, error.strerror or str(error), error.errno)


class LockError(TaskfarmerError):
    """The workdir lock let another farmer change the state while we held it.

    Attributes:
        lock_file: the lock file we hold.
        other: who else was in (``host:pid``), as it wrote itself into ``WORKDIR/holder``.
        other_lock_file: the lock file that one holds ("" if unknown).
    """

    def __init__(self, lock_file: str, other: str, other_lock_file: str) -> None:
        self.lock_file = lock_file
        self.other = other
        self.other_lock_file = other_lock_file
        scratch = "SCRATCH differs between the farmers of this workdir (give them all the same)"
        local = ("the lock file is not shared by the nodes (SCRATCH node-local?) or its "
                 "filesystem does not lock across nodes (NFS mounted with nolock? Lustre with "
                 "localflock?): use a shared SCRATCH where locks work, or --lock soft")
        if not other_lock_file:
            cause = f"{scratch}, or {local}"
        elif other_lock_file != lock_file:
            cause = f"it locks {other_lock_file} instead: {scratch}"
        else:
            cause = local
        super().__init__(f"the lock {lock_file} did not keep out another farmer ({other}); "
                         f"{cause}")


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
