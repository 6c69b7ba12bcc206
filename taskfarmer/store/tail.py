"""The end of a tasklist: which of the bytes after the imported part an import takes.

A line ends with a newline, but the last line of a file may have none: a list written with
``'\\n'.join(...)`` or by an editor that adds none (PyTaskFarmer's ``readlines()`` ran it as a
task), or a line a producer is still writing. So such a last line is imported once the list is
*at rest* (:class:`RestWatch`): then it is a task like the others, and the imported part ends
in the middle of a line ("open"). What is appended to an open line later must be blank up to
its newline (the newline a producer adds before its next line): anything else changes a line
already imported, which is refused like any edit.

:func:`split` decides, without I/O, what a batch of appended bytes holds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

#: Seconds a list must stay the same (size and modification time), as seen by this farmer,
#: before its last line is taken without a newline.
QUIET = 2.0
#: A list last modified this many seconds ago is at rest at first sight: no wait for a list
#: written long ago. Generous, so that a file server's clock a minute off the farmer's does not
#: make a line being written look old.
SETTLED = 60.0


@dataclass(frozen=True)
class Batch:
    """What :func:`split` found in the bytes after the imported part.

    Attributes:
        used: how many of the bytes are imported now.
        lines: the lines that start in those bytes, in order, each with its newline but maybe
            the last (the list's last line, taken at rest).
        continuation: the bytes that continue the imported part's open last line, up to and
            including its newline (empty if the imported part ends with a newline).
        rest: the bytes after ``used``: an incomplete last line, left for later.
    """

    used: int
    lines: list[bytes]
    continuation: bytes
    rest: bytes

    @property
    def in_open_line(self) -> bool:
        """True if :attr:`rest` is still the imported open line (no newline came yet)."""
        return bool(self.continuation) and not self.continuation.endswith(b"\n")


def split(data: bytes, continues: bool, whole: bool) -> Batch:
    """Split ``data``, the bytes after the imported part.

    Args:
        data: those bytes (up to a batch's size).
        continues: the imported part ends in the middle of a line (taken at rest): ``data``
            starts with the rest of that line.
        whole: ``data`` reaches the end of a list at rest: its last line counts without a
            newline.
    """
    start, continuation = 0, b""
    if continues:
        newline = data.find(b"\n")
        if newline < 0:
            return Batch(len(data) if whole else 0, [], data, b"" if whole else data)
        start = newline + 1
        continuation = data[:start]
    end = max(start, data.rfind(b"\n") + 1)
    lines = [piece + b"\n" for piece in data[start:end - 1].split(b"\n")] if end > start else []
    if whole and end < len(data):
        lines.append(data[end:])
        end = len(data)
    return Batch(end, lines, continuation, data[end:])


def ends_open(last_byte: bytes) -> bool:
    """True if a part whose last byte is ``last_byte`` (empty: no part) ends inside a line."""
    return last_byte not in (b"", b"\n")


class RestWatch:
    """Tells whether a list is at rest: its size and modification time the same for
    :data:`QUIET` seconds of this process's clock, or its modification time :data:`SETTLED`
    seconds in the past.

    Args:
        clock: the wall clock (compared with the file's modification time).
        monotonic: the clock the quiet time is measured with.
    """

    def __init__(self, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.monotonic = monotonic
        self._seen: tuple[tuple[int, int], float] | None = None  # (size, mtime), since

    def at_rest(self, info: os.stat_result) -> bool:
        """Whether the file ``info`` describes (an ``fstat`` of it just opened: current also
        on NFS) is at rest; each call with a changed file starts the quiet time again."""
        if self.clock() - info.st_mtime_ns / 1e9 >= SETTLED:
            return True
        key, now = (info.st_size, info.st_mtime_ns), self.monotonic()
        if self._seen is None or self._seen[0] != key:
            self._seen = (key, now)
            return False
        return now - self._seen[1] >= QUIET
