"""The output of one task, every execution of it, whatever ``--logs`` wrote it
(``farmer --task-log ID``).

* ``packed`` (:mod:`.packed`): the frames of the task in every index of ``logs/packed``, each
  index searched with one regular expression (no data file is read but the task's bytes). A
  frame without an end record is *running* while the worker that wrote it holds a lease, else
  *cut*; it runs to the next frame of its file, or to the end of the data file.
* ``flat``, ``nonempty`` and PyTaskFarmer's ``logs/log_ID``, ``spread``'s ``logs/K/log_ID``: the
  file, split at the ``runs again`` lines (:func:`~.tasklogs.rerun_note`). The job log's lines
  of the task give each piece its start, node and outcome when they pair up one to one (a
  ``nonempty`` execution that printed nothing has a line and no piece: then only the nodes of
  the ``runs again`` lines are known).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from .joblog import Entry, parse_line
from .packed import DATA_SUFFIX, INDEX_SUFFIX, PACKED, parse_record
from .tasklogs import log_path

#: Bytes copied at a time when printing a piece.
CHUNK = 1 << 20
#: The line before what a packed task's leftover processes (``cmd &``) wrote after it ended.
LATE = b"---- taskfarmer: written after the task ended, by processes it left running ----\n"
#: The outcome of a log file's piece without its job log line.
UNKNOWN = "outcome not in the job log (running, or its farmer was killed)"


@dataclass(frozen=True)
class Piece:
    """The output of one execution: ``length`` bytes at ``offset`` of ``path`` (None: up to
    the file's end, read when printed: a running task's output so far)."""

    path: Path
    offset: int
    length: int | None
    start: float | None = None
    node: str | None = None
    outcome: str | None = None  # None: no end recorded
    running: bool = False
    late: int = 0  # bytes after the piece that its task's leftover processes wrote

    def separator(self, task_id: int, number: int, count: int) -> bytes:
        """The line printed before the piece."""
        when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.start))
                if self.start is not None else "start unknown")
        node = f"on {self.node}" if self.node else "node unknown"
        end = (self.outcome if self.outcome is not None
               else "running" if self.running
               else "cut: no end recorded (its worker was killed or could not write)")
        return (f"==== task {task_id}, execution {number} of {count}: {when}, {node}, {end} "
                "====\n").encode()

    def chunks(self) -> Iterator[bytes]:
        """The piece's bytes, a :data:`CHUNK` at a time (nothing if the file is gone), then
        the late ones after a line saying so."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            end = os.fstat(fd).st_size if self.length is None else self.offset + self.length
            yield from _read(fd, self.offset, end)
            if self.late:
                yield LATE
                yield from _read(fd, end, end + self.late)
        finally:
            os.close(fd)


def _read(fd: int, offset: int, end: int) -> Iterator[bytes]:
    """The bytes of ``fd`` from ``offset`` to ``end``, a :data:`CHUNK` at a time."""
    while offset < end:
        block = os.pread(fd, min(CHUNK, end - offset), offset)
        if not block:
            break
        offset += len(block)
        yield block


def task_pieces(logs: Path, joblog: Path | None, leases: list[str], ids: Collection[int]
                ) -> dict[int, list[Piece]]:
    """Every execution of each task of ``ids`` in ``logs``, in order of start (pieces whose
    start is unknown first, in file order); each file read once, whatever the number of IDs.

    Args:
        logs: ``WORKDIR/logs``.
        joblog: ``WORKDIR/joblog``, to name the executions in log files (None: do not read it).
        leases: the names of the lease files (a packed frame without an end is running while
            its writer holds one).
        ids: the tasks.
    """
    found = file_pieces(logs, joblog, ids)
    for task_id, piece in packed_pieces(logs, leases, ids):
        found.setdefault(task_id, []).append(piece)
    return {task_id: sorted(pieces, key=lambda piece: piece.start or 0.0)
            for task_id, pieces in found.items()}


def _alternatives(ids: Collection[int]) -> bytes:
    """A regular expression group matching any of ``ids``."""
    return b"(" + b"|".join(b"%d" % task_id for task_id in ids) + b")"


# -- packed ----------------------------------------------------------------------------------


def packed_pieces(logs: Path, leases: list[str], ids: Collection[int]
                  ) -> Iterator[tuple[int, Piece]]:
    """The frames of the tasks of ``ids`` in ``logs/packed``, with their task IDs."""
    try:
        indexes = sorted(entry.path for entry in os.scandir(logs / PACKED)
                         if entry.name.endswith(INDEX_SUFFIX))
    except FileNotFoundError:
        return
    for index in indexes:
        yield from _frames(Path(index), leases, ids)


def _frames(index: Path, leases: list[str], ids: Collection[int]
            ) -> Iterator[tuple[int, Piece]]:
    try:
        text = index.read_bytes()
    except FileNotFoundError:
        return
    data = index.with_suffix(DATA_SUFFIX)
    pattern = rb"^B\t%s\t[^\n]*" % _alternatives(ids)
    for match in re.finditer(pattern, text, re.MULTILINE):
        begin = parse_record(match.group())
        if begin is None or len(begin) < 5:
            continue
        task_id, offset, start, node = int(begin[1]), int(begin[2]), float(begin[3]), begin[4]
        found = _record_at(text, match.end() + 1)
        if found is not None and found[0][0] == "E" and found[0][1] == begin[1]:
            end = int(found[0][2])
            yield task_id, Piece(data, offset, end - offset, start, node, found[0][3],
                                 late=_late(text, found[1], data, end))
        elif found is not None:  # the next frame began: this one was cut
            yield task_id, Piece(data, offset, int(found[0][2]) - offset, start, node)
        else:
            yield task_id, Piece(data, offset, None, start, node,
                                 running=_writer_lives(index, leases))


def _record_at(text: bytes, position: int) -> tuple[list[str], int] | None:
    """The first whole record from ``position`` on and the position after it (None: there is
    none)."""
    while position < len(text):
        end = text.find(b"\n", position)
        end = len(text) if end < 0 else end
        fields = parse_record(text[position:end])
        if fields is not None and len(fields) >= 4:
            return fields, end + 1
        position = end + 1
    return None


def _late(text: bytes, position: int, data: Path, end: int) -> int:
    """Bytes written after a frame's end (its end record before ``position`` of the index)
    and before the next frame or the data file's end: by processes the task left behind
    (nobody else writes there)."""
    found = _record_at(text, position)
    while found is not None and found[0][0] != "B":
        found = _record_at(text, found[1])
    if found is not None:
        return max(0, int(found[0][2]) - end)
    try:
        return max(0, data.stat().st_size - end)
    except FileNotFoundError:
        return 0


def _writer_lives(index: Path, leases: list[str]) -> bool:
    """Whether the worker that writes ``index`` (``FARMER.wSLOT.PID[-PART]``) holds a lease
    (``FARMER.wSLOT.PID.GEN``; ``.dead``: taken over)."""
    prefix = re.sub(r"(\.\d+)-\d+$", r"\1", index.name.removesuffix(INDEX_SUFFIX)) + "."
    return any(name.startswith(prefix) and not name.endswith(".dead") for name in leases)


# -- a file per task ---------------------------------------------------------------------------


def file_pieces(logs: Path, joblog: Path | None, ids: Collection[int]
                ) -> dict[int, list[Piece]]:
    """The executions of each task of ``ids`` in its log file (``flat``/``nonempty``/
    PyTaskFarmer's, or ``spread``'s), with their job log lines where they pair up."""
    found: dict[int, list[Piece]] = {}
    for task_id in ids:
        for layout in ("flat", "spread"):
            path = log_path(logs, layout, task_id)
            try:
                found[task_id] = _split(path, path.read_bytes(), task_id)
                break
            except (FileNotFoundError, NotADirectoryError):
                continue
    if found and joblog is not None:
        entries = _job_entries(joblog, found)
        found = {task_id: _pair(pieces, entries.get(task_id, []))
                 for task_id, pieces in found.items()}
    return found


def _split(path: Path, text: bytes, task_id: int) -> list[Piece]:
    """``text`` cut at its ``runs again`` lines; the last piece runs to the file's end."""
    note = re.compile(rb"^---- taskfarmer: task %d runs again on (\S*) ----\n" % task_id,
                      re.MULTILINE)
    pieces: list[Piece] = []
    offset, node = 0, None
    for match in note.finditer(text):
        pieces.append(Piece(path, offset, match.start() - offset, node=node, outcome=UNKNOWN))
        offset, node = match.end(), match.group(1).decode("utf-8", "replace")
    pieces.append(Piece(path, offset, None, node=node, outcome=UNKNOWN))
    return pieces


def _job_entries(joblog: Path, ids: Collection[int]) -> dict[int, list[Entry]]:
    """The job log's lines of each task of ``ids``, in order of start."""
    try:
        text = joblog.read_bytes()
    except FileNotFoundError:
        return {}
    found: dict[int, list[Entry]] = {}
    pattern = rb"^%s\t[^\n]*" % _alternatives(ids)
    for match in re.finditer(pattern, text, re.MULTILINE):
        entry = parse_line(match.group())
        if entry is not None:
            found.setdefault(entry.id, []).append(entry)
    return {task_id: sorted(entries, key=lambda entry: entry.start)
            for task_id, entries in found.items()}


def _pair(pieces: list[Piece], entries: list[Entry]) -> list[Piece]:
    """``pieces`` given the start, node and outcome of their job log lines, if every piece has
    one (the last may be running, without its line yet)."""
    if len(entries) not in (len(pieces), len(pieces) - 1):
        return pieces
    paired = [Piece(piece.path, piece.offset, piece.length, entry.start, entry.node,
                    describe(entry))
              for piece, entry in zip(pieces, entries)]
    return paired + pieces[len(entries):]


def describe(entry: Entry) -> str:
    """An execution's outcome as the job log says it: ``finished, exit 0``."""
    how = f"signal {entry.signal}" if entry.signal else f"exit {entry.exit}"
    return f"{entry.outcome}, {how}"
