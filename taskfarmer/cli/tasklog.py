"""``farmer TASKLIST --task-log ID``: print every execution of one task's output, whatever
``--logs`` wrote it (see :mod:`taskfarmer.logs.reading`). Read-only, safe while farmers run."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import click

from ..errors import ExitCode
from ..logs.reading import task_pieces
from ..store import Snapshot, StateStore, make_lock


def known_tasks(store: StateStore) -> int:
    """How many tasks the workdir knows (IDs are 0 to this less one): those imported, else
    (PyTaskFarmer's workdir) the lines of its state files.

    Raises:
        WorkdirError: no workdir, or no farmer has started in it.
    """
    with Snapshot.take(store, None) as snapshot:
        done = snapshot.count("finished") + snapshot.count("failed")
        counted = done + snapshot.pending() + len(snapshot.leases)
        imported = snapshot.imported
        return max(imported.tasks, counted) if imported is not None else counted


def task_log_command(workdir: Path, task_id: int, lock_kind: str, environ: dict[str, str],
                     out: BinaryIO) -> ExitCode:
    """``--task-log``: print the executions of ``task_id`` in ``workdir`` to ``out``, each
    after a separator line; returns the exit code (2: no such task).

    Raises:
        WorkdirError: no workdir, or no farmer has started in it.
    """
    store = StateStore(workdir, make_lock(workdir, lock_kind, environ))
    pieces = task_pieces(store.logs, store.files.joblog, store.lease_names(),
                         [task_id]).get(task_id, [])
    if not pieces and not 0 <= task_id < known_tasks(store):
        click.echo(f"farmer: error: --task-log {task_id}: no such task in {workdir}", err=True)
        return ExitCode.ERROR
    if not pieces:
        click.echo(f"farmer: task {task_id} has no output logged (not run yet?)", err=True)
    for number, piece in enumerate(pieces, 1):
        out.write(piece.separator(task_id, number, len(pieces)))
        for block in piece.chunks():
            out.write(block)
        out.flush()
    return ExitCode.OK
