"""Quarantine records: ``WORKDIR/quarantine/NODE``, one JSON file per node that quarantined
itself (its tasks failed fast while tasks succeeded elsewhere: :mod:`taskfarmer.farm.blackhole`).

A record names the node, when it was quarantined and until when, the farmer that did it, why,
and the executions that showed it (task IDs, exit codes, signals, run times: the tasks it
handed back). Farmers on that node refuse to start until it expires (:data:`QUARANTINE_TIME`)
or is removed; ``--status`` lists the records; :func:`exclude_list` makes the value of
``sbatch --exclude`` from them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import FilesystemError, StateError
from .files import StateFiles, private_tmp
from .leases import safe_component

#: Seconds a quarantine lasts: farmers on the node start again after it (or once the record is
#: removed). A broken node often stays broken until someone repairs it; a node quarantined
#: wrongly costs its farmers an hour; one still broken after it fails a few tasks fast and
#: quarantines itself again, handing them back.
QUARANTINE_TIME = 3600.0


@dataclass(frozen=True)
class FailedRun:
    """One execution that showed the node broken (handed back, not counted)."""

    id: int
    exit: int
    signal: int
    runtime: float


@dataclass(frozen=True)
class QuarantineRecord:
    """A node's quarantine."""

    node: str
    since: float  # epoch seconds
    until: float
    farmer: str
    reason: str
    attempts: tuple[FailedRun, ...]

    def active(self, now: float) -> bool:
        """In force at ``now`` (epoch seconds)."""
        return now < self.until

    def to_json(self) -> str:
        """The record file's content."""
        data = {"node": self.node, "since": round(self.since, 3), "until": round(self.until, 3),
                "farmer": self.farmer, "reason": self.reason,
                "attempts": [{"id": a.id, "exit": a.exit, "signal": a.signal,
                              "runtime": round(a.runtime, 3)} for a in self.attempts]}
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path) -> QuarantineRecord:
        """Parse :meth:`to_json` output.

        Raises:
            StateError: ``path`` does not hold a record.
        """
        try:
            data = json.loads(text)
            return cls(str(data["node"]), float(data["since"]), float(data["until"]),
                       str(data.get("farmer", "")), str(data.get("reason", "")),
                       tuple(FailedRun(int(a["id"]), int(a["exit"]), int(a.get("signal", 0)),
                                      float(a["runtime"])) for a in data.get("attempts", [])))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StateError(path, "not a quarantine record (remove it, or write it as "
                                   "docs/workdir.md says)") from None


def exclude_list(records: Iterable[QuarantineRecord], now: float) -> str:
    """The nodes quarantined at ``now``, sorted and comma-separated: the value of ``sbatch
    --exclude`` (``""`` if none)."""
    return ",".join(sorted({record.node for record in records if record.active(now)}))


class Quarantines:
    """The quarantine records of one workdir."""

    def __init__(self, files: StateFiles) -> None:
        self.directory = files.quarantine

    def path(self, node: str) -> Path:
        """Where ``node``'s record is."""
        return self.directory / safe_component(node)

    def write(self, record: QuarantineRecord) -> Path:
        """Write (or replace) the record of ``record.node``; returns its path.

        Written aside and renamed into place (``rename(2)`` is atomic, on NFS too): a farmer
        starting on the node, or ``--status``, reads the whole record or none.
        """
        path = self.path(record.node)
        try:
            self.directory.mkdir(exist_ok=True)
            tmp = private_tmp(path)
            with open(tmp, "w") as out:
                out.write(record.to_json())
            os.rename(tmp, path)
        except OSError as error:
            raise FilesystemError.from_oserror(path, "write", error) from None
        return path

    def read(self, node: str) -> QuarantineRecord | None:
        """``node``'s record, None if it has none.

        Opened by name, not ``stat``-ed: on NFS the open revalidates what the client cached, so
        a record another node wrote (or removed) a moment ago is seen.

        Raises:
            StateError: the file is not a record.
        """
        return self._read(self.path(node))

    def all(self) -> Sequence[QuarantineRecord]:
        """Every record, by node."""
        try:
            names = sorted(entry.name for entry in os.scandir(self.directory)
                           if ".tmp." not in entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [record for record in (self._read(self.directory / name) for name in names)
                if record is not None]

    @staticmethod
    def _read(path: Path) -> QuarantineRecord | None:
        try:
            with open(path) as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise FilesystemError.from_oserror(path, "read", error) from None
        return QuarantineRecord.from_json(text, path)
