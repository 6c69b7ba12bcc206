"""The import of the tasklist: the first read, lines appended later, and edits refused.

Lines appended to TASKLIST are new tasks with the next IDs. Two files remember what was
imported:

``tasklist``
    a copy of the imported part of TASKLIST, appended to as lines are imported.
``imported``
    ``bytes N``, ``lines L``, ``tasks T`` lines: the first ``N`` bytes (``L`` lines, ``T``
    tasks) of TASKLIST are imported, so the next task gets ID ``T``. Replaced by ``rename(2)``
    (atomic); ``fixed yes`` marks a list read once by a handler that does not grow.

An import of the bytes ``[N, N')`` (complete lines, and the list's last line without its
newline once the list is at rest, see :mod:`.tail`; until then that line is left for later; a
line is at most :data:`~taskfarmer.tasks.MAX_LINE` bytes) is, under the lock: (1) append them
to ``tasklist``, (2) append their tasks to ``toprocess`` in one ``write(2)``, (3) rename the
new ``imported`` into place — the commit point. A crash before (3) leaves ``tasklist`` longer
than ``imported`` says: the next import (or farmer start) finds the tasks of that batch
already in the state files (IDs ``>= T`` can come from nowhere else), appends those still
missing, and commits (:meth:`ListImport.recover`). Importing costs O(appended bytes): the
check that the imported part was not changed compares the whole of it with ``tasklist`` when a
farmer starts (a sequential read, as PyTaskFarmer's restart did) and only its last
:data:`TAIL_CHECK` bytes when a running farmer imports growth.

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
from ..tasks import MAX_LINE, Task, TaskList, check_length, raw_lines
from .files import StateFiles, private_tmp, replace_file
from .lines import append, line_ids, task_line
from .listcheck import BLOCK, blocks, changed, continued, count_newlines, first_difference
from .listcheck import open_at as _open_at
from .tail import Batch, RestWatch, split
from .workdir import Workdir

#: Bytes of the imported part compared with the copy when a running farmer imports growth.
TAIL_CHECK = 64 * 1024
#: Bytes imported per batch (one ``write(2)`` to ``toprocess`` each).
BATCH = 16 << 20


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

    def __init__(self, files: StateFiles, rest: RestWatch | None = None) -> None:
        self.files = files
        self.state_path = files.imported
        self.copy_path = files.tasklist
        self.copy_tmp = files.tasklist_tmp
        self.rest = rest or RestWatch()  # is the list at rest (its last line complete)?
        self.refused = False  # a list that changed while we ran: imported from no more

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
        handle = TaskList.open(tasklist)
        added = 0
        with handle:
            try:
                state = self._check(tasklist, handle, state, starting, accept)
                while True:
                    count, state = self._batch(tasklist, handle, state)
                    if count < 0:
                        return added
                    added += count
            except TasklistError:
                self.refused = True  # a farmer that runs goes on without the list
                raise

    def _first(self, tasklist: Path, handler: TaskList) -> int:
        """Make ``toprocess`` and the copy from the whole list (the workdir is new)."""
        files = self.files
        for path in (files.finished, files.failed, files.claims):
            files.create(path)
        if not handler.grows:
            count = self._initialize(handler.lines(tasklist))
            self._commit(Imported(0, 0, count, fixed=True))
            return count
        handle = TaskList.open(tasklist)
        with handle:
            info = os.fstat(handle.fileno())
            end = _complete_end(handle, info.st_size)
            if end < info.st_size:  # the last line has no newline
                if info.st_size - end > MAX_LINE:
                    check_length(tasklist, os.pread(handle.fileno(), MAX_LINE + 1, end),
                                 count_newlines(handle, 0, end) + 1)
                if self.rest.at_rest(info):
                    end = info.st_size
            lines = self._place_copy(handle, end) + _open_at(handle, end)
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
            for block in blocks(handle, 0, end):
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
        """Import up to :data:`BATCH` bytes after ``state``: complete lines, and the list's
        last line without its newline once the list is at rest; (-1, state) if there is
        nothing to import."""
        info = os.fstat(handle.fileno())
        if info.st_size <= state.bytes:
            return -1, state
        data = os.pread(handle.fileno(), min(BATCH, info.st_size - state.bytes), state.bytes)
        whole = (state.bytes + len(data) == info.st_size and not data.endswith(b"\n")
                 and self.rest.at_rest(info))
        batch = split(data, _open_at(handle, state.bytes), whole)
        self._refuse(tasklist, state, batch)
        if not batch.used:
            return -1, state
        data = data[:batch.used]
        texts = list(TaskList.parse(tasklist, batch.lines, state.lines + 1))
        copy_fd = os.open(self.copy_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(copy_fd).st_size != state.bytes:
                os.ftruncate(copy_fd, state.bytes)  # a batch abandoned before its step (2)
            append(copy_fd, self.copy_path, data, open_end=True)  # (1)
        finally:
            os.close(copy_fd)
        tasks = [Task(state.tasks + index, text) for index, text in enumerate(texts)]
        if tasks:
            toprocess = self.files.toprocess
            append(self.files.fd(toprocess), toprocess,
                   b"".join(task_line(task) for task in tasks))  # (2)
        new = Imported(state.bytes + len(data), state.lines + len(batch.lines),
                       state.tasks + len(tasks))
        self._commit(new)  # (3)
        return len(tasks), new

    def _refuse(self, tasklist: Path, state: Imported, batch: Batch) -> None:
        """Refuse text added to an open last line (a line already imported), and a last line
        already longer than a line may be.

        Raises:
            TasklistError: either.
        """
        if batch.continuation.strip():  # the copy ends where state says (recovered)
            raise continued(tasklist, self.copy_path, (state.bytes, state.lines))
        if len(batch.rest) > MAX_LINE:
            first = state.lines + len(batch.lines) + (not batch.in_open_line)
            check_length(tasklist, batch.rest, first)

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
            batch = split(data, _open_at(copy, state.bytes), whole=False)
        texts = list(TaskList.parse(tasklist, batch.lines, state.lines + 1))
        present: set[int] = set()
        for path in (self.files.toprocess, self.files.finished, self.files.failed):
            present.update(i for i in line_ids(path) if i >= state.tasks)
        lines, used = batch.lines, batch.used
        if batch.rest and not batch.in_open_line:
            # A last line taken at rest, if its task went in with the batch (one write);
            # otherwise cut, and imported again (with the same ID) when its time comes.
            tail = list(TaskList.parse(tasklist, [batch.rest], state.lines + len(lines) + 1))
            if tail and state.tasks + len(texts) in present:
                texts, lines, used = texts + tail, [*lines, batch.rest], len(data)
        missing = [Task(state.tasks + index, text) for index, text in enumerate(texts)
                   if state.tasks + index not in present]
        if missing:
            toprocess = self.files.toprocess
            append(self.files.fd(toprocess), toprocess,
                   b"".join(task_line(task) for task in missing))
        os.truncate(self.copy_path, state.bytes + used)
        new = Imported(state.bytes + used, state.lines + len(lines), state.tasks + len(texts))
        self._commit(new)
        return new

    # -- checking the imported part ------------------------------------------------------------

    def _check(self, tasklist: Path, handle: BinaryIO, state: Imported, starting: bool,
               accept: bool) -> Imported:
        """Compare the imported part of the list with the copy; refuse or ``accept`` changes."""
        size = os.fstat(handle.fileno()).st_size
        start = 0 if starting else max(0, state.bytes - TAIL_CHECK)
        difference = first_difference(self.copy_path, handle, start, min(size, state.bytes))
        if difference is None and size >= state.bytes:
            return state
        if accept:
            return self._accept(tasklist, handle, state)
        raise changed(tasklist, self.files.workdir, self.copy_path, handle,
                      (state.bytes, state.lines), difference)

    def _accept(self, tasklist: Path, handle: BinaryIO, state: Imported) -> Imported:
        """Take the list as it is now: its first ``state.lines`` lines count as imported (the
        last of them also without its newline, as it may have been imported)."""
        end, lines = 0, 0
        handle.seek(0)
        for raw in raw_lines(handle):
            if lines == state.lines:
                break
            lines += 1
            check_length(tasklist, raw, lines)
            end += len(raw)
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
        handle = TaskList.open(tasklist)
        with handle:
            end, lines, found = 0, 0, 0
            for raw in raw_lines(handle):  # the last one may have no newline: it was a task
                if found >= tasks:
                    break
                lines += 1
                end += len(raw)
                found += len(list(TaskList.parse(tasklist, [raw], lines)))
            if found < tasks:
                raise TasklistError(tasklist, (
                    f"has fewer than the {tasks} tasks of {files.workdir}: use a new "
                    "--workdir"), line=lines + 1)
            self._place_copy(handle, end)
        state = Imported(end, lines, tasks)
        self._commit(state)
        return state

    def unimported_bytes(self, tasklist: Path) -> int:
        """Bytes of TASKLIST beyond the imported part (no lock; 0 for a list read once, or
        :attr:`refused`)."""
        state = self.state()
        if state is None or state.fixed or self.refused:
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


def _bounded(handle: BinaryIO, end: int) -> Iterator[bytes]:
    """The lines of ``handle`` from its position up to byte ``end`` (:func:`raw_lines`)."""
    position = handle.tell()
    for line in raw_lines(handle):
        if position >= end:
            return
        position += len(line)
        yield line
