"""``WORKDIR/timeline.json``: Chrome trace-event JSON that ui.perfetto.dev opens.

Layout: ``[`` on the first line, one event per line, ``]`` on the last line::

    [
    {"name":"process_name","ph":"M","pid":7,...},
    {"name":"sleep 1","ph":"X","ts":1700000000000000,"dur":1000000,...}
    ]

Appending (under the workdir lock) overwrites the final ``\\n]\\n`` with ``,\\nEVENTS\\n]\\n``
in one ``pwrite(2)``: O(1) per task, whatever the file's size, and the file is valid JSON
before and after. A writer killed mid-way cannot tear one ``pwrite``; a node that crashed
during one can leave a torn tail, which :meth:`Timeline.repair` cuts back to the last whole
event. Every farmer on the workdir appends to the same file; each farmer is one process track
(``pid``), each worker slot one thread track (``tid``).
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any, Dict, Iterable, List

Event = Dict[str, Any]

_END = b"\n]\n"
_EMPTY = b"[" + _END


def track_id(farmer: str) -> int:
    """A stable positive 31-bit process-track id for a farmer name (pids collide across nodes)."""
    return zlib.crc32(farmer.encode()) & 0x7FFFFFFF


def complete_event(name: str, start: float, end: float, pid: int, tid: int,
                   args: Dict[str, Any]) -> Event:
    """A complete (``ph: X``) event; times in seconds since the epoch, written in µs."""
    start_us = int(start * 1_000_000)
    return {"name": name, "ph": "X", "ts": start_us,
            "dur": max(0, int(end * 1_000_000) - start_us), "pid": pid, "tid": tid,
            "args": args}


def process_name_event(pid: int, name: str, labels: Dict[str, str]) -> List[Event]:
    """Metadata naming a farmer's track (``host:pid``) and labelling it (SLURM job ...)."""
    events: List[Event] = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                            "args": {"name": name}}]
    if labels:
        events.append({"name": "process_labels", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"labels": ", ".join(f"{k}={v}" for k, v in labels.items())}})
    return events


def thread_name_event(pid: int, tid: int, name: str) -> Event:
    """Metadata naming a worker slot's track (``worker N``)."""
    return {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}


class Timeline:
    """Appends trace events to one JSON file shared by all farmers of a workdir."""

    def __init__(self, path: Path, coherent: bool = False) -> None:
        self.path = path
        self.coherent = coherent
        self._fd = -1
        self._fd_pid = -1

    def _descriptor(self) -> int:
        # Not O_APPEND: pwrite must land at the offset we give (Linux ignores it with O_APPEND).
        if self._fd_pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._fd_pid = os.getpid()
        return self._fd

    def close(self) -> None:
        """Close this process's descriptor."""
        if self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd_pid = -1

    def append(self, events: Iterable[Event]) -> None:
        """Add events. The caller holds the workdir lock."""
        try:
            self._append(events)
        finally:
            self._end_hold()

    def repair(self) -> bool:
        """Cut a torn tail back to the last whole event and close the array. True if changed.

        The caller holds the workdir lock.
        """
        try:
            return self._repair()
        finally:
            self._end_hold()

    def _end_hold(self) -> None:
        # Coherent mode (a workdir shared between nodes, see taskfarmer.store): close before
        # the lock is released, so that the write reaches the NFS server now, and open again
        # under the next hold, so that the size we write at is the server's (close-to-open).
        if self.coherent:
            self.close()

    def _append(self, events: Iterable[Event]) -> None:
        lines = [json.dumps(event, separators=(",", ":")).encode() for event in events]
        if not lines:
            return
        fd = self._descriptor()
        size = os.fstat(fd).st_size
        body = b",\n".join(lines) + _END
        if size <= len(_EMPTY):
            os.pwrite(fd, b"[\n" + body, 0)
            return
        if os.pread(fd, len(_END), size - len(_END)) != _END:
            self._repair()
            size = os.fstat(fd).st_size
            if size <= len(_EMPTY):
                os.pwrite(fd, b"[\n" + body, 0)
                return
        os.pwrite(fd, b",\n" + body, size - len(_END))

    def _repair(self) -> bool:
        fd = self._descriptor()
        size = os.fstat(fd).st_size
        if size == 0 or (size >= len(_EMPTY) and os.pread(fd, 3, size - 3) == _END):
            return False
        start = max(0, size - (1 << 20))
        lines = os.pread(fd, size - start, start).split(b"\n")
        end = size  # offset just past the line being looked at
        for line in reversed(lines):
            begin = end - len(line)
            candidate = line[:-1] if line.endswith(b",") else line
            if candidate.startswith(b"{"):
                try:
                    json.loads(candidate)
                except ValueError:
                    pass
                else:
                    os.ftruncate(fd, begin + len(candidate))
                    os.pwrite(fd, _END, begin + len(candidate))
                    return True
            end = begin - 1
        os.ftruncate(fd, 0)
        return True
