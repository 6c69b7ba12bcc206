"""Comparing a tasklist with the workdir's copy of its imported part (``WORKDIR/tasklist``),
and the errors that say how the list changed: read-only, for :mod:`.listimport`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import StateError, TasklistError
from .tail import ends_open

#: Block size of comparisons, copies and counts.
BLOCK = 1 << 20
#: What to do about a list that changed.
REMEDY = "use a new --workdir, or --accept-list to take the list as it is now"


def first_difference(copy_path: Path, handle: BinaryIO, start: int, end: int) -> int | None:
    """Offset of the first byte in ``[start, end)`` where the list and the copy differ.

    Raises:
        StateError: the copy is missing or shorter than ``end``.
    """
    try:
        copy = open(copy_path, "rb")
    except FileNotFoundError:
        raise StateError(copy_path, "missing (the copy of the imported list)") from None
    with copy:
        if os.fstat(copy.fileno()).st_size < end:
            raise StateError(copy_path, "shorter than 'imported' says")
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


def changed(tasklist: Path, workdir: Path, copy_path: Path, handle: BinaryIO,
            imported: tuple[int, int], difference: int | None) -> TasklistError:
    """The error for a list whose imported part (``imported``: its bytes and lines) differs
    from the copy at byte ``difference``, or (None) is shorter."""
    size, lines = os.fstat(handle.fileno()).st_size, imported[1]
    with open(copy_path, "rb") as copy:
        if difference is None:  # the list is shorter
            line = (lines - open_at(copy, imported[0]) - count_newlines(copy, size, imported[0])
                    + 1)
            return TasklistError(tasklist, (
                f"the list is shorter than the {lines} lines imported into {workdir} (line "
                f"{line} was {line_at(copy, size)!r}): {REMEDY}"), line=line)
        was, now = line_at(copy, difference), line_at(handle, difference)
    return TasklistError(tasklist, (
        f"differs from the list imported into {workdir} (was {was!r}, now {now!r}): {REMEDY}"),
        line=count_newlines(handle, 0, difference) + 1)


def continued(tasklist: Path, copy_path: Path, imported: tuple[int, int]) -> TasklistError:
    """The error for text appended to the imported part's open last line (``imported``: the
    part's bytes and lines; the copy ends there)."""
    with open(copy_path, "rb") as copy:
        was = line_at(copy, imported[0] - 1)
    return TasklistError(tasklist, (
        f"line {imported[1]} was imported without its newline (the list was at rest), as "
        f"{was!r}; text added to it since changes a task already imported (end a list's last "
        f"line with a newline before appending): {REMEDY}"), line=imported[1])


def open_at(handle: BinaryIO, end: int) -> bool:
    """True if the first ``end`` bytes of ``handle`` end inside a line (no newline last)."""
    return ends_open(os.pread(handle.fileno(), 1, end - 1) if end else b"")


def blocks(handle: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of ``handle``, :data:`BLOCK` at a time."""
    position = start
    while position < end:
        block = os.pread(handle.fileno(), min(BLOCK, end - position), position)
        if not block:
            return
        yield block
        position += len(block)


def count_newlines(handle: BinaryIO, start: int, end: int) -> int:
    """Newlines in bytes ``[start, end)`` of ``handle``."""
    return sum(block.count(b"\n") for block in blocks(handle, start, end))


def line_at(handle: BinaryIO, offset: int) -> str:
    """The line that contains byte ``offset`` (for messages; at most 200 characters)."""
    start = max(0, offset - 4096)
    before = os.pread(handle.fileno(), offset - start, start)
    after = os.pread(handle.fileno(), 4096, offset)
    line = before[before.rfind(b"\n") + 1:] + after.split(b"\n", 1)[0]
    return line.decode("utf-8", "replace")[:200]
