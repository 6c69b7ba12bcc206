"""PyTaskFarmer's tasklist-handler classes, for handlers written against them.

PyTaskFarmer's handlers live in ``taskfarmer.task``; users subclass :class:`ListTaskList`
(usually overriding ``__init__`` to take INI arguments and ``__getitem__`` to turn a line into
a command, or rebuilding ``self.tasks`` in ``__init__``) and name their class in a
``tasklists.d`` INI file. Such classes run unchanged through the adapter
:class:`taskfarmer.compat.tasklist.LegacyTaskList`: it builds the handler once with the
tasklist path and the workdir, as PyTaskFarmer did, takes ``tasks`` (the task texts, in task-ID
order) as the tasks, and runs ``handler[task_id]``.

What is kept of PyTaskFarmer's API: the constructor ``(path, workdir, **ini_arguments)``, the
attributes ``path``, ``workdir``, ``tasks``, ``path_toprocess``, ``path_finished``,
``path_failed``, ``__getitem__``, ``__len__``, and ``lock``/``unlock`` (which take the
farmer's workdir lock, so a handler can still guard files it shares with other farmers). The
methods that kept the state (``pop_task``, ``record_done_task``, ``read_toprocess`` ...) are
not: the state files are the farmer's (claims, leases, compaction).

New handlers should subclass :class:`taskfarmer.tasks.TaskList` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from .store import WorkdirLock, make_lock


class TaskList:
    """PyTaskFarmer's handler base class: a tasklist ``path`` farmed in ``workdir``.

    Args:
        path: the tasklist file.
        workdir: the workdir (it exists when handlers are built).
    """

    def __init__(self, path: str, workdir: str) -> None:
        self.path = path
        self.workdir = workdir
        self.tasks: list[str] = []
        self._lock: WorkdirLock | None = None

    def lock(self) -> None:
        """Take the farmer's lock of the workdir (held already: nothing)."""
        if self._lock is None:
            kind = os.environ.get("TASKFARMER_LOCK") or "flock"
            self._lock = make_lock(Path(self.workdir), kind, os.environ)
        if not self._lock.is_locked:
            self._lock.acquire()

    def unlock(self) -> None:
        """Release the lock :meth:`lock` took (not held: nothing)."""
        if self._lock is not None and self._lock.is_locked:
            self._lock.release(force=True)

    def __getitem__(self, taskid: int) -> str:
        """The command of task ``taskid``: its line."""
        return self.tasks[taskid]

    def __len__(self) -> int:
        """The number of tasks."""
        return len(self.tasks)


class ListTaskList(TaskList):
    """One task per line of ``path``: lines are stripped; blank lines and lines starting with
    ``#`` are not tasks (PyTaskFarmer's reading, kept for the subclasses that rely on it).

    Raises:
        OSError: the tasklist cannot be read (the adapter reports it in one line).
    """

    def __init__(self, path: str, workdir: str) -> None:
        super().__init__(path, workdir)
        self.path_toprocess = os.path.join(workdir, "toprocess")
        self.path_finished = os.path.join(workdir, "finished")
        self.path_failed = os.path.join(workdir, "failed")
        with open(path, encoding="utf-8") as handle:
            self.tasks = [line.strip() for line in handle
                          if not line.startswith("#") and line.strip()]
