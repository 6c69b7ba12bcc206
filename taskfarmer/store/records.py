"""Task records: beside each lease file, the task its worker runs and that task's process group.

``WORKDIR/.task-NAME`` (not in ``leases``, whose every file is a lease) holds one line of
:data:`~taskfarmer.hpc.groups.RECORD_SIZE` bytes, rewritten in place as each task starts
(:class:`~taskfarmer.hpc.groups.TaskGroup`). Only a process of the worker's own machine reads
it, when it takes the lease over: it kills that group first. Not in the lease file itself: a
write there would change the lease's mtime, which is its heartbeat, and a farmer whose main
process stalls must fall silent while its workers go on.

The worker keeps its record open and writes it with one ``pwrite`` per task: no open, no
close, so on a shared filesystem no round trip to the server (a reader on the same node sees
the node's cached pages). A record is made after its lease file and removed before it, so a
record never outlives its lease for long; a lease without one names no task to kill.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import operation
from ..hpc.groups import TaskGroup, blank_record
from .files import StateFiles


class TaskRecords:
    """The task records of a workdir's leases, and this process's descriptors of its own.

    Args:
        files: the workdir's files.
    """

    def __init__(self, files: StateFiles) -> None:
        self.files = files
        self._open: dict[str, int] = {}  # lease name -> descriptor of its record
        self._pid = os.getpid()  # whose descriptors those are (not a forked child's)

    def path(self, name: str) -> Path:
        """The task record of lease ``name``."""
        return self.files.task_record(name)

    @operation("create", lambda self, name: self.path(name))
    def create(self, name: str) -> None:
        """*locked* Make the blank record of our new lease ``name`` and keep it open. Written
        whole now, so that each task's line overwrites blocks the file already has (a full
        disk cannot refuse it)."""
        self._forget_foreign()
        fd = os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, blank_record())
        except BaseException:
            os.close(fd)
            raise
        self._open[name] = fd

    @operation("write", lambda self, name, group: self.path(name))
    def mark(self, name: str, group: TaskGroup) -> None:
        """Without the lock: our lease ``name``'s worker now runs the task of ``group``. A
        record removed by another node meanwhile (its lease taken over) gives a stale handle:
        nobody needs it any more."""
        try:
            os.pwrite(self._open[name], group.record(), 0)
        except OSError as error:
            if error.errno != errno.ESTALE:
                raise

    @operation("read", lambda self, name: self.path(name))
    def read(self, name: str) -> TaskGroup | None:
        """The group lease ``name``'s record names; None without one, or for a blank or torn
        one."""
        try:
            with open(self.path(name), "rb") as handle:
                text = handle.read().decode(errors="replace")
        except FileNotFoundError:
            return None
        return TaskGroup.parse(text)

    @operation("remove", lambda self, name: self.path(name))
    def remove(self, name: str) -> None:
        """*locked* Remove lease ``name``'s record (closed first if it is ours: on NFS,
        removing a file this node has open leaves a ``.nfs*`` file behind until it closes)."""
        self.drop(name)
        self.path(name).unlink(missing_ok=True)

    def drop(self, name: str) -> None:
        """Close our descriptor of lease ``name``'s record, if we have one. A failure is
        ignored (NFS reports a failed write-back at the close): the record mattered only while
        its lease lived."""
        self._forget_foreign()
        fd = self._open.pop(name, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        """Close every descriptor of ours (the process is leaving)."""
        self._forget_foreign()
        for name in list(self._open):
            self.drop(name)

    def _forget_foreign(self) -> None:
        """Descriptors inherited across ``fork`` are the parent's to close, not ours."""
        if self._pid != os.getpid():
            self._open = {}
            self._pid = os.getpid()
