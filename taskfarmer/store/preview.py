"""What a farmer starting now would run, read without changing anything (``--dry-run``).

In the order a farmer takes them: the tasks pending in ``toprocess`` (after the cursor), then
those of the tasklist's lines not imported yet, then, with ``--requeue-failed``, the failed
ones. A workdir that does not exist yet runs the whole list; a PyTaskFarmer workdir, what its
adoption leaves to do (:func:`.adopt.still_to_do`). A list whose imported part changed is
refused as a farmer would refuse it. Claimed tasks (running, or those of a dead farmer until
a farmer takes its lease over) are not listed. Nothing is locked: a farmer running meanwhile
may have taken some of the tasks listed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from ..tasks import Task, TaskList, raw_lines
from .adopt import still_to_do, unadopted
from .files import StateFiles
from .ledger import Ledger
from .lines import line_ids, lines, parse_task_line
from .listcheck import changed, first_difference
from .listimport import ListImport


def would_run(workdir: Path, tasklist: Path, handler: TaskList, requeue_failed: bool = False,
              accept: bool = False) -> Iterator[Task]:
    """The tasks a farmer of ``tasklist`` on ``workdir`` would run, in order (see the module
    docstring); ``accept``: as with ``--accept-list``.

    Raises:
        TasklistError: the list cannot be read, has a line that is not a task, or its
            imported part changed (and not ``accept``).
        StateError: a state file has a malformed line.
    """
    files = StateFiles(workdir)
    if not files.toprocess.exists():
        yield from (Task(task_id, text) for task_id, text in enumerate(handler.lines(tasklist)))
        return
    if unadopted(files):
        todo = still_to_do(files, handler.lines(tasklist))
        yield from (Task(task_id, todo[task_id]) for task_id in sorted(todo))
        return
    yield from _pending(files)
    yield from _not_imported(files, tasklist, handler, accept)
    if requeue_failed:
        yield from (parse_task_line(line, files.failed, offset)
                    for offset, line in lines(files.failed))


def _pending(files: StateFiles) -> Iterator[Task]:
    """The tasks after the cursor of ``toprocess`` (during a compaction: all of the new one)."""
    cursor = Ledger(files).peek_cursor()
    path = files.toprocess if cursor is not None else files.toprocess_new
    for offset, line in lines(path, cursor or 0):
        yield parse_task_line(line, path, offset)


def _not_imported(files: StateFiles, tasklist: Path, handler: TaskList, accept: bool
                  ) -> Iterator[Task]:
    """The tasks of the lines after the imported part (its last line included as if at
    rest); the list is checked against the copy first."""
    state = ListImport(files).state()
    if state is None:  # a workdir from before imports were remembered: its tasks come first
        if handler.grows:
            known = 1 + max(max(line_ids(path), default=-1)
                            for path in (files.toprocess, files.finished, files.failed))
            yield from (Task(task_id, text) for task_id, text
                        in enumerate(handler.lines(tasklist)) if task_id >= known)
        return
    if state.fixed or not tasklist.exists():
        return
    with TaskList.open(tasklist) as handle:
        if not accept:
            end = min(os.fstat(handle.fileno()).st_size, state.bytes)
            difference = first_difference(files.tasklist, handle, 0, end)
            if difference is not None or end < state.bytes:
                raise changed(tasklist, files.workdir, files.tasklist, handle,
                              (state.bytes, state.lines), difference)
        handle.seek(0)
        rest = islice(raw_lines(handle), state.lines, None)
        texts = TaskList.parse(tasklist, rest, state.lines + 1)
        yield from (Task(state.tasks + index, text) for index, text in enumerate(texts))
