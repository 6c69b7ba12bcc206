"""Exceptions raised by the taskfarmer library, and the exit codes of the ``farmer`` command.

Each error carries its data as attributes; only :mod:`taskfarmer.cli` turns them into messages
for people. ``str(error)`` is a one-line description naming the file, line or option at fault.

The hierarchy::

    TaskfarmerError            every error raised on purpose (exit code 2)
    ├── TasklistError          a tasklist cannot be read, or a line is not a task
    ├── StateError             a workdir state file is malformed
    │   ├── WorkdirError       the workdir cannot be created or written
    │   └── FilesystemError    a filesystem call failed (disk full, quota, I/O error...)
    ├── LockError              the workdir lock did not keep another farmer out
    ├── HaltedError            the workdir's farm was halted (--halt): exit code 5
    ├── ConfigError            a runner or tasklist definition, or an option, is unusable
    ├── UsageError             a command-line argument cannot be understood
    ├── InstallError           the installation is broken
    └── QuarantinedError       this node is quarantined: farmers do not start on it (exit 6)
"""

from __future__ import annotations

import enum
import functools
import time
from pathlib import Path
from typing import Any, Callable, TypeVar


class ExitCode(enum.IntEnum):
    """What ``farmer`` (a farm run or ``--status``) exits with; job scripts depend on it."""

    #: Done: every task finished.
    OK = 0
    #: Done: every task ran, some failed.
    FAILED = 1
    #: An error (bad input, filesystem, lock); work may be left.
    ERROR = 2
    #: Stopped (signal, ``--timeout``, job end) or, for ``--status``, work left.
    STOPPED = 3
    #: ``--verify``: the workdir is inconsistent (a task lost, recorded twice ...).
    INCONSISTENT = 4
    #: Halted by ``--halt`` (this farmer's rule or another's), work left; or the workdir is
    #: halted: fix the cause, remove ``WORKDIR/halted``, run again.
    HALTED = 5
    #: This node is quarantined (its tasks failed fast while they succeed elsewhere): the
    #: farmer handed its tasks back, or did not start; work is left for other nodes.
    QUARANTINED = 6


class TaskfarmerError(Exception):
    """Base class of every error the library raises on purpose."""

    #: What the ``farmer`` command exits with on this error.
    exit_code = ExitCode.ERROR


class TasklistError(TaskfarmerError):
    """A tasklist cannot be read or has a line that is not a task.

    Attributes:
        path: the tasklist file.
        line: 1-based line number of the offending line, or None for the whole file.
        reason: what is wrong.
    """

    def __init__(self, path: Path, reason: str, line: int | None = None) -> None:
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
        line: 1-based number of the offending line, where known.
    """

    def __init__(self, path: Path, reason: str, offset: int | None = None,
                 line: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.offset = offset
        self.line = line
        if line is not None:
            where = f"{path}:{line}"
        else:
            where = f"{path} (byte {offset})" if offset is not None else str(path)
        super().__init__(f"{where}: {reason}")


class WorkdirError(StateError):
    """The workdir cannot be created or written."""


class LostWriteError(StateError):
    """A state file ended in bytes no farmer wrote: NUL bytes where a line was (a write-back
    the filesystem lost or zeroed). They were cut off into ``WORKDIR/torn``; what they held is
    unknown, so the farm stops rather than go on over a filesystem that loses writes.

    Attributes:
        path: the state file.
        offset: where the NUL bytes began (the file's size once they were cut).
        fragment: the bytes cut off.
    """

    def __init__(self, path: Path, offset: int, fragment: bytes) -> None:
        self.fragment = fragment
        super().__init__(
            path, f"{len(fragment)} byte(s) no farmer wrote ({fragment.count(0)} NUL): the "
            f"filesystem lost a write; they are cut off into torn, and a task they recorded "
            f"runs again at the next start. Check the workdir's filesystem, then run again",
            offset)


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
                 errno: int | None = None) -> None:
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


class HaltedError(TaskfarmerError):
    """A farmer was started on a workdir whose farm was halted (``--halt``).

    Attributes:
        path: the halt record (``WORKDIR/halted``).
        reason: how and why the farm was halted.
    """

    exit_code = ExitCode.HALTED

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}; fix the cause, then remove {path} to farm on "
                         "(with --requeue-failed to run the failed tasks again)")


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
        path: Path | None = None,
        section: str | None = None,
        option: str | None = None,
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


def as_error(error: TaskfarmerError | OSError, where: Path) -> TaskfarmerError:
    """``error`` as a library error: an ``OSError`` no code turned into a
    :class:`FilesystemError` names its own file (else ``where``) and the operation "access"."""
    if isinstance(error, OSError):
        return FilesystemError.from_oserror(Path(error.filename or where), "access", error)
    return error


F = TypeVar("F", bound=Callable[..., Any])


def operation(what: str, path: Callable[..., Path]) -> Callable[[F], F]:
    """Decorate a method: its ``OSError`` becomes ``FilesystemError(file, what)``.

    An ``OSError`` from a descriptor (``write``, ``pread``, ``fstat``...) carries no file name,
    and none carries what the farmer was doing; this names both (``wd/timeline.json: cannot
    append: No space left on device``), and the farm stops cleanly on it.

    Args:
        what: the operation, as a verb ("append", "read", "update").
        path: called with the method's arguments (``self`` first): the file worked on. The
            error's own file name, where it has one, wins (a directory, a temporary file).
    """
    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except OSError as error:
                where = Path(error.filename) if error.filename else path(*args, **kwargs)
                raise FilesystemError.from_oserror(where, what, error) from None
        return wrapper  # type: ignore[return-value]
    return decorate


class QuarantinedError(TaskfarmerError):
    """This node is quarantined: a farmer on it found its tasks failing fast while they
    succeeded elsewhere (``WORKDIR/quarantine/NODE``), and farmers do not start on it.

    Attributes:
        node: the node.
        path: its quarantine record.
        until: when the quarantine ends (epoch seconds).
        reason: why the node was quarantined.
    """

    exit_code = ExitCode.QUARANTINED

    def __init__(self, node: str, path: Path, until: float, reason: str) -> None:
        self.node = node
        self.path = path
        self.until = until
        self.reason = reason
        end = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until))
        super().__init__(f"node {node} is quarantined until {end} ({reason}); remove {path} "
                         "to farm on it again, or run with --quarantine off")
