"""Where each task's output goes: ``WORKDIR/logs``, in one of four layouts (``--logs``).

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
``packed``
    no file per task: each worker process appends its tasks' output to one data file, with an
    index of frames (:mod:`.packed`). Two files per worker process, whatever the task count.

A task that runs again appends to its log after a ``---- taskfarmer: task N runs again``
line (:func:`rerun_note`), in the layouts with a file per task; in ``packed`` each execution
is a frame of its own.

A ``logs/`` directory removed while the farm runs (``rm -rf WORKDIR/logs`` to free space) is
made again, empty, at the next task start, and the farm goes on: it holds only the tasks'
output, never state, so nothing but the removed logs is lost. The workdir itself is never
made again here: without it the state is gone, and the error stops the farm.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import operation
from .packed import PackedLogs

LOG_LAYOUTS = ("flat", "spread", "nonempty", "packed")
#: The layouts that create a file per task (``nonempty``: per task that prints something).
FILE_PER_TASK = ("flat", "spread", "nonempty")
#: Logs per directory in the ``spread`` layout.
SPREAD = 1000


def rerun_note(task_id: int, node: str) -> bytes:
    """The line before the output of a task's next execution in its log file."""
    return f"---- taskfarmer: task {task_id} runs again on {node} ----\n".encode()


def log_path(directory: Path, layout: str, task_id: int) -> Path:
    """Where the log file of ``task_id`` is in ``layout`` (not ``packed``)."""
    if layout == "spread":
        return directory / str(task_id // SPREAD) / f"log_{task_id}"
    return directory / f"log_{task_id}"


def inode_warning(layout: str, free_inodes: int | None, tasks: int) -> str | None:
    """The warning for a run whose logs may exhaust the filesystem's inodes (None: none).

    Args:
        layout: ``--logs``.
        free_inodes: what the filesystem reports free for us (None: it reports none).
        tasks: the tasks left to run.
    """
    if layout not in FILE_PER_TASK or free_inodes is None or free_inodes >= tasks:
        return None
    return (f"warning: {tasks} task(s) to run and {free_inodes} free inode(s) on the "
            f"workdir's filesystem: --logs {layout} creates a file per task; --logs packed "
            "does not")


def free_inodes(path: Path) -> int | None:
    """The inodes free for us on ``path``'s filesystem; None if it counts none (btrfs, some
    network filesystems report 0 inodes in all)."""
    try:
        status = os.statvfs(path)
    except OSError:
        return None
    return status.f_favail if status.f_files else None


class TaskLogs:
    """The log files of one worker (``name``, unique in the workdir)."""

    def __init__(self, directory: Path, layout: str, name: str) -> None:
        self.directory = directory
        self.layout = layout
        self.scratch = directory / f".partial-{name}"
        self.packed = PackedLogs(directory, name) if layout == "packed" else None

    def path(self, task_id: int) -> Path:
        """Where the log of ``task_id`` is (``packed``: the current data file)."""
        if self.packed is not None:
            return self.packed.path()
        return log_path(self.directory, self.layout, task_id)

    def open(self, task_id: int, node: str, start: float) -> int:
        """A descriptor for the output of ``task_id``, started at ``start`` on ``node`` (the
        caller closes it)."""
        if self.packed is not None:
            return self.packed.open(task_id, start, node)
        return self._open_file(task_id, rerun_note(task_id, node))

    @operation("open", lambda self, task_id, *_: self.path(task_id))
    def _open_file(self, task_id: int, rerun_note: bytes) -> int:
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

    def done(self, task_id: int, node: str, outcome: str, lingering: bool) -> None:
        """The task has ended with ``outcome`` (``exit 0``, ``timed out`` ...): ``nonempty``
        keeps its output as ``log_ID`` if there is any, ``packed`` ends its frame;
        ``lingering``: processes of its group outlive it."""
        if self.packed is not None:
            self.packed.done(task_id, outcome, lingering)
        elif self.layout == "nonempty":
            self._keep(task_id, rerun_note(task_id, node))

    @operation("keep", lambda self, task_id, *_: self.path(task_id))
    def _keep(self, task_id: int, rerun_note: bytes) -> None:
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
        """The worker leaves: remove an empty scratch file, close the packed files."""
        if self.packed is not None:
            self.packed.close()
        if self.layout == "nonempty":
            try:
                if os.stat(self.scratch).st_size == 0:
                    self.scratch.unlink()
            except FileNotFoundError:
                pass
