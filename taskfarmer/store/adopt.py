"""Adopting a workdir that ``farmer`` did not create: PyTaskFarmer's.

``farmer`` creates ``claims`` together with ``toprocess``, so a workdir with ``toprocess`` but
no ``claims`` was made by PyTaskFarmer. PyTaskFarmer's stops are often unclean: a task killed
after it was recorded can be back in ``toprocess`` (it would run twice), and a task taken just
before the stop can be in no file at all (it would never run, and the farm would end "done"
without it). So the first farmer to take the lock of such a workdir reconciles it with the
tasklist, once: ``toprocess`` becomes exactly the tasks that are neither finished nor failed
(those it listed, with their lines, plus those in no file, from the tasklist), in task-ID
order; tasks recorded more than once are counted, and left as they are. ``claims`` is created
last: until then the workdir still looks unadopted, so a farmer killed in the middle leaves the
work to the next one (reconciling twice gives the same result).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..tasks import Task
from .files import StateFiles
from .lines import lines, parse_task_line, task_line

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Adoption:
    """What reconciling an adopted workdir found and did (counts of tasks)."""

    finished: int
    failed: int
    pending: int
    put_back: int
    dropped: int
    duplicates: int

    def describe(self) -> str:
        """One line for the user."""
        return (f"adopted a workdir farmer did not create (PyTaskFarmer's): {self.finished} "
                f"finished, {self.failed} failed, {self.pending} to do; put back "
                f"{self.put_back} task(s) found in no file, took {self.dropped} finished or "
                f"failed task(s) out of toprocess; {self.duplicates} task(s) recorded more "
                "than once (left as they are)")


def unadopted(files: StateFiles) -> bool:
    """*locked* True for a workdir with ``toprocess`` and without ``claims``."""
    return files.toprocess.exists() and not files.claims.exists()


def _texts(path: Path) -> dict[int, str]:
    """``ID -> task`` of an ``ID task`` file (the last line of an ID wins)."""
    return {task.id: task.text
            for task in (parse_task_line(line, path, offset) for offset, line in lines(path))}


def _ids(path: Path) -> Counter:
    """How many lines each task ID has in ``path``."""
    return Counter(parse_task_line(line, path, offset).id for offset, line in lines(path))


def still_to_do(files: StateFiles, tasklist: Iterable[str]) -> dict[int, str]:
    """The tasks an adoption leaves in ``toprocess`` (``ID -> task``): those neither finished
    nor failed, listed there or in no file at all (read only: for ``--dry-run``).

    Raises:
        StateError: a state file has a malformed line.
        TasklistError: the tasklist cannot be read.
    """
    return _plan(files, tasklist)[0]


def _plan(files: StateFiles, tasklist: Iterable[str]
          ) -> tuple[dict[int, str], Counter, Counter, set[int], int]:
    """(todo, finished, failed, IDs listed in toprocess and recorded, tasks put back)."""
    finished = _ids(files.finished)
    failed = _ids(files.failed)
    listed = _texts(files.toprocess)
    recorded: set[int] = set(finished) | set(failed)
    todo = {task_id: text for task_id, text in listed.items() if task_id not in recorded}
    put_back = 0
    for task_id, text in enumerate(tasklist):
        if task_id not in recorded and task_id not in todo:
            todo[task_id] = text
            put_back += 1
    return todo, finished, failed, set(listed) & recorded, put_back


def reconcile(files: StateFiles, tasklist: Iterable[str]) -> Adoption:
    """*locked* Reconcile the state files of an adopted workdir with the task lines.

    Raises:
        StateError: a state file has a malformed line.
        TasklistError: the tasklist cannot be read.
    """
    todo, finished, failed, dropped, put_back = _plan(files, tasklist)
    both = finished + failed
    tmp = files.toprocess_adopt
    with open(tmp, "wb") as out:
        out.write(b"".join(task_line(Task(task_id, todo[task_id])) for task_id in sorted(todo)))
        out.flush()
        os.fsync(out.fileno())
    os.rename(tmp, files.toprocess)  # atomic: a crash leaves the old list or the new one
    files.forget(files.toprocess)  # a descriptor of the old file would be stale
    files.create(files.claims)  # last: from now on the workdir is ours
    return Adoption(finished=len(finished), failed=len(failed), pending=len(todo),
                    put_back=put_back, dropped=len(dropped),
                    duplicates=sum(1 for count in both.values() if count > 1))
