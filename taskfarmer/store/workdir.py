"""Setting a workdir up: its directories, the first ``toprocess``, repair after a crash."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Tuple

from ..errors import WorkdirError
from .files import StateFiles
from .lines import READ_CHUNK


class Workdir:
    """Creates a workdir's directories and task list, and repairs half-written lines."""

    def __init__(self, files: StateFiles) -> None:
        self.files = files

    def prepare(self) -> None:
        """Create the workdir and its sub-directories (safe to race with other farmers)."""
        files = self.files
        for directory in (files.workdir, files.logs, files.leases):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                reason = f"cannot create directory: {error.strerror}"
                raise WorkdirError(directory, reason) from None
            if not os.access(directory, os.W_OK | os.X_OK):
                raise WorkdirError(directory, "directory is not writable")

    def initialized(self) -> bool:
        """True once ``toprocess`` exists (some farmer has read the tasklist)."""
        return self.files.toprocess.exists()

    def initialize(self, lines: Iterable[str]) -> bool:
        """*locked* Create ``toprocess`` from the task lines unless it exists already.

        The list is written to ``toprocess.tmp`` and renamed into place: ``rename(2)`` is
        atomic, so other farmers (and a restart after a crash) see either no ``toprocess`` or
        the whole list. Returns True if this call created it.
        """
        files = self.files
        if files.toprocess.exists():
            return False
        for path in (files.finished, files.failed, files.claims):
            files.create(path)
        tmp = files.workdir / "toprocess.tmp"
        try:
            with open(tmp, "wb") as out:
                buffer: List[bytes] = []
                for task_id, text in enumerate(lines):
                    buffer.append(b"%d %s\n" % (task_id, text.encode("utf-8")))
                    if len(buffer) >= 4096:
                        out.write(b"".join(buffer))
                        buffer.clear()
                out.write(b"".join(buffer))
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.rename(tmp, files.toprocess)
        return True

    def repair(self) -> List[Tuple[Path, bytes]]:
        """*locked* Move half-written last lines (left by a crashed node) to ``torn``.

        Every writer appends whole lines in one ``write(2)``, so a last line without its
        newline can only come from a crash in the middle of a write (or a hand edit). It is
        cut off and kept, with the file it came from, in ``WORKDIR/torn``. Returns what was cut.
        """
        files = self.files
        cut = []
        # The job log (taskfarmer.joblog) is appended to like the state files.
        for path in (files.toprocess, files.claims, files.finished, files.failed, files.attempts,
                     files.failed_requeue, files.workdir / "joblog"):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size == 0:
                continue
            with open(path, "rb+") as handle:
                start = max(0, size - READ_CHUNK)
                handle.seek(start)
                tail = handle.read()
                if tail.endswith(b"\n"):
                    continue
                newline = tail.rfind(b"\n")
                keep = start + newline + 1 if newline >= 0 else 0
                handle.seek(keep)
                fragment = handle.read()
                handle.truncate(keep)
            with open(files.torn, "ab") as torn:
                torn.write(b"%s: %s\n" % (path.name.encode(), fragment))
            cut.append((path, fragment))
        return cut
