"""A running farmer's view of its tasklist: lines appended since are imported (see
:mod:`taskfarmer.store.listimport`), and the number of tasks imported is the farm's total."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import StateError, TasklistError
from ..store import StateStore
from ..tasks import TaskList
from ..timeline.events import Event, instant
from ..timeline.file import Timeline
from .recording import counter_events

#: Seconds between two reads of the number of tasks imported (for the display's total).
TOTAL_REFRESH = 2.0


class ListGrowth:
    """Imports the lines appended to a farm's tasklist while it runs.

    Args:
        store: the workdir's state.
        timeline: the timeline (an import is marked on it).
        handler: reads the tasklist.
        tasklist: the tasklist.
        clock: the wall clock (seconds since the epoch).
        monotonic: the monotonic clock.
        say: tells a line.
    """

    def __init__(self, store: StateStore, timeline: Timeline, handler: TaskList,
                 tasklist: Path, clock: Callable[[], float], monotonic: Callable[[], float],
                 say: Callable[[str], None]) -> None:
        self.store = store
        self.timeline = timeline
        self.handler = handler
        self.tasklist = tasklist
        self.clock = clock
        self.monotonic = monotonic
        self.say = say
        self.changed = False  # the imported part changed: no more imports
        self._total: int | None = None
        self._total_at = -TOTAL_REFRESH

    def appended(self, now: float, count: int, track: int) -> Event:
        """The timeline's mark of ``count`` tasks appended, on ``track``."""
        return instant("tasks appended", now, track,
                       {"tasks": count, "tasklist": str(self.tasklist)})

    def import_growth(self, track: int) -> None:
        """Import lines appended to the tasklist since (one ``stat`` when there are none).

        A list whose imported part changed while we run is reported once and no longer
        imported from: the tasks already imported stay valid and are finished.
        """
        if self.changed or self.store.unimported_bytes(self.tasklist) <= 0:
            return
        try:
            with self.store.locked():
                added = self.store.import_list(self.tasklist, self.handler, starting=False)
                if added:
                    now = self.clock()
                    self.timeline.append([self.appended(now, added, track),
                                          *counter_events(self.timeline, now, pending=added)])
        except TasklistError as error:
            self.changed = True
            self.say(f"error: {error}; importing no more from it")
            return
        if added:
            self._total_at = -TOTAL_REFRESH
            self.say(f"imported {added} task(s) appended to {self.tasklist}")

    def total(self) -> int | None:
        """The tasks imported into the workdir (by any farmer), read again at most every
        :data:`TOTAL_REFRESH` seconds; None if unknown."""
        now = self.monotonic()
        if now - self._total_at >= TOTAL_REFRESH:
            self._total_at = now
            try:
                imported = self.store.imported()
            except StateError:  # said by whoever reads it for the state's sake
                imported = None
            self._total = imported.tasks if imported is not None else None
        return self._total
