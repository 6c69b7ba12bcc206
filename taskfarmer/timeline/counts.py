"""``WORKDIR/timeline.state`` and ``timeline.started``: what the timeline's writers share
besides the events.

Line 1 is a fixed-width record of the workdir's task counts (``done failed running pending``),
for the timeline's counter tracks: every change reads and rewrites these 64 bytes in place
(``pread``/``pwrite`` at offset 0), so a count costs O(1) per task however large the workdir.
The lines after it are the process ids of the farmers' timeline tracks, one per farmer ever
started on the workdir, so that a farmer can pick an id no other one used (read once per
farmer, O(farmers)).

``timeline.started`` has one bit per task ID, set when a worker takes the task: a set bit
tells the next execution that an earlier one is on the timeline, to draw the flow from it
(one byte read and written per task; a sparse file of ID / 8 bytes).

All methods are *locked*: the caller holds the workdir lock, which orders the read-modify-
write of the counts. The counts are for display and self-correcting: a farmer that finds no
other farmer running recounts them from the state files (:meth:`reset`); in between, every
transition that moves a task (claim, end of an execution, record, put back, takeover) applies
its delta. A record torn by a crashed node reads as unknown and is recounted the same way. The
one known drift: a lease taken over from a worker that is in fact alive, with results it had
not recorded yet, takes those tasks out of ``running`` twice (the floor is zero) until the
next recount.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ..errors import operation

_FORMAT = b"%15d %15d %15d %15d\n"  # four right-aligned numbers
_RECORD = len(_FORMAT % (0, 0, 0, 0))


class TaskCounts(NamedTuple):
    """Tasks of the workdir per state, for the timeline's counters (a tuple: made per task)."""

    done: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0

    def plus(self, done: int = 0, failed: int = 0, running: int = 0,
             pending: int = 0) -> TaskCounts:
        """These counts changed by the given deltas (never below zero)."""
        return TaskCounts(max(0, self.done + done), max(0, self.failed + failed),
                          max(0, self.running + running), max(0, self.pending + pending))

    def encode(self) -> bytes:
        """The fixed-width record."""
        return _FORMAT % (self.done, self.failed, self.running, self.pending)

    @staticmethod
    def decode(data: bytes) -> TaskCounts | None:
        """A record read back; None if missing or torn."""
        if len(data) != _RECORD or not data.endswith(b"\n"):
            return None
        try:
            done, failed, running, pending = (int(field) for field in data.split())
        except ValueError:
            return None
        return TaskCounts(done, failed, running, pending)


class ProcessDescriptor:
    """A read-write descriptor of one file, opened by each process that uses it (farmers fork
    their workers after opening it), for ``pread``/``pwrite`` at offsets read under the lock.

    Not ``O_APPEND``: ``pwrite`` must land at the offset given (Linux ignores the offset of a
    ``pwrite`` on an ``O_APPEND`` descriptor).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._fd_pid = -1

    @operation("open", lambda self: self.path)
    def get(self) -> int:
        """This process's descriptor, opened (and the file created) on first use."""
        if self._fd_pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._fd_pid = os.getpid()
        return self._fd

    def close(self) -> None:
        """Close this process's descriptor."""
        if self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd_pid = -1


class TimelineState:
    """The counts and the track ids in ``timeline.state`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = ProcessDescriptor(path)
        self._started = ProcessDescriptor(path.with_name(path.stem + ".started"))

    def _descriptor(self) -> int:
        # The counts are rewritten at offset 0; track ids are appended at the size read under
        # the lock.
        return self._file.get()

    def close(self) -> None:
        """Close this process's descriptors."""
        self._file.close()
        self._started.close()

    @operation("update", lambda self, *_: self._started.path)
    def first_start(self, task_id: int) -> bool:
        """*locked* Note that ``task_id`` starts; True if it never started before."""
        fd = self._started.get()
        offset, bit = divmod(task_id, 8)
        old = os.pread(fd, 1, offset)
        byte = old[0] if old else 0
        if byte & (1 << bit):
            return False
        os.pwrite(fd, bytes((byte | (1 << bit),)), offset)
        return True

    @operation("read", lambda self: self.path)
    def counts(self) -> TaskCounts | None:
        """*locked* The counts; None if never written or torn."""
        return TaskCounts.decode(os.pread(self._descriptor(), _RECORD, 0))

    @operation("update", lambda self, *_: self.path)
    def reset(self, counts: TaskCounts) -> None:
        """*locked* Replace the counts (a recount from the state files)."""
        fd = self._descriptor()
        if os.fstat(fd).st_size < _RECORD:  # new or torn: the record, then no track line
            os.ftruncate(fd, 0)
        os.pwrite(fd, counts.encode(), 0)

    @operation("update", lambda self, *_, **__: self.path)
    def change(self, done: int = 0, failed: int = 0, running: int = 0,
               pending: int = 0) -> TaskCounts | None:
        """*locked* Apply deltas; the new counts, or None while they are unknown."""
        old = self.counts()
        if old is None:
            return None
        new = old.plus(done, failed, running, pending)
        os.pwrite(self._descriptor(), new.encode(), 0)
        return new

    @operation("read", lambda self: self.path)
    def track_ids(self) -> list[int]:
        """*locked* The process ids of the tracks of every farmer so far, in start order."""
        fd = self._descriptor()
        size = os.fstat(fd).st_size
        data = os.pread(fd, max(0, size - _RECORD), _RECORD) if size > _RECORD else b""
        return [int(line) for line in data.split(b"\n") if line.strip().isdigit()]

    @operation("update", lambda self, *_: self.path)
    def add_track_id(self, pid: int) -> None:
        """*locked* Remember a farmer's track id (after the counts record)."""
        fd = self._descriptor()
        size = os.fstat(fd).st_size
        if size < _RECORD:
            os.pwrite(fd, TaskCounts().encode(), 0)  # placeholder, recounted by reset
            os.ftruncate(fd, _RECORD)
            size = _RECORD
        os.pwrite(fd, b"%d\n" % pid, size)
