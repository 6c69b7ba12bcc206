"""``--logs packed``: the output of a worker's tasks in two append-only files, not one per task.

Each worker process writes ``logs/packed/STEM.data`` and ``logs/packed/STEM.idx``, ``STEM``
being its worker name and PID (``FARMER.wSLOT.PID``): a run creates two files per worker
process, whatever the number of tasks (a file create is the costly metadata operation of a
parallel filesystem, and sites cap inodes per user).

The task writes straight into the data file: its stdout and stderr are a descriptor of the data
file opened ``O_APPEND`` (no copy through the worker: no CPU per byte, and what it printed so
far is on disk, so ``--task-log`` reads a running task's output as ``tail -f`` would). One task
at a time per worker, and the file is the worker's alone, so the task's output is the bytes
between the data file's size when it started and its size when it ended. The index says so,
one text line per record, each a single ``write(2)`` to a descriptor opened ``O_APPEND``:

``B <id> <offset> <start> <node> <crc>``
    written before the task starts: its output begins at ``offset`` of the data file.
``E <id> <end> <outcome> <crc>``
    written after its process ended: its output ends at ``end``.

Fields are tab-separated; ``crc`` is the CRC-32 of the line before it, so a record cut by a
SIGKILL or a full disk at any byte is recognised and ignored (after a failed write the next
record starts on a new line). A frame without its end record was cut (its worker was killed, or
the write failed): its output runs to the next frame's offset, or to the end of the data file;
nothing of one frame is attributed to another, and a re-run is a frame of its own.

A task that leaves processes of its group behind (``cmd &``) may go on writing after its end
record: the worker then starts new files (``STEM-1.data`` ...) for its next task, so late output
lands after the frame, in no frame, never in another task's. A ``logs/`` directory removed while
the farm runs (the data file is found unlinked, ``st_nlink == 0``) is made again at the next
task start, with new files.
"""

from __future__ import annotations

import errno
import os
import zlib
from pathlib import Path

from ..errors import operation

#: The directory in ``logs/`` that holds the packed files.
PACKED = "packed"
DATA_SUFFIX = ".data"
INDEX_SUFFIX = ".idx"


def record(kind: str, *fields: object) -> bytes:
    """An index line: ``kind`` and ``fields`` tab-separated, then their CRC-32."""
    payload = "\t".join([kind, *(str(field) for field in fields)]).encode()
    return payload + f"\t{zlib.crc32(payload):08x}\n".encode()


def parse_record(line: bytes) -> list[str] | None:
    """The fields of an index line (without its newline), or None if it was cut or torn."""
    payload, _, crc = line.rpartition(b"\t")
    try:
        if int(crc, 16) != zlib.crc32(payload):
            return None
    except ValueError:
        return None
    return payload.decode("utf-8", "replace").split("\t")


def clean(text: str) -> str:
    """``text`` with no tab or newline in it (a node name, an outcome)."""
    return " ".join(text.split()) or "-"


class PackedLogs:
    """The packed log files of one worker (``name``, unique in the workdir while it lives)."""

    def __init__(self, logs: Path, name: str) -> None:
        self.directory = logs / PACKED
        self.logs = logs
        self.name = name
        self._part = 0
        self._data = -1
        self._index = -1
        self._cut = False  # the last index write failed: the next record starts a new line

    @property
    def stem(self) -> str:
        """The current files' name, without suffix."""
        stem = f"{self.name}.{os.getpid()}"
        return f"{stem}-{self._part}" if self._part else stem

    def path(self, suffix: str = DATA_SUFFIX) -> Path:
        """The current data (or index) file."""
        return self.directory / f"{self.stem}{suffix}"

    @operation("open", lambda self, *_: self.path())
    def open(self, task_id: int, start: float, node: str) -> int:
        """Begin a frame for ``task_id``; a descriptor of the data file for its output (the
        caller closes it)."""
        offset = self._offset()
        self._append(record("B", task_id, offset, f"{start:.3f}", clean(node)))
        return os.dup(self._data)

    @operation("append", lambda self, *_: self.path(INDEX_SUFFIX))
    def done(self, task_id: int, outcome: str, lingering: bool) -> None:
        """End the frame of ``task_id``; ``lingering``: processes of its group still run, and
        may write: the next task gets new files."""
        if self._data < 0:
            return
        end = os.fstat(self._data).st_size
        self._append(record("E", task_id, end, clean(outcome)))
        if lingering:
            self.close()
            self._part += 1

    def close(self) -> None:
        """Close the files (the worker leaves, or it starts new ones)."""
        for fd in (self._data, self._index):
            if fd >= 0:
                os.close(fd)
        self._data = self._index = -1

    def _offset(self) -> int:
        """The data file's size, opening the files first if they are not open or were removed
        (``rm -rf logs``) since."""
        if self._data >= 0:
            status = os.fstat(self._data)
            if status.st_nlink:
                return status.st_size
            self.close()
            self._part += 1
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            self._data = os.open(self.path(), flags, 0o644)
        except FileNotFoundError:  # the first task, or logs/ removed: not the workdir
            for directory in (self.logs, self.directory):
                try:
                    directory.mkdir()
                except FileExistsError:
                    pass
            self._data = os.open(self.path(), flags, 0o644)
        self._index = os.open(self.path(INDEX_SUFFIX), flags, 0o644)
        self._cut = False
        return os.fstat(self._data).st_size

    def _append(self, line: bytes) -> None:
        """Append ``line`` to the index in one write; a short write (full disk) is an error."""
        if self._cut:
            line = b"\n" + line
        self._cut = True
        written = os.write(self._index, line)
        if written != len(line):
            # What fits was written: a full disk, said as the state files say it.
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._cut = False
