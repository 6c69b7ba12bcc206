"""How a farmer run ended: its counts, why it stopped, and its exit code."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ExitCode
from ..store import Counts


@dataclass(frozen=True)
class FarmReport:
    """How a farmer run ended."""

    counts: Counts
    stopped_by: str | None
    work_left: bool
    error: str | None = None

    @property
    def exit_code(self) -> ExitCode:
        """0 all done; 1 done with failures; 2 error; 3 stopped with work left."""
        if self.error is not None:
            return ExitCode.ERROR
        if self.work_left:
            return ExitCode.STOPPED
        return ExitCode.FAILED if self.counts.failed else ExitCode.OK

    @property
    def outcome(self) -> str:
        """A few words for the last log line."""
        if self.error is not None:
            return f"error: {self.error}"
        if self.work_left:
            return f"stopped by {self.stopped_by}, work left"
        return "done with failures" if self.counts.failed else "done"
