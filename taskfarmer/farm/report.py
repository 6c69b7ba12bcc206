"""How a farmer run ended: its counts, why it stopped, its exit code, its I/O statistics."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

from ..errors import ExitCode
from ..store import Counts, StateStore


@dataclass(frozen=True)
class FarmReport:
    """How a farmer run ended."""

    counts: Counts
    stopped_by: str | None
    work_left: bool
    error: str | None = None
    halted: bool = False  # the workdir's farm was halted (--halt)
    quarantine: str | None = None  # the line that says our node was quarantined

    @property
    def exit_code(self) -> ExitCode:
        """0 all done; 1 done with failures; 2 error; 3 stopped with work left; 5 halted
        with work left; 6 our node was quarantined."""
        if self.error is not None:
            return ExitCode.ERROR
        if self.quarantine is not None:
            return ExitCode.QUARANTINED
        if self.work_left:
            return ExitCode.HALTED if self.halted else ExitCode.STOPPED
        return ExitCode.FAILED if self.counts.failed else ExitCode.OK

    @property
    def outcome(self) -> str:
        """A few words for the last log line."""
        if self.error is not None:
            return f"error: {self.error}"
        if self.quarantine is not None:
            return "node quarantined"
        if self.work_left:
            return f"{'halted' if self.halted else f'stopped by {self.stopped_by}'}, work left"
        return "done with failures" if self.counts.failed else "done"


#: The variable naming a file to which a farmer appends its lock statistics when it ends (for
#: benchmarks: ``benchmarks/nfs_bench.py`` sums them over the farmers of a run).
STATS_VARIABLE = "TASKFARMER_STATS"


def append_stats(environ: Mapping[str, str], farmer: str, store: StateStore,
                 say: Callable[[str], None]) -> None:
    """Leave the farmer's final counts of opens in the workdir (coherent mode: ``--status``
    shows them) and, with :data:`STATS_VARIABLE` set, append one JSON line to that file: the
    farmer's lock holds, hand-overs from another node and (coherent mode) opens of workdir files
    and results recorded. A failure to write either is said, not raised."""
    try:
        counts = store.opens.save(farmer)
    except OSError as error:
        counts = store.opens.record(farmer)
        say(f"cannot write {store.files.farmers / farmer}: {error.strerror}")
    path = environ.get(STATS_VARIABLE)
    if not path:
        return
    holds, handovers = store.lock_holds
    record = {"farmer": farmer, "holds": holds, "handovers": handovers,
              **({"opens": counts.opens, "results": counts.results} if counts else {})}
    try:
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as error:
        say(f"cannot write the {STATS_VARIABLE} file {path}: {error.strerror}")
