"""Consistent reads of a workdir's state files without changing them (``farmer --status``).

The only lock taken is the ``flock`` lock, for as long as a few ``fstat`` calls and the read
of the last line of ``claims`` take (less than one claim holds it): that fixes the sizes of the
state files and the cursor, so the counts add up. Everything after reads those files *up to
the sizes seen*: they only grow (appends), and a compaction replaces ``toprocess`` by
``rename(2)``, so descriptors opened under the lock keep reading the snapshot. Without a
usable lock (a soft lock, a lock file this node cannot open) the snapshot is taken without it
and the counts can be off by the few tasks that moved meanwhile. Nothing is parsed that a
count does not need (``bytes.count`` over the files), so a 1,000,000-task workdir answers in
well under 2 s.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from ..errors import TasklistError, WorkdirError
from ..tasks import TaskList
from .leases import LeaseInfo, live_name
from .ledger import MAX_CLAIM
from .listimport import Imported
from .locking import shared_flock
from .state import StateStore

#: Bytes at the end of ``finished``/``failed``/``toprocess`` where a recent record is looked for.
RECENT = 1 << 20
#: Bytes at the end of ``failed`` read for the latest failed tasks.
FAILED_TAIL = 64 * 1024
#: Block size of the counting reads.
BLOCK = 1 << 20


def count_lines(handle: BinaryIO, start: int, end: int) -> int:
    """Newlines in bytes ``[start, end)`` of ``handle``."""
    count = 0
    position = start
    while position < end:
        block = os.pread(handle.fileno(), min(BLOCK, end - position), position)
        if not block:
            break
        count += block.count(b"\n")
        position += len(block)
    return count


def unimported_lines(tasklist: Path | None, imported: Imported | None) -> int:
    """Lines of TASKLIST after its imported part, a last one without its newline included
    (reads only those; 0 if unknown, or if TASKLIST is not a regular file)."""
    if tasklist is None or imported is None or imported.fixed:
        return 0
    try:
        with TaskList.open(tasklist) as handle:
            size = os.fstat(handle.fileno()).st_size
            start = min(imported.bytes, size)
            last = os.pread(handle.fileno(), 1, size - 1) if size > start else b"\n"
            return count_lines(handle, start, size) + (last != b"\n")
    except (OSError, TasklistError):
        return 0


def _tail(handle: BinaryIO, start: int, end: int, size: int = RECENT) -> bytes:
    """Bytes of ``[max(start, end - size), end)`` from the start of a line (newline first)."""
    begin = max(start, end - size)
    data = os.pread(handle.fileno(), end - begin, begin)
    if begin > start:
        data = data[data.find(b"\n"):]  # keep the newline: every line follows one
    return b"\n" + data if begin == start else data


def _open_all(paths: Iterable[tuple[str, Path]]) -> dict[str, tuple[BinaryIO, int]]:
    """``name -> (descriptor, size)`` of those of ``paths`` that exist."""
    files: dict[str, tuple[BinaryIO, int]] = {}
    for name, path in paths:
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            continue
        files[name] = (handle, os.fstat(handle.fileno()).st_size)
    return files


class Snapshot:
    """Descriptors of ``toprocess``, ``finished``, ``failed`` and ``claims`` and their sizes,
    the cursor and the lease names, fixed at one moment (see the module docstring).

    A context manager: leaving it closes the descriptors.
    """

    def __init__(self, store: StateStore, files: dict[str, tuple[BinaryIO, int]], cursor: int,
                 consistent: bool, others: dict[str, tuple[BinaryIO, int]] | None = None
                 ) -> None:
        self.store = store
        self.files = files
        self.others = others or {}  # more files fixed at the same moment (``take(also=)``)
        self.cursor = cursor
        self.consistent = consistent  # taken under the lock
        self.leases = store.lease_names()
        self.imported = store.imported()
        self._recent: bytes | None = None

    @classmethod
    def take(cls, store: StateStore, lock_file: Path | None, also: tuple[Path, ...] = ()
             ) -> Snapshot:
        """Fix the state of ``store``'s workdir, under ``flock`` on ``lock_file`` if possible.

        Files in ``also`` (the job log, ``attempts`` ...) are fixed at the same moment: they
        are opened and their sizes taken under the lock too (:meth:`data` reads them).

        Raises:
            WorkdirError: no workdir, or no farmer has read a tasklist into it yet.
        """
        if not store.toprocess.exists():
            if not store.workdir.is_dir():
                raise WorkdirError(store.workdir, "no such workdir")
            raise WorkdirError(store.workdir, "no toprocess: no farmer has started here")
        with shared_flock(lock_file) as consistent:
            files = _open_all((("toprocess", store.toprocess), ("finished", store.finished),
                               ("failed", store.failed), ("claims", store.claims)))
            others = _open_all((path.name, path) for path in also)
            cursor = store.peek_cursor()
            if cursor is None:  # a compaction was left half done: its new list counts
                if store.files.toprocess_new.exists():
                    files["toprocess"][0].close()
                    handle = open(store.files.toprocess_new, "rb")
                    files["toprocess"] = (handle, os.fstat(handle.fileno()).st_size)
                files.pop("claims", None)
                cursor = 0
            return cls(store, files, min(cursor, files["toprocess"][1]), consistent, others)

    def close(self) -> None:
        """Close the descriptors."""
        for handle, _ in (*self.files.values(), *self.others.values()):
            handle.close()

    def data(self, name: str) -> bytes | None:
        """All bytes of state file or ``also`` file ``name`` up to the size the snapshot
        fixed; None if it did not exist (``claims`` during a half-done compaction neither)."""
        entry = self.files.get(name) or self.others.get(name)
        if entry is None:
            return None
        handle, size = entry
        chunks = []
        position = 0
        while position < size:
            block = os.pread(handle.fileno(), min(BLOCK * 16, size - position), position)
            if not block:
                break
            chunks.append(block)
            position += len(block)
        return b"".join(chunks)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- counts ------------------------------------------------------------------------------

    def count(self, name: str) -> int:
        """Lines of ``finished`` or ``failed`` (0 if there is no such file)."""
        handle, size = self.files.get(name, (None, 0))
        return count_lines(handle, 0, size) if handle else 0

    def pending(self) -> int:
        """Lines of ``toprocess`` after the cursor."""
        handle, size = self.files["toprocess"]
        return count_lines(handle, self.cursor, size)

    def lease_infos(self) -> list[LeaseInfo]:
        """The leases that existed (live or half-revoked) when the snapshot was taken."""
        names = {live_name(name) for name in self.leases}
        return [info for info in self.store.lease_infos() if info.name in names]

    # -- running tasks -----------------------------------------------------------------------

    def last_chunks(self, names: list[str]) -> dict[str, list[tuple[int, int]]]:
        """``lease -> [(task ID, END), ...]`` of each lease's last claim, in claim order.

        One claim appends all its lines with one write, so a lease's last claim is in the run
        of adjacent lines that ends with its last line (a worker claiming alone makes runs of
        several claims: the last :data:`~.ledger.MAX_CLAIM` lines of a run hold the last claim).
        ``claims`` is searched backwards, line by line, until every lease's run has ended (at
        a line of another lease) or the file's start.
        """
        found: dict[str, list[tuple[int, int]]] = {}
        if "claims" not in self.files or not names:
            return found
        handle, position = self.files["claims"]
        wanted = {name.encode() for name in names}
        ended: set[bytes] = set()
        current: bytes | None = None  # the lease of the line after this one, if still open
        carry = b""
        while position > 0 and len(ended) < len(wanted):
            start = max(0, position - BLOCK)
            block = os.pread(handle.fileno(), position - start, start) + carry
            position = start
            if start > 0:
                first = block.find(b"\n") + 1
                carry, block = block[:first], block[first:]
            for line in reversed(block.split(b"\n")[:-1]):
                fields = line.split(b" ")
                name = fields[1] if len(fields) == 3 and fields[0].isdigit() \
                    and fields[2].isdigit() else None
                if current is not None and name != current:
                    ended.add(current)  # a line of another claim precedes its run
                current = None
                if name is None or name not in wanted or name in ended:
                    continue
                run = found.setdefault(name.decode(), [])
                run.insert(0, (int(fields[0]), int(fields[2])))
                current = name
                if len(run) >= MAX_CLAIM:  # claims of one worker in a row: the last is in
                    ended.add(name)
        return found

    def settled_recently(self, task_id: int) -> bool:
        """Whether ``task_id`` was recorded or put back lately: in the last :data:`RECENT`
        bytes of ``finished``, ``failed`` or ``toprocess`` after the cursor (a worker that
        recorded its last claim leaves within a lock hold or two, so the record is recent)."""
        if self._recent is None:
            self._recent = b"".join(
                _tail(handle, self.cursor if name == "toprocess" else 0, size)
                for name, (handle, size) in self.files.items() if name != "claims")
        return b"\n%d " % task_id in self._recent

    def task_text(self, end: int) -> str:
        """The task of the ``toprocess`` line that ends (newline included) at byte ``end``."""
        handle = self.files["toprocess"][0]
        start = max(0, end - 4096)
        data = os.pread(handle.fileno(), end - start, start)[:-1]
        line = data[data.rfind(b"\n") + 1:]
        return line.partition(b" ")[2].decode("utf-8", "replace")

    # -- failed tasks ------------------------------------------------------------------------

    def latest_failed(self, limit: int) -> list[tuple[int, str]]:
        """``(ID, task)`` of the last ``limit`` lines of ``failed``, latest first."""
        if "failed" not in self.files:
            return []
        handle, size = self.files["failed"]
        lines = _tail(handle, 0, size, FAILED_TAIL).split(b"\n")[1:-1][-limit:]
        tasks = []
        for raw in reversed(lines):
            head, _, text = raw.partition(b" ")
            if head.isdigit():
                tasks.append((int(head), text.decode("utf-8", "replace")))
        return tasks

    def attempts(self, ids: set[int]) -> dict[int, int]:
        """Failed attempts of ``ids`` (the last ``attempts`` line of each counts; at least 1)."""
        counts = dict.fromkeys(ids, 1)
        try:
            with open(self.store.attempts, "rb") as handle:
                for line in handle:
                    head, _, number = line.strip().partition(b" ")
                    if head.isdigit() and number.isdigit() and int(head) in counts:
                        counts[int(head)] = max(1, int(number))
        except FileNotFoundError:
            pass
        return counts
