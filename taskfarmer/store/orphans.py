"""The safety net at rest: a task that was claimed but is recorded nowhere goes back.

Every claimed task ends up in ``finished``, ``failed`` or back in ``toprocess`` before its
lease goes, so at rest (no lease file left) every task ``claims`` names is in one of them.
One that is not lost its line after it was written: a torn or zeroed write-back on a shared
filesystem (seen on NFSv4.2 with ``--lock soft``: a ``finished`` line that reached the server
as NUL bytes, which the repair then cut off into ``torn``). Such a task is put back into
``toprocess``: it runs again, so it is never lost, and since no readable line records it, it
cannot be recorded twice.
"""

from __future__ import annotations

import os

from ..tasks import Task
from .files import StateFiles
from .ledger import Ledger


class Orphans:
    """Finds and puts back the claimed tasks recorded nowhere, at rest only.

    The scan reads the whole state (O(its size)); a workdir that has not changed since the
    last scan that found nothing is not scanned again (an idle ``--follow`` farmer asks on
    every poll).
    """

    def __init__(self, files: StateFiles, ledger: Ledger) -> None:
        self.files = files
        self.ledger = ledger
        self._clean: tuple[tuple[int, int, int], ...] | None = None  # the state last found whole

    def requeue(self) -> list[Task]:
        """*locked* With no lease file left: put every task that ``claims`` names and that is
        in none of ``finished``, ``failed`` and the untaken part of ``toprocess`` back at the
        end of ``toprocess``. Returns them, in task order.
        """
        if self._state() == self._clean:
            return []
        tasks = self.ledger.unsettled(lambda lease: True)  # no lease exists: all are gone
        self.ledger.requeue(tasks)
        self._clean = self._state()
        return tasks

    def _state(self) -> tuple[tuple[int, int, int], ...]:
        """(inode, size, mtime) of the files the scan reads, through descriptors opened in
        this hold (coherent mode: current on NFS too); any change, a late write-back within
        the file too, makes the next call scan again."""
        files = self.files
        state = []
        for path in (files.claims, files.toprocess, files.finished, files.failed):
            stat = os.fstat(files.fd(path))
            state.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return tuple(state)
