"""``farmer --status`` and ``--verify``: read a workdir's state without changing it, print
it, exit with what it says."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console

from ..errors import ExitCode, WorkdirError
from ..store import Quarantines, StateFiles, StateStore, exclude_list, lock_path, make_lock
from ..store.preview import would_run
from ..tasks import TaskList


def status_command(workdir: Path, tasklist: Path | None, lock_kind: str, lease: float,
                   as_json: bool, watch: bool, environ: dict[str, str]) -> ExitCode:
    """``--status``: print the status of ``workdir``; returns the exit code."""
    # Imported here, not at the top: a farm run never needs them (tests/unit/cli pins that).
    from ..status import StatusReader
    from . import status_view

    lock_file = lock_path(workdir, environ) if lock_kind == "flock" else None
    reader = StatusReader(StateStore(workdir, make_lock(workdir, lock_kind, environ)),
                          lock_file, lease, tasklist=tasklist)
    if as_json:
        status = reader.read(time.time())
        click.echo(status_view.to_json(status))
    else:
        console = Console()
        if watch and console.is_terminal:
            status = status_view.watch(lambda: reader.read(time.time()), console)
        else:
            status = reader.read(time.time())
            console.print(status_view.render(status))
    return status.exit_code


def verify_command(workdir: Path, tasklist: Path | None, lock_kind: str, lease: float,
                   environ: dict[str, str]) -> ExitCode:
    """``--verify``: check that every task is in exactly one place; print the summary and
    one line per finding; returns 0 if consistent, :attr:`ExitCode.INCONSISTENT` if not."""
    from ..status import verify  # see status_command

    lock_file = lock_path(workdir, environ) if lock_kind == "flock" else None
    verdict = verify(StateStore(workdir, make_lock(workdir, lock_kind, environ)), lock_file,
                     lease, tasklist, time.time())
    for line in verdict.lines():
        click.echo(line)
    return ExitCode.OK if verdict.consistent else ExitCode.INCONSISTENT


def dry_run_command(tasklist: Path, workdir: Path, handler: TaskList, requeue_failed: bool,
                    accept: bool) -> ExitCode:
    """``--dry-run``: print ``ID<tab>command`` for each task a farmer would run now
    (:func:`~taskfarmer.store.preview.would_run`); changes nothing. Returns 0."""
    handler.prepare(tasklist, workdir)  # builds a PyTaskFarmer-style handler; others: nothing
    for task in would_run(workdir, tasklist, handler, requeue_failed, accept):
        click.echo(f"{task.id}\t{handler.command(task)}")
    return ExitCode.OK


def quarantined_command(workdir: Path) -> ExitCode:
    """``--quarantined``: print the nodes quarantined from ``workdir`` now, comma-separated
    (the value of ``sbatch --exclude``; an empty line if none); returns 0.

    Raises:
        WorkdirError: there is no such workdir.
    """
    if not workdir.is_dir():
        raise WorkdirError(workdir, "no such workdir")
    click.echo(exclude_list(Quarantines(StateFiles(workdir)).all(), time.time()))
    return ExitCode.OK
