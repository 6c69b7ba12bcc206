"""What the farm tells a person while it runs, as an interface the CLI fills in.

The farm knows nothing of terminals: it calls a :class:`Display`. The CLI injects the rich
progress bar or the plain lines (:mod:`taskfarmer.cli.progress`); a farm built without one
(tests, library use) says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from ..store import Counts


@dataclass(frozen=True)
class Snapshot:
    """Counts plus this farmer's running tasks, and the workdir's tasks in all."""

    counts: Counts
    running: int
    total: int | None = None  # the tasks imported (None: unknown)


class Display(Protocol):
    """The five things a farm shows."""

    def log(self, text: str) -> None:
        """Print one line as it is (workers stamp their own lines)."""

    def say(self, text: str) -> None:
        """Print a farmer line (the display adds time and name)."""

    def start(self, snapshot: Snapshot) -> None:
        """The farm starts working."""

    def update(self, snapshot: Snapshot) -> None:
        """The counts may have changed."""

    def finish(self, snapshot: Snapshot, outcome: str) -> None:
        """The farm ended with ``outcome``."""


#: Makes the display of the farmer named by its argument, reading time from the clock.
DisplayFactory = Callable[[str, Callable[[], float]], Display]


class QuietDisplay:
    """Shows nothing: the default of a farm built without a display."""

    def log(self, text: str) -> None:
        """Nothing."""

    def say(self, text: str) -> None:
        """Nothing."""

    def start(self, snapshot: Snapshot) -> None:
        """Nothing."""

    def update(self, snapshot: Snapshot) -> None:
        """Nothing."""

    def finish(self, snapshot: Snapshot, outcome: str) -> None:
        """Nothing."""


def quiet(name: str, clock: Callable[[], float]) -> Display:
    """The :data:`DisplayFactory` of :class:`QuietDisplay`."""
    return QuietDisplay()
