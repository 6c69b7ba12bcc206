"""Tasks and tasklist handlers: how a tasklist file becomes tasks, and a task a command.

A handler is chosen with ``--tasklist NAME``. The default, :class:`ListTaskList`, reads one
command per line. A handler for your own format subclasses :class:`TaskList` and overrides
:meth:`TaskList.lines` (which lines of the file are tasks) and/or :meth:`TaskList.command`
(what command runs for a task). Handlers are constructed with the keyword arguments of their
INI section, as strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import TasklistError


@dataclass(frozen=True)
class Task:
    """One task: its ID (0-based position among the tasks of the list) and its line."""

    id: int
    text: str


class TaskList:
    """Base class of tasklist handlers.

    The task text stored in the state files is the tasklist line itself; :meth:`command`
    is applied when the task runs, so ``finished`` and ``failed`` list what the user wrote.
    """

    def lines(self, path: Path) -> Iterator[str]:
        """Yield the task lines of ``path`` in order.

        Blank lines and lines starting with ``#`` are not tasks. Surrounding whitespace and
        CRLF line ends are stripped.

        Raises:
            TasklistError: the file cannot be read, or a line is not valid UTF-8 or holds a
                NUL byte (a shell cannot run it).
        """
        try:
            handle = open(path, "rb")
        except IsADirectoryError:
            raise TasklistError(path, "is a directory, not a tasklist") from None
        except FileNotFoundError:
            raise TasklistError(path, "no such tasklist") from None
        except OSError as error:
            raise TasklistError(path, f"cannot read tasklist: {error.strerror}") from None
        with handle:
            number = 0
            try:
                for number, raw in enumerate(handle, start=1):
                    stripped = raw.strip()
                    if not stripped or stripped.startswith(b"#"):
                        continue
                    if b"\0" in stripped:
                        raise TasklistError(path, "line contains a NUL byte", line=number)
                    try:
                        yield stripped.decode("utf-8")
                    except UnicodeDecodeError:
                        raise TasklistError(path, "line is not valid UTF-8", line=number) from None
            except OSError as error:
                reason = f"read error: {error.strerror}"
                raise TasklistError(path, reason, line=number + 1) from None

    def command(self, task: Task) -> str:
        """The shell command that runs ``task`` (the line itself by default)."""
        return task.text


class ListTaskList(TaskList):
    """The default handler: every line of the tasklist is a shell command."""
