"""The claims ledger: the cursor in ``toprocess``, taking tasks, putting them back."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable
from typing import Callable

from ..errors import LostWriteError, StateError
from ..tasks import MAX_LINE, Task
from .files import StateFiles
from .lines import (
    MALFORMED_HINT,
    READ_CHUNK,
    append,
    complete_end,
    cut_incomplete_line,
    drop_cached_pages,
    ends_a_line,
    last_line,
    line_ids,
    line_number,
    lines,
    lost_write,
    parse_task_line,
    task_line,
)

#: How much of ``toprocess`` one claim reads at the cursor (grown for longer lines).
CLAIM_READ = 4096
#: The longest ``toprocess`` line: a tasklist line at its limit, its ID, a space and the
#: newline. The read at the cursor grows up to this and no further.
LONGEST_LINE = MAX_LINE + 64
#: The most tasks one claim takes (one ``claims`` write; ``--status`` relies on the bound).
MAX_CLAIM = 256
#: The ``claims`` line that marks a compaction in progress.
COMPACT_MARK = b"- compact"
#: How long an incomplete last line of ``toprocess`` may stay unchanged before it is cut off.
INCOMPLETE_WAIT = 10.0


class Ledger:
    """``toprocess`` and ``claims``: which tasks are taken, by which lease, up to where."""

    def __init__(self, files: StateFiles,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.files = files
        self.monotonic = monotonic
        self._incomplete: tuple[int, float] | None = None  # (size of toprocess, seen since)

    def cursor(self) -> int:
        """*locked* Byte offset in ``toprocess`` of the first task not yet taken."""
        claims = self.files.claims
        fd = self.files.fd(claims)
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        last = last_line(fd, size)
        if last == COMPACT_MARK:
            self.finish_compaction()
            return 0
        cursor = _claim_end(last)
        if cursor is None:
            # Asked again without this node's cached pages: an NFS client that kept a page
            # another node's claim made stale reads that claim as NUL bytes (seen in the NFS
            # lab on NFSv4.2, flock, 2 nodes x 4 farmers: a farmer stopped on it).
            drop_cached_pages(fd)
            size = os.fstat(fd).st_size
            last = last_line(fd, size)
            cursor = _claim_end(last)
        if cursor is None:
            raise StateError(claims, f"malformed last line {last[:60]!r}", size)
        return cursor

    def peek_cursor(self) -> int | None:
        """The cursor read without the lock, for displays; None during a compaction."""
        try:
            with open(self.files.claims, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                last = last_line(handle.fileno(), size) if size else b"0"
            return int(last.rsplit(b" ", 1)[-1])
        except (OSError, IndexError, ValueError):
            return None

    def pending_count(self, limit: int) -> int:
        """*locked* How many tasks wait in ``toprocess``, counting no further than ``limit``."""
        cursor = self.cursor()  # first: it may finish a compaction, which replaces toprocess
        fd = self.files.fd(self.files.toprocess)
        size = os.fstat(fd).st_size
        count = 0
        while cursor < size and count < limit:
            block = os.pread(fd, min(READ_CHUNK, size - cursor), cursor)
            count += block.count(b"\n")
            cursor += len(block)
        return min(count, limit)

    def pending(self) -> bool:
        """*locked* True if some task is waiting in ``toprocess``.

        A last line without its newline is not a task (yet). Every writer appends whole lines
        under the lock, so such a line is either being added by hand or the trace of a writer
        that died in the middle of a write (a node crash, a torn write on NFS). It counts as
        pending — the farmer waits — while it changes, but not for ever: once it has stayed
        the same for :data:`INCOMPLETE_WAIT` seconds it is cut off into ``torn``, as at start-up.
        """
        toprocess = self.files.toprocess
        cursor = self.cursor()  # first: it may finish a compaction, which replaces toprocess
        fd = self.files.fd(toprocess)
        size = os.fstat(fd).st_size
        if size <= cursor:
            return False
        if ends_a_line(fd, size):  # (asked again without cached pages if not)
            return True
        if complete_end(fd, cursor, size) > cursor:
            return True  # complete lines come before the incomplete one
        now = self.monotonic()
        if self._incomplete is None or self._incomplete[0] != size:
            self._incomplete = (size, now)
            return True
        if now - self._incomplete[1] < INCOMPLETE_WAIT:
            return True
        self._incomplete = None
        fragment = cut_incomplete_line(toprocess, self.files.torn)
        if fragment is not None and lost_write(fragment):
            raise LostWriteError(toprocess, self.files.size(toprocess), fragment)
        return self.files.size(toprocess) > cursor

    def take(self, name: str, count: int) -> list[Task]:
        """*locked* Take up to ``count`` tasks (at most :data:`MAX_CLAIM`) from the front of
        ``toprocess`` for lease ``name``: read a chunk at the cursor, append one claim line per
        task, all with one write."""
        count = min(count, MAX_CLAIM)
        toprocess = self.files.toprocess
        cursor = self.cursor()  # first: it may finish a compaction, which replaces toprocess
        fd = self.files.fd(toprocess)
        size = os.fstat(fd).st_size
        tasks: list[Task] = []
        records: list[bytes] = []
        lease = name.encode()
        chunk = CLAIM_READ
        while cursor < size and len(tasks) < count:
            data = os.pread(fd, min(chunk, size - cursor), cursor)
            start = 0
            while len(tasks) < count:
                end = data.find(b"\n", start)
                if end < 0:
                    break
                task = parse_task_line(data[start:end], toprocess, cursor + start)
                tasks.append(task)
                records.append(b"%d %s %d\n" % (task.id, lease, cursor + end + 1))
                start = end + 1
            if start == 0:  # no complete line in the chunk
                if cursor + len(data) >= size:
                    break  # a line still being appended by hand: not a task yet
                if len(data) >= LONGEST_LINE:  # reading the same chunk again would not end
                    raise StateError(toprocess, (
                        f"line longer than {LONGEST_LINE} bytes (no task line is: tasklist "
                        f"lines are at most {MAX_LINE}): {MALFORMED_HINT}"), cursor,
                        line_number(toprocess, cursor))
            # Double the next read, whether this one held no whole line or too few: a chunk
            # of 256 short lines is a few reads (each an NFS round trip), not one per 4 KiB.
            chunk = min(chunk * 2, LONGEST_LINE)
            cursor += start
        if records:
            append(self.files.fd(self.files.claims), self.files.claims, b"".join(records))
        return tasks

    def requeue(self, tasks: Iterable[Task]) -> None:
        """*locked* Append tasks to ``toprocess`` to be taken again."""
        data = b"".join(task_line(task) for task in tasks)
        if data:
            append(self.files.fd(self.files.toprocess), self.files.toprocess, data)

    def queued_ids(self) -> set[int]:
        """*locked* The IDs of the tasks after the cursor."""
        return set(line_ids(self.files.toprocess, start=self.cursor()))

    def running_tasks(self, name: str) -> list[Task]:
        """*locked* Tasks whose last claim is by lease ``name`` and which are not done/queued
        (see :meth:`unsettled`)."""
        wanted = name.encode()
        return self.unsettled(lambda lease: lease == wanted)

    def unsettled(self, claimed_by: Callable[[bytes], bool]) -> list[Task]:
        """*locked* Tasks whose last claim names a lease ``claimed_by`` accepts and which are
        in none of ``finished``, ``failed`` and the untaken part of ``toprocess``.

        Scans ``claims``, ``finished``, ``failed`` and ``toprocess``: O(size of the state), done
        only when recovering a lease or at rest, never per task.
        """
        files = self.files
        cursor = self.cursor()  # first: it may finish a compaction, which empties claims
        owned: set[int] = set()
        for offset, line in lines(files.claims):
            if line == COMPACT_MARK:
                continue
            fields = line.split(b" ")
            if len(fields) != 3 or not fields[0].isdigit():
                raise StateError(files.claims, f"malformed line {line[:60]!r}", offset)
            if claimed_by(fields[1]):
                owned.add(int(fields[0]))
            else:
                owned.discard(int(fields[0]))
        if not owned:
            return []
        for path in (files.finished, files.failed):
            owned.difference_update(line_ids(path))
        owned.difference_update(line_ids(files.toprocess, start=cursor))
        found: dict[int, Task] = {}
        for offset, line in lines(files.toprocess, end=cursor):
            head = line.partition(b" ")[0]
            if head.isdigit() and int(head) in owned:
                found[int(head)] = parse_task_line(line, files.toprocess, offset)
        return [found[task_id] for task_id in sorted(found)]

    def commit_compaction(self) -> None:
        """*locked* Mark a compaction as committed (``toprocess.new`` is complete) and finish it.

        After the mark, whoever reads the cursor next finishes the compaction.
        """
        append(self.files.fd(self.files.claims), self.files.claims, COMPACT_MARK + b"\n")
        self.finish_compaction()

    def finish_compaction(self) -> None:
        """*locked* Rename ``toprocess.new`` over ``toprocess`` (if not done yet), empty
        ``claims``."""
        try:
            os.rename(self.files.toprocess_new, self.files.toprocess)
        except OSError as error:
            if error.errno != errno.ENOENT:
                raise
        self.files.forget(self.files.toprocess)
        os.truncate(self.files.claims, 0)


def _claim_end(line: bytes) -> int | None:
    """The cursor a ``claims`` line ends with (``ID LEASE END``); None if it is malformed."""
    try:
        return int(line.rsplit(b" ", 1)[1])
    except (IndexError, ValueError):
        return None
