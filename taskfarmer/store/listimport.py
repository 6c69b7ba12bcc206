"""The import of the tasklist: the first read, lines appended later, and edits refused.

Lines appended to TASKLIST are new tasks with the next IDs. Two files remember what was
imported:

``tasklist``
    a copy of the imported part of TASKLIST (whole lines), appended to as lines are imported.
``imported``
    ``bytes N``, ``lines L``, ``tasks T`` lines: the first ``N`` bytes (``L`` lines, ``T``
    tasks) of TASKLIST are imported, so the next task gets ID ``T``. Replaced by ``rename(2)``
    (atomic); ``fixed yes`` marks a list read once by a handler that does not grow.

An import of the bytes ``[N, N')`` (complete lines only: a line without its newline yet is left
for later) is, under the lock: (1) append them to ``tasklist``, (2) append their tasks to
``toprocess`` in one ``write(2)``, (3) rename the new ``imported`` into place — the commit
point. A crash before (3) leaves ``tasklist`` longer than ``imported`` says: the next import
(or farmer start) finds the tasks of that batch already in the state files (IDs ``>= T`` can
come from nowhere else), appends those still missing, and commits (:meth:`ListImport.recover`).
Importing costs O(appended bytes): the check that the imported part was not changed compares
the whole of it with ``tasklist`` when a farmer starts (a sequential read, as PyTaskFarmer's
restart did) and only its last :data:`TAIL_CHECK` bytes when a running farmer imports growth.

A changed or shorter imported part (an edit, a reordering, another list on the same workdir)
raises :class:`~taskfarmer.errors.TasklistError` naming the first differing line, unless
``accept`` takes the list as it is now: its first ``L`` lines count as imported, whatever they
say, and only lines after them are new.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import StateError, TasklistError
from ..tasks import Task, TaskList
from .files import StateFiles, private_tmp, replace_file
from .lines import append, line_ids, task_line
from .workdir import Workdir

#: Bytes of the imported part compared with the copy when a running farmer imports growth.
TAIL_CHECK = 64 * 1024
#: Bytes imported per batch (one ``write(2)`` to ``toprocess`` each).
BATCH = 16 << 20
#: Block size of comparisons and copies.
BLOCK = 1 << 20


@dataclass(frozen=True)
class Imported:
    """How much of the tasklist is imported."""

    bytes: int
    lines: int
    tasks: int
    fixed: bool = False
    accepting: bool = False  # --accept-list: tasklist.tmp is the new copy, not yet renamed

    def to_text(self) -> str:
        """The content of the ``imported`` file."""
        text = f"bytes {self.bytes}\nlines {self.lines}\ntasks {self.tasks}\n"
        return (text + ("fixed yes\n" if self.fixed else "")
                + ("accepting yes\n" if self.accepting else ""))


class ListImport:
    """Imports TASKLIST into ``toprocess`` (see the module docstring)."""

    def __init__(self, files: StateFiles) -> None:
        self.files = files
        self.state_path = files.imported
        self.copy_path = files.tasklist
        self.copy_tmp = files.tasklist_tmp

    # -- the state file ------------------------------------------------------------------------

    def state(self) -> Imported | None:
        """What ``imported`` says, or None if there is no such file."""
        try:
            text = self.state_path.read_text()
        except FileNotFoundError:
            return None
        items = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
        try:
            return Imported(int(items["bytes"]), int(items["lines"]), int(items["tasks"]),
                            items.get("fixed") == "yes", items.get("accepting") == "yes")
        except (KeyError, ValueError):
            raise StateError(self.state_path, f"malformed: {text[:80]!r}") from None

    def _commit(self, state: Imported) -> None:
        """Replace ``imported``: write a temporary file, fsync, ``rename(2)`` (atomic)."""
        replace_file(self.state_path, state.to_text().encode())

    # -- importing -----------------------------------------------------------------------------

    def update(self, tasklist: Path, handler: TaskList, starting: bool, accept: bool = False
               ) -> int:
        """*locked* Import what TASKLIST has beyond the imported part. Returns the number of
        new tasks.

        ``starting``: a farmer starts; the whole imported part is compared with the copy
        (else only its tail). A workdir with ``toprocess`` but no ``claims`` was made by
        PyTaskFarmer and is left alone here. A list that no longer exists adds nothing (the
        workdir holds all that is left to do).

        Raises:
            TasklistError: the list cannot be read, or its imported part changed (and not
                ``accept``).
        """
        files = self.files
        if files.toprocess.exists() and not files.claims.exists():
            return 0
        state = self.state()
        if state is None:
            if files.toprocess.exists():
                state = self._adopt(tasklist, handler)
            else:
                return self._first(tasklist, handler)
        if state.fixed or not tasklist.exists():
            return 0  # a list read once, or gone: the workdir alone says what is left
        if state.accepting:
            state = self._finish_accept(state)
        state = self.recover(tasklist, state)
        handle = _open_list(tasklist)
        with handle:
            state = self._check(tasklist, handle, state, starting, accept)
            added = 0
            while True:
                count, state = self._batch(tasklist, handle, state)
                if count < 0:
                    return added
                added += count

    def _first(self, tasklist: Path, handler: TaskList) -> int:
        """Make ``toprocess`` and the copy from the whole list (the workdir is new)."""
        files = self.files
        for path in (files.finished, files.failed, files.claims):
            files.create(path)
        if not handler.grows:
            count = self._initialize(handler.lines(tasklist))
            self._commit(Imported(0, 0, count, fixed=True))
            return count
        handle = _open_list(tasklist)
        with handle:
            end = _complete_end(handle, os.fstat(handle.fileno()).st_size)
            lines = self._place_copy(handle, end)
            handle.seek(0)
            count = self._initialize(TaskList.parse(tasklist, _bounded(handle, end)))
        self._commit(Imported(end, lines, count))
        return count

    def _place_copy(self, handle: BinaryIO, end: int) -> int:
        """Write the list's first ``end`` bytes to the copy ``tasklist`` through a private
        temporary file (:func:`private_tmp`); returns their number of lines."""
        tmp = private_tmp(self.copy_path)
        try:
            lines = self._copy_prefix(handle, end, tmp)
            os.rename(tmp, self.copy_path)
        finally:
            tmp.unlink(missing_ok=True)
        return lines

    def _copy_prefix(self, handle: BinaryIO, end: int, tmp: Path | None = None) -> int:
        """Write the list's first ``end`` bytes to ``tmp`` (default ``tasklist.tmp``,
        fsynced, to be renamed into place); returns their number of lines."""
        lines = 0
        with open(tmp or self.copy_tmp, "wb") as out:
            for block in _blocks(handle, 0, end):
                out.write(block)
                lines += block.count(b"\n")
            out.flush()
            os.fsync(out.fileno())
        return lines

    def _initialize(self, texts: Iterable[str]) -> int:
        """Write ``toprocess`` (atomically, :meth:`Workdir.initialize`); returns the count."""
        counted = _Counted(texts)
        Workdir(self.files).initialize(counted)
        return counted.count

    def _batch(self, tasklist: Path, handle: BinaryIO, state: Imported
               ) -> tuple[int, Imported]:
        """Import up to :data:`BATCH` bytes of complete lines after ``state``; (-1, state) if
        there are none."""
        size = os.fstat(handle.fileno()).st_size
        data = os.pread(handle.fileno(), min(BATCH, size - state.bytes), state.bytes) \
            if size > state.bytes else b""
        data = data[: data.rfind(b"\n") + 1]
        if not data:
            return -1, state
        texts = list(TaskList.parse(tasklist, data.splitlines(keepends=True), state.lines + 1))
        copy_fd = os.open(self.copy_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(copy_fd).st_size != state.bytes:
                os.ftruncate(copy_fd, state.bytes)  # a batch abandoned before its step (2)
            append(copy_fd, self.copy_path, data)  # (1)
        finally:
            os.close(copy_fd)
        tasks = [Task(state.tasks + index, text) for index, text in enumerate(texts)]
        if tasks:
            toprocess = self.files.toprocess
            append(self.files.fd(toprocess), toprocess,
                   b"".join(task_line(task) for task in tasks))  # (2)
        new = Imported(state.bytes + len(data), state.lines + data.count(b"\n"),
                       state.tasks + len(tasks))
        self._commit(new)  # (3)
        return len(tasks), new

    def recover(self, tasklist: Path, state: Imported) -> Imported:
        """*locked* Finish an import that a crash cut short between its steps (1) and (3).

        The copy is longer than ``imported`` says. The tasks of those bytes have IDs from
        ``state.tasks`` on, which nothing else uses: those found in the state files went in;
        the others are appended now. O(state) — done only after a crash.
        """
        try:
            size = self.copy_path.stat().st_size
        except FileNotFoundError:
            return state
        if size <= state.bytes:
            return state
        with open(self.copy_path, "rb") as copy:
            data = os.pread(copy.fileno(), size - state.bytes, state.bytes)
        data = data[: data.rfind(b"\n") + 1]
        texts = list(TaskList.parse(tasklist, data.splitlines(keepends=True), state.lines + 1))
        present: set[int] = set()
        for path in (self.files.toprocess, self.files.finished, self.files.failed):
            present.update(i for i in line_ids(path) if i >= state.tasks)
        missing = [Task(state.tasks + index, text) for index, text in enumerate(texts)
                   if state.tasks + index not in present]
        if missing:
            toprocess = self.files.toprocess
            append(self.files.fd(toprocess), toprocess,
                   b"".join(task_line(task) for task in missing))
        os.truncate(self.copy_path, state.bytes + len(data))
        new = Imported(state.bytes + len(data), state.lines + data.count(b"\n"),
                       state.tasks + len(texts))
        self._commit(new)
        return new

    # -- checking the imported part ------------------------------------------------------------

    def _check(self, tasklist: Path, handle: BinaryIO, state: Imported, starting: bool,
               accept: bool) -> Imported:
        """Compare the imported part of the list with the copy; refuse or ``accept`` changes."""
        size = os.fstat(handle.fileno()).st_size
        start = 0 if starting else max(0, state.bytes - TAIL_CHECK)
        difference = self._first_difference(handle, start, min(size, state.bytes))
        if difference is None and size >= state.bytes:
            return state
        if accept:
            return self._accept(handle, state)
        with open(self.copy_path, "rb") as copy:
            if difference is None:  # the list is shorter
                line = state.lines - _count(copy, size, state.bytes) + 1
                was = _line_at(copy, size)
                raise TasklistError(tasklist, (
                    f"the list is shorter than the {state.lines} lines imported into "
                    f"{self.files.workdir} (line {line} was {was!r}): use a new --workdir, or "
                    "--accept-list to take the list as it is now"), line=line)
            line = _count(handle, 0, difference) + 1
            was, now = _line_at(copy, difference), _line_at(handle, difference)
        raise TasklistError(tasklist, (
            f"differs from the list imported into {self.files.workdir} (was {was!r}, now "
            f"{now!r}): use a new --workdir, or --accept-list to take the list as it is now"),
            line=line)

    def _first_difference(self, handle: BinaryIO, start: int, end: int) -> int | None:
        """Offset of the first byte in ``[start, end)`` where the list and the copy differ."""
        try:
            copy = open(self.copy_path, "rb")
        except FileNotFoundError:
            raise StateError(self.copy_path, "missing (the copy of the imported list)") from None
        with copy:
            if os.fstat(copy.fileno()).st_size < end:
                raise StateError(self.copy_path, "shorter than 'imported' says")
            position = start
            while position < end:
                length = min(BLOCK, end - position)
                mine = os.pread(handle.fileno(), length, position)
                theirs = os.pread(copy.fileno(), length, position)
                if mine != theirs:
                    index = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b)
                    return position + index
                position += length
        return None

    def _accept(self, handle: BinaryIO, state: Imported) -> Imported:
        """Take the list as it is now: its first ``state.lines`` lines count as imported."""
        size = os.fstat(handle.fileno()).st_size
        end, lines = 0, 0
        for block in _blocks(handle, 0, _complete_end(handle, size)):
            for line in block.splitlines(keepends=True):
                if lines == state.lines:
                    break
                end += len(line)
                lines += 1
            if lines == state.lines:
                break
        self._copy_prefix(handle, end)
        # Three steps, so that a crash leaves a state the next import completes: (1) the new
        # copy is complete in tasklist.tmp; (2) ``imported`` says so (``accepting``); (3) the
        # copy is renamed into place and ``imported`` written without the mark.
        self._commit(Imported(end, lines, state.tasks, accepting=True))
        return self._finish_accept(Imported(end, lines, state.tasks))

    def _finish_accept(self, state: Imported) -> Imported:
        if self.copy_tmp.exists():
            os.rename(self.copy_tmp, self.copy_path)
        new = Imported(state.bytes, state.lines, state.tasks)
        self._commit(new)
        return new

    def _adopt(self, tasklist: Path, handler: TaskList) -> Imported:
        """A workdir made before imports were remembered: its tasks are the first ``max ID +
        1`` tasks of the list. O(list), once."""
        files = self.files
        if not handler.grows:
            state = Imported(0, 0, 0, fixed=True)
            self._commit(state)
            return state
        tasks = 1 + max((max(line_ids(path), default=-1)
                         for path in (files.toprocess, files.finished, files.failed)),
                        default=-1)
        handle = _open_list(tasklist)
        with handle:
            end, lines, found = 0, 0, 0
            while found < tasks:
                raw = handle.readline()
                if not raw.endswith(b"\n"):
                    raise TasklistError(tasklist, (
                        f"has fewer than the {tasks} tasks of {files.workdir}: use a new "
                        "--workdir"), line=lines + 1)
                lines += 1
                end += len(raw)
                found += len(list(TaskList.parse(tasklist, [raw], lines)))
            self._place_copy(handle, end)
        state = Imported(end, lines, tasks)
        self._commit(state)
        return state

    def unimported_bytes(self, tasklist: Path) -> int:
        """Bytes of TASKLIST beyond the imported part (no lock; 0 for a list read once)."""
        state = self.state()
        if state is None or state.fixed:
            return 0
        try:
            return max(0, tasklist.stat().st_size - state.bytes)
        except OSError:
            return 0


class _Counted:
    """Iterates ``texts`` and counts them."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = texts
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        for text in self.texts:
            self.count += 1
            yield text


def _open_list(tasklist: Path) -> BinaryIO:
    try:
        return open(tasklist, "rb")
    except OSError as error:
        raise TasklistError(tasklist, f"cannot read tasklist: {error.strerror}") from None


def _complete_end(handle: BinaryIO, size: int) -> int:
    """The end of the last complete line of the first ``size`` bytes."""
    position = size
    while position > 0:
        start = max(0, position - BLOCK)
        block = os.pread(handle.fileno(), position - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def _blocks(handle: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    position = start
    while position < end:
        block = os.pread(handle.fileno(), min(BLOCK, end - position), position)
        if not block:
            return
        yield block
        position += len(block)


def _bounded(handle: BinaryIO, end: int) -> Iterator[bytes]:
    """The lines of ``handle`` from its position up to byte ``end``."""
    position = handle.tell()
    for line in handle:
        if position >= end:
            return
        position += len(line)
        yield line


def _count(handle: BinaryIO, start: int, end: int) -> int:
    return sum(block.count(b"\n") for block in _blocks(handle, start, end))


def _line_at(handle: BinaryIO, offset: int) -> str:
    """The line that contains byte ``offset`` (for messages; at most 200 characters)."""
    start = max(0, offset - 4096)
    before = os.pread(handle.fileno(), offset - start, start)
    after = os.pread(handle.fileno(), 4096, offset)
    line = before[before.rfind(b"\n") + 1:] + after.split(b"\n", 1)[0]
    return line.decode("utf-8", "replace")[:200]
