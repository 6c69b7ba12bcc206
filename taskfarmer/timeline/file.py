"""``WORKDIR/timeline.json``: Chrome trace-event JSON that ui.perfetto.dev opens.

Layout: ``[`` on the first line, one event per line, ``]`` on the last line::

    [
    {"name":"process_name","ph":"M","pid":4242,...},
    {"name":"3: sleep 1","cat":"finished","ph":"X","ts":1700000000000000,...}
    ]

Appending (under the workdir lock) overwrites the final ``\\n]\\n`` with ``,\\nEVENTS\\n]\\n``
in one ``pwrite(2)``: O(1) per task, whatever the file's size, and the file is valid JSON
before and after. A writer killed mid-way cannot tear one ``pwrite``; a node that crashed
during one can leave a torn tail, which :meth:`Timeline.repair` cuts back to the last whole
event. Every farmer on the workdir appends to the same file; what the events are is in
:mod:`taskfarmer.timeline.events`, the counts and track ids the writers share are in
:mod:`taskfarmer.timeline.counts` (``timeline.state`` beside it).

A ``timeline.json`` in another layout (PyTaskFarmer writes one JSON array on one line, and
rewrites it whole per task) is adopted, not truncated: :meth:`Timeline.repair` rewrites it
once into this layout, keeping every event; an unreadable one is kept as
``timeline.json.unreadable`` before a new file is started.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import operation
from .counts import ProcessDescriptor, TimelineState
from .events import Event

_END = b"\n]\n"
_EMPTY = b"[" + _END


class Timeline:
    """Appends trace events to one JSON file shared by all farmers of a workdir."""

    def __init__(self, path: Path, coherent: bool = False) -> None:
        self.path = path
        self.coherent = coherent
        self.state = TimelineState(path.with_name(path.stem + ".state"))
        self._file = ProcessDescriptor(path)

    def _descriptor(self) -> int:
        # The closing "\n]\n" is overwritten at the size read under the lock.
        return self._file.get()

    def close(self) -> None:
        """Close this process's descriptors."""
        self._file.close()
        self.state.close()

    def append(self, events: Iterable[Event]) -> None:
        """Add events. The caller holds the workdir lock, and changed ``state`` (if at all)
        in the same hold: in the coherent mode this ends the hold's use of both files."""
        try:
            self._append(events)
        finally:
            self._end_hold()

    def repair(self) -> bool:
        """Make the file end in this layout again. True if it changed anything.

        Our layout with a torn tail (a node died mid-``pwrite``): cut back to the last whole
        event and close the array. Another layout (PyTaskFarmer's): adopted, every event
        kept. Unreadable content: kept as ``timeline.json.unreadable``, and a new file begun.
        The caller holds the workdir lock.
        """
        try:
            return self._repair()
        finally:
            self._end_hold()

    def _end_hold(self) -> None:
        # Coherent mode (a workdir shared between nodes, see taskfarmer.store): close before
        # the lock is released, so that the writes reach the NFS server now, and open again
        # under the next hold, so that the sizes and counts we read are the server's
        # (close-to-open). ``timeline.state`` is closed with the timeline.
        if self.coherent:
            self.close()

    @operation("append", lambda self, *_: self.path)
    def _append(self, events: Iterable[Event]) -> None:
        lines = [_encode(event) for event in events]
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

    @operation("repair", lambda self: self.path)
    def _repair(self) -> bool:
        fd = self._descriptor()
        size = os.fstat(fd).st_size
        if size == 0 or (size >= len(_EMPTY) and os.pread(fd, 3, size - 3) == _END):
            return False
        if os.pread(fd, 2, 0) != b"[\n":
            events = _foreign_events(self.path)
            self._replace(events)
            return True
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

    def _replace(self, events: list[Event] | None) -> None:
        """Put ``events`` in this layout in place of the file (None: it is unreadable).

        Written to a temporary file and renamed over the old one: a crash leaves either the
        old content or the new, whole. Only this process had the file open for appending
        (a farmer adopts it before it starts workers), so reopening our descriptor suffices.
        """
        if events is None:
            os.replace(self.path, self.path.with_name(self.path.name + ".unreadable"))
        else:
            temporary = self.path.with_name(self.path.name + ".adopt")
            lines = [_encode(event) for event in events]
            with open(temporary, "wb") as handle:
                handle.write(b"[\n" + b",\n".join(lines) + _END if lines else b"")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        self.close()


def _encode(event: Event) -> bytes:
    """One event as one line of UTF-8 JSON.

    Non-ASCII characters are written as UTF-8, not ``\\uXXXX``: the Perfetto UI (v52) leaves
    ``\\u`` escapes undecoded in a string that has no other escape (``·`` showed as
    ``\\u00b7``). A command that is not valid UTF-8 gets ``?`` for its bad bytes here.
    """
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")


def _foreign_events(path: Path) -> list[Event] | None:
    """The events of a trace file in another layout (an array, or ``traceEvents`` of an
    object); None if it is not readable as one."""
    try:
        data = json.loads(path.read_bytes())
    except ValueError:
        return None
    if isinstance(data, dict):
        data = data.get("traceEvents")
    if not isinstance(data, list):
        return None
    return [event for event in data if isinstance(event, dict)]
