"""``farmer --verify``: the I/O. One :class:`~taskfarmer.store.Snapshot` fixes the state files,
the job log, ``attempts`` and ``failed.requeue`` at one moment (their sizes and the cursor
under the lock, as ``--status`` does), so the check holds while farmers run; then
:func:`~.verify.check` judges the bytes. Nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..store import Snapshot, StateStore
from ..tasks import TaskList
from .verify import LeaseView, Verdict, WorkdirView, check


def read_view(store: StateStore, lock_file: Path | None, lease_time: float,
              tasklist: Path | None, now: float) -> WorkdirView:
    """The :class:`WorkdirView` of ``store``'s workdir at ``now`` (epoch seconds).

    The number of tasks is what ``imported`` says; a workdir without it (PyTaskFarmer's) counts
    the tasks of ``tasklist`` (blank and ``#`` lines are not tasks), or, without one, the
    highest ID seen.

    Raises:
        WorkdirError: no workdir, or no farmer has started in it.
        TasklistError: ``tasklist`` is needed and cannot be read.
    """
    files = store.files
    with Snapshot.take(store, lock_file, (files.joblog, files.attempts,
                                          files.failed_requeue)) as snapshot:
        total = snapshot.imported.tasks if snapshot.imported is not None else None
        if total is None and tasklist is not None:
            total = sum(1 for _ in TaskList().lines(tasklist))
        return WorkdirView(
            total=total, toprocess=snapshot.data("toprocess") or b"", cursor=snapshot.cursor,
            finished=snapshot.data("finished") or b"", failed=snapshot.data("failed") or b"",
            claims=snapshot.data("claims"), joblog=snapshot.data(files.joblog.name),
            attempts=snapshot.data(files.attempts.name) or b"",
            requeue=snapshot.data(files.failed_requeue.name),
            leases=tuple(_lease(files.leases / name, now) for name in snapshot.leases),
            lease_time=lease_time)


def _lease(path: Path, now: float) -> LeaseView:
    """A lease file: its heartbeat's age and content (opened first: on NFS that makes the
    mtime the server's)."""
    try:
        with open(path, "rb") as handle:
            age = now - os.fstat(handle.fileno()).st_mtime
            return LeaseView(path.name, age, handle.read(4096).decode("utf-8", "replace"))
    except FileNotFoundError:  # released since the snapshot: its tasks were settled first
        return LeaseView(path.name, None)


def verify(store: StateStore, lock_file: Path | None, lease_time: float,
           tasklist: Path | None, now: float) -> Verdict:
    """Check ``store``'s workdir (see :mod:`.verify`).

    Raises:
        WorkdirError: no workdir, or no farmer has started in it.
        TasklistError: ``tasklist`` is needed and cannot be read.
    """
    return check(read_view(store, lock_file, lease_time, tasklist, now))
