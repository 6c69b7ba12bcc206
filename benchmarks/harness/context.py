"""One run of the harness: its options, its base directory, numbered run directories, results."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .report import log


@dataclass
class Bench:
    """What every section shares: the options, the base directory and the results so far."""

    args: argparse.Namespace
    base: Path
    results: dict[str, Any] = field(default_factory=dict)
    _serial: int = 0

    def rundir(self, label: str) -> Path:
        """A fresh directory for one run, with an empty ``work`` directory in it."""
        self._serial += 1
        d = self.base / f"run{self._serial:04d}-{label}"
        (d / "work").mkdir(parents=True)
        return d

    def skip(self, section: str, reason: str) -> None:
        """Report *section* as skipped because the farmer is unavailable (*reason*)."""
        log(f"  SKIPPED: farmer unavailable ({reason})\n")
        self.results[section] = {"skipped": reason}
