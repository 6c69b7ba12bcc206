"""Counting tasks per state without the lock, for progress displays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import StateStore


class LineCounter:
    """Counts the lines of a file that only grows (or is emptied), reading only new bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.count = 0

    def update(self, end: int | None = None, size: int | None = None) -> int:
        """Count complete lines up to ``end`` (default: the end of the file).

        ``size``: the file's size, if the caller knows it better than ``stat`` (under the lock
        on a shared filesystem, ``fstat`` of a descriptor opened in the hold is current, where
        a ``stat`` by name may answer from a cache). Without the lock, the file can be replaced
        while we read it (a compaction on another node: on NFS the old one is gone,
        ``ESTALE``): then the count stays as it was.
        """
        if size is None:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            except OSError:
                return self.count
        limit = size if end is None else min(end, size)
        if limit < self.offset:  # compacted or truncated: start over
            self.offset = 0
            self.count = 0
        if limit > self.offset:
            try:
                self._read(limit)
            except OSError:
                pass
        return self.count

    def _read(self, limit: int) -> None:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            remaining = limit - self.offset
            while remaining > 0:
                block = handle.read(min(remaining, 1 << 20))
                if not block:
                    break
                remaining -= len(block)
                self.count += block.count(b"\n")
                self.offset += len(block)


@dataclass(frozen=True)
class Counts:
    """Numbers of tasks per state, as far as a look without the lock can tell."""

    pending: int
    finished: int
    failed: int


class StateCounter:
    """Incremental counts of pending/finished/failed tasks for progress displays (no lock)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._toprocess = LineCounter(store.toprocess)
        self._taken = LineCounter(store.toprocess)
        self._finished = LineCounter(store.finished)
        self._failed = LineCounter(store.failed)

    def counts(self) -> Counts:
        """Current counts; ``pending`` counts the lines of ``toprocess`` after the cursor."""
        cursor = self.store.peek_cursor()
        total = self._toprocess.update()
        taken = self._taken.update(cursor) if cursor is not None else self._taken.count
        return Counts(max(0, total - taken), self._finished.update(), self._failed.update())
