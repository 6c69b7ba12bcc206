"""``WORKDIR/halted``: the record of a farm halted by ``--halt``, which every farmer of the
workdir obeys.

One JSON line: how the farm halts (``now``: running tasks are stopped and put back; ``soon``:
they finish), the ``--halt`` rule, the failures and ended tasks counted when it was reached,
who reached it and when. It is written once, under the lock, by the worker whose recorded
failure reached the rule, and read by every worker before it claims (under the lock) and by
every farmer's main process about twice a second (without it). A farmer does not start on a
halted workdir; removing the file is what lets the farm go on (see ``docs/usage.md#halt``).

A file that is not such a record (``touch WORKDIR/halted``) halts the farm as ``soon``: a way
to drain every farmer of a workdir by hand.
"""

from __future__ import annotations

import errno
import json
import os
import time
from dataclasses import asdict, dataclass

from ..errors import FilesystemError
from .files import StateFiles, replace_file

#: The farm stops its running tasks and puts them back.
NOW = "now"
#: The farm lets its running tasks finish, starting none.
SOON = "soon"


@dataclass(frozen=True)
class HaltRecord:
    """Why and how a farm was halted."""

    when: str  # NOW or SOON
    rule: str = ""  # the --halt rule reached ("" for a file made by hand)
    failed: int = 0  # failures counted (since the halting farmer started)
    ended: int = 0  # tasks that ended, finished or failed, counted then
    farmer: str = ""
    at: float = 0.0  # epoch seconds
    task: int = -1  # the failed task whose recording reached the rule

    def encode(self) -> bytes:
        """The file's content."""
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> HaltRecord:
        """The record in ``data``; anything else is a halt by hand (:data:`SOON`)."""
        try:
            fields = json.loads(data)
            record = cls(**fields)
        except (ValueError, TypeError):
            return cls(SOON)
        return record if record.when in (NOW, SOON) else cls(SOON)

    def describe(self) -> str:
        """``halted at 2026-12-02 15:04:05 by FARMER: --halt now,fail=1 reached at task 7 (1
        of 3 task(s) failed)``."""
        if not self.rule:
            return "halted by hand (a halted file without a --halt record)"
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))
        return (f"halted at {at} by {self.farmer}: --halt {self.rule} reached at task "
                f"{self.task} ({self.failed} of {self.ended} task(s) failed)")


def read_halt(files: StateFiles, locked: bool) -> HaltRecord | None:
    """The workdir's halt record, or None.

    Without the lock (``locked`` false) on a filesystem shared between nodes (coherent mode),
    the workdir directory is opened first: an NFS client may answer the lookup of a name from
    a cached "no such file" until the directory's attributes expire (up to a minute); opening
    the directory revalidates them (close-to-open), as :meth:`StateFiles.begin_hold` does for a
    lock hold. A stale handle is a record removed on another node: none.
    """
    if files.coherent and not locked:
        try:
            os.close(os.open(files.workdir, os.O_RDONLY | os.O_DIRECTORY))
        except OSError:
            pass  # the open of the record says what matters
    try:
        with open(files.halted, "rb") as handle:
            data = handle.read(1 << 16)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ESTALE:
            return None
        raise FilesystemError.from_oserror(files.halted, "read", error) from None
    return HaltRecord.decode(data)


def write_halt(files: StateFiles, record: HaltRecord) -> HaltRecord:
    """*locked* Halt the farm with ``record`` unless it is halted already; the record in force
    (the first one written stays)."""
    found = read_halt(files, locked=True)
    if found is not None:
        return found
    try:
        replace_file(files.halted, record.encode())
    except OSError as error:
        raise FilesystemError.from_oserror(files.halted, "write", error) from None
    return record
