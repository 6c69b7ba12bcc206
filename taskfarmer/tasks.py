"""Tasks and tasklist handlers: how a tasklist file becomes tasks, and a task a command.

A handler is chosen with ``--tasklist NAME``. The default, :class:`ListTaskList`, reads one
command per line; :class:`TemplateTaskList` reads one input (a file, usually) per line and
puts it into a command template. A handler for your own format subclasses :class:`TaskList`
and overrides :meth:`TaskList.lines` (which lines of the file are tasks) and/or
:meth:`TaskList.command` (what command runs for a task). Handlers are constructed with the
keyword arguments of their INI section, as strings.
"""

from __future__ import annotations

import os
import shlex
import stat
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import ConfigError, FilesystemError, TasklistError
from .ini import flag

#: The longest tasklist line, in bytes (its newline not counted). A longer line is refused when
#: the list is read, with its line number: lines are read at most this long at a time, so no
#: file, however long its lines (``/dev/zero`` has one without end), makes a farmer read without
#: end or fill its memory. No shell could run such a line anyway: Linux refuses a single
#: argument over 128 KiB (``/bin/sh -c LINE`` fails with E2BIG).
MAX_LINE = 1 << 20


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

    def prepare(self, tasklist: Path, workdir: Path) -> None:
        """Called once by the farm, in the farmer's main process before its workers start and
        before :meth:`lines`, with the workdir created: nothing by default (the adapter of
        PyTaskFarmer's handlers builds the handler here)."""

    def lines(self, path: Path) -> Iterator[str]:
        """The task lines of ``path`` in order.

        Blank lines and lines starting with ``#`` are not tasks. Surrounding whitespace and
        CRLF line ends are stripped. The last line is a task also without its newline, as
        PyTaskFarmer's ``readlines()`` had it. The file is opened by this call, so a missing
        or unreadable tasklist is reported before anything else happens; the lines are read
        as the result is iterated.

        Raises:
            TasklistError: the file cannot be read, or a line is not valid UTF-8, holds a
                NUL byte (a shell cannot run it) or is longer than :data:`MAX_LINE`.
        """
        return self._read(path, self.open(path))

    @staticmethod
    def open(path: Path) -> BinaryIO:
        """``path`` opened for reading: a regular file.

        A FIFO, a device or a socket is refused without blocking (``O_NONBLOCK``: opening a
        FIFO would wait for a writer): a farm reads its list again at every start and looks
        for appended lines while it runs, which only a file allows.

        Raises:
            TasklistError: it is missing, not a regular file or unreadable.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise TasklistError(path, "no such tasklist") from None
        except OSError as error:
            raise TasklistError(path, f"cannot read tasklist: {error.strerror}") from None
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            os.close(fd)
            raise
        if not stat.S_ISREG(mode):
            os.close(fd)
            if stat.S_ISDIR(mode):
                raise TasklistError(path, "is a directory, not a tasklist")
            raise TasklistError(path, (
                f"is {_file_kind(mode)}, not a regular file: a farm reads its tasklist again "
                "when it continues; save it to a file, or give it on standard input as '-' "
                "with --workdir"))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    @staticmethod
    def _read(path: Path, handle: BinaryIO) -> Iterator[str]:
        with handle:
            yield from TaskList.parse(path, raw_lines(handle))

    @staticmethod
    def parse(path: Path, raw_lines: Iterable[bytes], first: int = 1) -> Iterator[str]:
        """The task lines among ``raw_lines`` of ``path``, the first being line ``first``
        (the rules of :meth:`lines`; line numbers are for messages)."""
        number = first - 1
        try:
            for number, raw in enumerate(raw_lines, start=first):
                check_length(path, raw, number)
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
            raise FilesystemError.from_oserror(path, f"read line {number + 1}", error) from None

    @property
    def grows(self) -> bool:
        """True if lines appended to the list are imported as new tasks: the handler keeps
        :meth:`lines`, so any part of the file can be read with :meth:`parse`. A handler that
        overrides :meth:`lines` has its list read once, when the workdir is made."""
        return type(self).lines is TaskList.lines

    def command(self, task: Task) -> str:
        """The shell command that runs ``task`` (the line itself by default)."""
        return task.text


def check_length(path: Path, raw: bytes, number: int) -> None:
    """Refuse line ``number`` of ``path``, ``raw`` (maybe without its newline, or the first
    piece :func:`raw_lines` gave of it), if it is longer than :data:`MAX_LINE`.

    Raises:
        TasklistError: it is.
    """
    if len(raw) - raw.endswith(b"\n") > MAX_LINE:
        raise TasklistError(path, (f"line is longer than {MAX_LINE} bytes (1 MiB), the limit "
                                   "of a tasklist line"), line=number)


def raw_lines(handle: BinaryIO) -> Iterator[bytes]:
    """The lines of ``handle`` from its position, in bounded memory: a line longer than
    :data:`MAX_LINE` comes in pieces, the first of which :meth:`TaskList.parse` refuses."""
    return iter(partial(handle.readline, MAX_LINE + 2), b"")


def _file_kind(mode: int) -> str:
    """``a FIFO``, ``a character device`` ... for messages."""
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


class ListTaskList(TaskList):
    """The default handler: every line of the tasklist is a shell command."""


#: The placeholders of :class:`TemplateTaskList` and what they hold for the line
#: ``data/run1.root`` (task 7).
PLACEHOLDERS = {
    "line": "the line: data/run1.root",
    "name": "its last path component: run1.root",
    "stem": "that without its last suffix: run1",
    "dir": "the directory part: data (. if none)",
    "id": "the task ID: 7 (a number: {id:04d} gives 0007)",
}


class TemplateTaskList(TaskList):
    """Each line is an input (typically a file); the task is a command template filled in.

    ``command = reco --input {line} --output out/{stem}.root`` runs ``reco --input
    data/run1.root --output out/run1.root`` for the line ``data/run1.root``. The
    placeholders are those of :data:`PLACEHOLDERS`, in Python's ``str.format`` syntax: a
    literal brace is written twice (``awk '{{print $1}}'``, ``${{HOME}}``).

    Args:
        command: the template.
        quote: ``True`` (the default) substitutes shell-quoted values, so a line with spaces
            or ``;`` stays one word and runs nothing; ``False`` substitutes them as they
            are, for lines that hold several arguments.

    Raises:
        ConfigError: the template has an unknown placeholder or is not a valid format
            string.
    """

    def __init__(self, command: str, quote: bool | str = True) -> None:
        self.template = command
        self.quote = flag(quote, "quote")
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(command)
                      if name is not None]
        except ValueError as error:
            raise ConfigError(f"command = {command!r}: {error} (write {{{{ and }}}} for "
                              "literal braces)") from None
        for name in fields:
            if name not in PLACEHOLDERS:
                known = ", ".join(f"{{{key}}}" for key in PLACEHOLDERS)
                raise ConfigError(f"command: unknown placeholder {{{name}}} (known: {known}; "
                                  "write {{ and }} for literal braces)")
        try:
            self.command(Task(0, "dir/example.txt"))
        except (ValueError, TypeError, LookupError) as error:  # a bad {id:spec}, say
            raise ConfigError(f"command = {command!r}: {error}") from None

    def fields(self, task: Task) -> dict[str, int | str]:
        """The placeholder values for ``task`` (strings shell-quoted if :attr:`quote`)."""
        path = PurePosixPath(task.text)
        values = {"line": task.text, "name": path.name, "stem": path.stem,
                  "dir": str(path.parent)}
        if self.quote:
            values = {key: shlex.quote(value) for key, value in values.items()}
        return {**values, "id": task.id}

    def command(self, task: Task) -> str:
        """The template filled in with ``task``'s line."""
        return self.template.format(**self.fields(task))
