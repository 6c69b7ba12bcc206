"""A coherent-mode farmer's opens of workdir files, counted for ``--status``.

In the coherent mode (a workdir on NFS, Lustre, GPFS...: :mod:`.filesystem`) every state file a
lock hold touches is opened after the lock is taken and closed before it is released, and each
open is a round trip to the server (NFSv4 OPEN and CLOSE, NFSv3 a GETATTR): the metadata cost
of a run that ``--status`` shows as state-file opens per task. They are counted where Python
sees every one of them, by an audit hook (:func:`sys.addaudithook`) on the ``open``,
``os.scandir`` and ``os.listdir`` events (raised by ``open``, ``os.open``, ``pathlib`` and
directory listings, failed opens included: on NFS those are round trips too), for paths in the
workdir outside ``logs/``: the task logs are counted as the files they make, not as opens.
About a microsecond per event. A farmer in the fast mode (a local disk: descriptors kept open,
opens cost little) counts nothing and pays nothing. One hook per process, never removed
(Python allows none); it counts for the last :class:`OpenCount` started in the process.

Each process counts into a number of its own, and adds it to its farmer's total (shared memory,
inherited by the forked workers) inside its next lock hold: the workdir lock orders the
additions, so none is lost, without a lock of their own (a process SIGKILLed while holding one
would stop every other process of its farmer at its next open). A worker's opens after its
last lock hold go uncounted: a few at most (it releases its lease in that hold). The results
recorded are counted in the same way, for the per-task figure.

The farmer's main process leaves its totals in ``farmers/FARMER``, one line rewritten in place
(:func:`write_record`, at every heartbeat and when the farmer ends); ``--status`` reads them all
(:func:`read_records`): one small file per farmer, like its packed logs. A record cut by a
crash or unreadable is skipped.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The audit events that open a file or list a directory (their first argument is the path).
EVENTS = frozenset({"open", "os.scandir", "os.listdir"})

_current: OpenCount | None = None  # the counter the process's hook counts for
_hooked = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event in EVENTS and _current is not None and args:
        _current.seen(args[0])


@dataclass(frozen=True)
class Record:
    """What one farmer left in ``farmers/FARMER``."""

    farmer: str
    opens: int  # of workdir files, task logs apart
    results: int  # results recorded


class OpenCount:
    """The opens of ``workdir``'s files by one farmer's processes (see the module docstring).

    Args:
        directory: ``WORKDIR/farmers``, as the farmer's paths spell it.
        coherent: whether the farmer uses the coherent mode (else nothing is counted).
    """

    def __init__(self, directory: Path, coherent: bool) -> None:
        self.directory = directory
        self.coherent = coherent
        workdir = directory.parent
        spellings = {os.fspath(workdir), os.path.abspath(workdir)}
        self._workdir = frozenset(spellings)
        self._inside = tuple(spelling + os.sep for spelling in spellings)
        self._logs = tuple(spelling + "logs" for spelling in self._inside)
        self._shared = multiprocessing.RawArray(ctypes.c_longlong, 2)  # opens, results
        self._pid = os.getpid()
        self._own = 0  # this process's opens not added to the shared total yet

    def start(self) -> None:
        """Count this process's opens (and its forked children's) from now on; in the fast
        mode, stop counting for any farm of this process."""
        global _current, _hooked
        _current = self if self.coherent else None
        if self.coherent and not _hooked:
            sys.addaudithook(_hook)
            _hooked = True

    def seen(self, target: object) -> None:
        """The hook: one open (or listing) of ``target``; counted if it is a workdir file."""
        if not isinstance(target, (str, bytes, os.PathLike)):
            return  # a descriptor: not an open by name
        path = os.fsdecode(target)
        if (path.startswith(self._inside) and not path.startswith(self._logs)) \
                or path in self._workdir:
            self._after_fork()
            self._own += 1

    def _after_fork(self) -> None:
        """Start this process's own count at zero after ``fork`` (the parent's is its own)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._own = 0

    def flush(self, results: int = 0) -> None:
        """*locked* Add this process's opens, and ``results`` results recorded, to the total."""
        self._after_fork()
        own, self._own = self._own, 0
        self._shared[0] += own
        self._shared[1] += results

    def record(self, farmer: str) -> Record:
        """The totals so far, with this process's own opens (the main process's record)."""
        self._after_fork()
        return Record(farmer, int(self._shared[0]) + self._own, int(self._shared[1]))

    def save(self, farmer: str) -> Record | None:
        """Coherent mode: leave ``farmer``'s totals so far in ``farmers/FARMER`` (no lock:
        only this farmer's main process writes that file), and return them; fast mode: None.

        Raises:
            OSError: the file cannot be written.
        """
        if not self.coherent:
            return None
        record = self.record(farmer)
        write_record(self.directory, record)
        return record


def write_record(directory: Path, record: Record) -> None:
    """Write ``record`` into ``directory/FARMER`` (``directory`` made if missing), over the
    farmer's last one: its numbers only grow, so the line never gets shorter and no rename is
    needed (one open, one write).

    Raises:
        OSError: the file cannot be written.
    """
    line = f"opens={record.opens} results={record.results}\n".encode()
    path = directory / record.farmer
    flags = os.O_WRONLY | os.O_CREAT
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:  # the first record in this workdir (not the workdir: it fails)
        try:
            directory.mkdir()
        except FileExistsError:
            pass
        fd = os.open(path, flags, 0o644)
    try:
        os.pwrite(fd, line, 0)
    finally:
        os.close(fd)


def parse_record(farmer: str, data: bytes) -> Record | None:
    """The record in a file's bytes; None if cut or not one."""
    line, newline, _ = data.partition(b"\n")
    fields = dict(field.partition("=")[::2] for field in line.decode(errors="replace").split())
    try:
        return Record(farmer, int(fields["opens"]), int(fields["results"])) if newline else None
    except (KeyError, ValueError):
        return None


def read_records(directory: Path) -> list[Record]:
    """Every readable record in ``directory`` (none if it is missing)."""
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    records = []
    for name in names:
        try:
            data = (directory / name).read_bytes()
        except OSError:
            continue  # removed meanwhile, or not readable: no figure from it
        record = parse_record(name, data)
        if record is not None:
            records.append(record)
    return records


def opens_per_result(records: list[Record]) -> float | None:
    """State-file opens per recorded result over ``records`` (None before any result)."""
    results = sum(record.results for record in records)
    return sum(record.opens for record in records) / results if results else None
