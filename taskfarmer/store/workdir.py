"""Setting a workdir up: its directories, the first ``toprocess``, repair after a crash."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import LostWriteError, WorkdirError
from .files import StateFiles, private_tmp
from .lines import cut_incomplete_line, lost_write


class Workdir:
    """Creates a workdir's directories and task list, and repairs half-written lines."""

    def __init__(self, files: StateFiles) -> None:
        self.files = files

    def prepare(self) -> None:
        """Create the workdir and its sub-directories (safe to race with other farmers).

        Raises:
            WorkdirError: a directory cannot be created or written, or the workdir is not a
                farm's (:meth:`check_ours`).
        """
        files = self.files
        self.check_ours()
        for directory in (files.workdir, files.logs, files.leases):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                reason = f"cannot create directory: {error.strerror}"
                raise WorkdirError(directory, reason) from None
            if not os.access(directory, os.W_OK | os.X_OK):
                raise WorkdirError(directory, "directory is not writable")

    def check_ours(self) -> None:
        """Refuse a directory that has ``finished``, ``failed`` or ``claims`` lines but no
        ``toprocess`` (``-w .`` in a directory of other files): its lines would count as tasks
        done. Safe while other farmers start: a farm creates ``toprocess`` before any of them
        gets a line, and never removes it.

        Raises:
            WorkdirError: it is such a directory.
        """
        files = self.files
        if files.toprocess.exists():
            return
        for path in (files.finished, files.failed, files.claims):
            try:
                if path.stat().st_size:
                    raise WorkdirError(files.workdir, (
                        f"has a {path.name} file but no toprocess: not a farm's workdir (or "
                        "its toprocess was deleted); give a new or empty --workdir"))
            except OSError:  # none, or no directory there: prepare() says what is wrong
                continue

    def initialized(self) -> bool:
        """True once ``toprocess`` exists (some farmer has read the tasklist)."""
        return self.files.exists(self.files.toprocess)

    def initialize(self, lines: Iterable[str]) -> bool:
        """*locked* Create ``toprocess`` from the task lines unless it exists already.

        The list is written to a temporary file of this process's own and hard-linked into
        place: ``link(2)`` is atomic and fails if ``toprocess`` exists, on the NFS server too,
        so other farmers (and a restart after a crash) see either no ``toprocess`` or the whole
        list, and two farmers initializing at once — even without a working lock — do not
        crash or replace each other's list: the loser finds it there. Where hard links are not
        supported, it is renamed into place (atomic as well). Returns True if this call
        created it.
        """
        files = self.files
        if files.exists(files.toprocess):
            return False
        for path in (files.finished, files.failed, files.claims):
            files.create(path)
        tmp = private_tmp(files.toprocess)
        try:
            with open(tmp, "wb") as out:
                buffer: list[bytes] = []
                for task_id, text in enumerate(lines):
                    buffer.append(b"%d %s\n" % (task_id, text.encode("utf-8")))
                    if len(buffer) >= 4096:
                        out.write(b"".join(buffer))
                        buffer.clear()
                out.write(b"".join(buffer))
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, files.toprocess)
            except FileExistsError:
                return False
            except OSError as error:
                if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                    raise WorkdirError(files.toprocess,
                                       f"cannot create: {error.strerror}") from None
                os.rename(tmp, files.toprocess)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def repair(self) -> list[tuple[Path, bytes]]:
        """*locked* Move half-written last lines (left by a crashed node) to ``torn``.

        Every writer appends whole lines in one ``write(2)``, so a last line without its
        newline can only come from a crash in the middle of a write (or a hand edit). It is
        cut off and kept, with the file it came from, in ``WORKDIR/torn``. Returns what was cut.

        Raises:
            LostWriteError: a state file's cut tail is what no farmer wrote
                (:func:`lost_write`); every file is repaired first.
        """
        files = self.files
        cut = []
        lost = None
        # The job log (taskfarmer.logs.joblog) is appended to like the state files; it is a
        # report, not state: a write it lost loses no task.
        for path in (files.toprocess, files.claims, files.finished, files.failed, files.attempts,
                     files.failed_requeue, files.joblog):
            fragment = cut_incomplete_line(path, files.torn)
            if fragment is None:
                continue
            cut.append((path, fragment))
            if lost is None and path != files.joblog and lost_write(fragment):
                lost = LostWriteError(path, path.stat().st_size, fragment)  # (after the cut)
        if lost is not None:
            raise lost
        return cut

