"""Where each task's output goes: ``WORKDIR/logs``, in one of three layouts (``--logs``).

Creating a file is a metadata operation, the expensive kind on parallel filesystems: one per
task, all in one directory, for a 100,000-task list (measured in the NFS lab: 20,000 files in
12.2 s; on this machine's local disk 0.2-0.3 ms each). So besides PyTaskFarmer's layout:

``flat`` (default)
    ``logs/log_ID``, as PyTaskFarmer: one file per task, even for tasks that print nothing.
``spread``
    ``logs/K/log_ID`` with ``K = ID // 1000``: at most 1,000 files per directory (large
    directories are slow to create files in and to list, on Lustre and NFS above all).
``nonempty``
    ``logs/log_ID`` only for tasks that print something. Each worker writes into one scratch
    file of its own (``logs/.partial-WORKER``), emptied before each task (no create); a task
    that printed something has it hard-linked to ``log_ID`` (atomic, and never replacing
    the log of an earlier run, which gets the new output appended instead), and the next task
    starts a new scratch file. A killed worker leaves its scratch file, with the output of the
    task it ran.

A task that runs again appends to its log after a ``---- taskfarmer: task N runs again``
line, in every layout.

A ``logs/`` directory removed while the farm runs (``rm -rf WORKDIR/logs`` to free space) is
made again, empty, at the next task start, and the farm goes on: it holds only the tasks'
output, never state, so nothing but the removed logs is lost. The workdir itself is never
made again here: without it the state is gone, and the error stops the farm.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import operation

LOG_LAYOUTS = ("flat", "spread", "nonempty")
#: Logs per directory in the ``spread`` layout.
SPREAD = 1000


class TaskLogs:
    """The log files of one worker (``name``, unique in the workdir)."""

    def __init__(self, directory: Path, layout: str, name: str) -> None:
        self.directory = directory
        self.layout = layout
        self.scratch = directory / f".partial-{name}"

    def path(self, task_id: int) -> Path:
        """Where the log of ``task_id`` is."""
        if self.layout == "spread":
            return self.directory / str(task_id // SPREAD) / f"log_{task_id}"
        return self.directory / f"log_{task_id}"

    @operation("open", lambda self, task_id, *_: self.path(task_id))
    def open(self, task_id: int, rerun_note: bytes) -> int:
        """A descriptor for the output of ``task_id`` (the caller closes it)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        nonempty = self.layout == "nonempty"
        path = self.scratch if nonempty else self.path(task_id)
        if nonempty:
            flags |= os.O_TRUNC
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:  # spread: the first task of its directory; or logs/ removed
            self._make_directories(path)
            fd = os.open(path, flags, 0o644)
        try:
            if not nonempty and os.fstat(fd).st_size:
                os.write(fd, rerun_note)
        except OSError:
            os.close(fd)
            raise
        return fd

    def _make_directories(self, path: Path) -> None:
        """Make ``logs/`` (if it was removed) and the directory of ``path`` in it; not the
        workdir: a missing workdir fails."""
        for directory in (self.directory, path.parent):
            try:
                directory.mkdir()
            except FileExistsError:
                pass

    @operation("keep", lambda self, task_id, *_: self.path(task_id))
    def done(self, task_id: int, rerun_note: bytes) -> None:
        """The task has ended: ``nonempty`` keeps its output as ``log_ID`` if there is any."""
        if self.layout != "nonempty":
            return
        try:
            if os.stat(self.scratch).st_size == 0:
                return
        except FileNotFoundError:
            return
        path = self.path(task_id)
        try:
            os.link(self.scratch, path)  # fails rather than replace an earlier run's log
        except FileNotFoundError:  # logs/ removed (with the scratch file) since the task began
            return
        except FileExistsError:
            with open(self.scratch, "rb") as source, open(path, "ab") as log:
                log.write(rerun_note)
                while True:
                    block = source.read(1 << 20)
                    if not block:
                        break
                    log.write(block)
        self.scratch.unlink(missing_ok=True)

    def close(self) -> None:
        """The worker leaves: remove an empty scratch file."""
        if self.layout == "nonempty":
            try:
                if os.stat(self.scratch).st_size == 0:
                    self.scratch.unlink()
            except FileNotFoundError:
                pass
