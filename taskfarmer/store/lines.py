"""Line files: the primitives every state file is read and written with.

A state file is a sequence of whole lines, each ending in a newline; a line is appended with
one ``write(2)`` (:func:`append`), and readers only ever trust complete lines.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import FilesystemError, StateError
from ..tasks import Task
from .files import StateFiles

#: Block size of scans and copies.
READ_CHUNK = 64 * 1024

#: An ``ID `` at the start of a line.
LINE_ID = re.compile(rb"^(\d+) ", re.MULTILINE)


def append(fd: int, path: Path, data: bytes, open_end: bool = False) -> None:
    """Append whole lines with one ``write(2)``; undo a failed one (disk full).

    The descriptor is ``O_APPEND`` and the caller holds the lock, so the bytes land at the end
    in one piece. A short write (the filesystem filled up in the middle: what fits is written)
    is followed by a write of the rest, which either completes the lines or fails with the
    reason (ENOSPC, EDQUOT, EFBIG). A failed write may have written part of the data: it is
    truncated back, so no half line is left behind. If even that fails (the filesystem is
    failing), the half line stays, and the next append (by any process, under the lock)
    moves it to ``torn`` first, as :func:`cut_incomplete_line` does at start: lines appended
    to it would be glued onto the fragment and read as one wrong line (a mangled command, a
    lost ID). A result or claim cut off this way was never acknowledged: its task is still
    under its lease, and whoever takes the lease over puts it back unless it is recorded.
    ``open_end``: the file may end inside a line (the copy of a tasklist whose last line had
    no newline): no such move.

    Raises:
        FilesystemError: the write failed (the first failure: not one of the clean-up).
    """
    try:
        before = os.fstat(fd).st_size
        if before and not open_end and not ends_a_line(fd, before):
            cut_incomplete_line(path, path.parent / StateFiles.TORN)
            before = os.fstat(fd).st_size
    except OSError as error:
        raise FilesystemError.from_oserror(path, "append", error) from None
    written = 0
    try:
        while written < len(data):
            count = os.write(fd, data[written:])
            if count == 0:  # pragma: no cover - no filesystem returns 0 for a regular file
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written += count
    except OSError as error:
        _undo(fd, before)
        raise FilesystemError.from_oserror(path, "append", error) from None


def ends_a_line(fd: int, size: int) -> bool:
    """Whether the file of ``size`` bytes ends with a newline, as the filesystem has it.

    Asked once more with this node's cached pages of the file dropped if the first answer is
    no. An NFS client can keep a page that another node's append made stale while it takes
    the new size from the server (its data cache is not invalidated, for instance while a
    process of this node has the file open for writing): the new tail then reads as NUL
    bytes from the old page. Cutting that "incomplete line" off would truncate the other
    node's recorded lines away on the server (a task recorded, then lost: the likely way of
    the 78 NUL bytes that issue 21's lab found under ``--lock soft`` on NFSv4.2). Dropping
    clean cached pages makes the next read go to the server; on a local filesystem it costs a
    re-read of one page, and only here.
    """
    if os.pread(fd, 1, size - 1) == b"\n":
        return True
    drop_cached_pages(fd)
    return os.pread(fd, 1, size - 1) == b"\n"


def drop_cached_pages(fd: int) -> None:
    """Drop this node's clean cached pages of ``fd``'s file (``POSIX_FADV_DONTNEED``; NFS
    evicts them, and the next read asks the server)."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:  # (a filesystem without page cache control: nothing cached to drop)
        pass


def _undo(fd: int, size: int) -> None:
    """Cut off what a failed append may have written; a failure is left to the next append."""
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


def copy(source: BinaryIO, out: BinaryIO, start: int, end: int) -> None:
    """Copy bytes ``[start, end)`` of ``source`` to ``out``."""
    source.seek(start)
    remaining = end - start
    while remaining > 0:
        block = source.read(min(remaining, READ_CHUNK * 16))
        if not block:
            break
        out.write(block)
        remaining -= len(block)


def last_line(fd: int, size: int) -> bytes:
    """The last complete line (without its newline) of a file of ``size`` bytes ending in one."""
    window = 256
    while True:
        start = max(0, size - window)
        tail = os.pread(fd, size - start, start)
        newline = tail.rfind(b"\n", 0, len(tail) - 1)
        if newline >= 0 or start == 0:
            return tail[newline + 1 : -1]
        window *= 4


#: What to do about a malformed ``ID task`` line (a hand edit gone wrong, a foreign file).
MALFORMED_HINT = ("correct or delete that line (each line is 'ID command', ID the task's "
                  "0-based line number in the tasklist) while no farmer runs, then run again")


def parse_task_line(line: bytes, path: Path, offset: int) -> Task:
    """Parse an ``ID task`` line of toprocess/finished/failed.

    Raises:
        StateError: the line is not ``ID task``; names the file, the line and what to do.
    """
    head, _, text = line.partition(b" ")
    try:
        return Task(int(head), text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        shown = line[:60].decode("utf-8", "replace")
        raise StateError(path, f"malformed line {shown!r}: {MALFORMED_HINT}", offset,
                         line_number(path, offset)) from None


def line_number(path: Path, offset: int) -> int | None:
    """The 1-based number of the line that starts at byte ``offset`` of ``path`` (for error
    messages: reads the file up to there); None if it cannot be read."""
    try:
        with open(path, "rb") as handle:
            count = 1
            while offset > 0:
                block = handle.read(min(offset, READ_CHUNK * 16))
                if not block:
                    break
                count += block.count(b"\n")
                offset -= len(block)
            return count
    except OSError:
        return None


def task_line(task: Task) -> bytes:
    """The ``ID task`` line of ``task``, newline included."""
    return b"%d %s\n" % (task.id, task.text.encode("utf-8"))


def lines(path: Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, line)`` for the complete lines of ``path`` in ``[start, end)``."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        handle.seek(start)
        offset = start
        for line in handle:
            if end is not None and offset >= end:
                return
            if not line.endswith(b"\n"):
                return
            yield offset, line[:-1]
            offset += len(line)


def complete_end(fd: int, floor: int, size: int) -> int:
    """Offset just after the last newline in bytes ``[floor, size)`` of ``fd`` (``floor`` if
    there is none): where the complete lines end. Reads backwards, a block at a time."""
    position = size
    while position > floor:
        start = max(floor, position - READ_CHUNK)
        newline = os.pread(fd, position - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return floor


def cut_incomplete_line(path: Path, torn: Path) -> bytes | None:
    """*locked* Cut an incomplete last line (no newline) off ``path``, keep it in ``torn``.

    Returns the fragment, or None if ``path`` is missing, empty or ends with a newline.
    """
    try:
        handle = open(path, "rb+")  # opened first: on NFS its size is then current
    except FileNotFoundError:
        return None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0 or ends_a_line(handle.fileno(), size):  # (what the server has)
            return None
        keep = complete_end(handle.fileno(), 0, size)
        fragment = os.pread(handle.fileno(), size - keep, keep)
        handle.truncate(keep)
    with open(torn, "ab") as out:
        out.write(b"%s: %s\n" % (path.name.encode(), fragment))
    return fragment


def lost_write(fragment: bytes) -> bool:
    """Whether a cut tail is what no farmer wrote rather than a line a crash cut short.

    Farmers write text lines (a tasklist with a NUL byte is refused at import), so a writer
    killed mid-``write(2)`` leaves a prefix of its line; NUL bytes are pages a filesystem
    extended the file over without their data (a write-back lost, or two writers at once).
    """
    return b"\0" in fragment


def line_ids(path: Path, start: int = 0, end: int | None = None) -> Iterator[int]:
    """The IDs of the ``ID ...`` lines of ``path`` in ``[start, end)`` (others are skipped)."""
    for _, line in lines(path, start, end):
        head = line.partition(b" ")[0]
        if head.isdigit():
            yield int(head)
