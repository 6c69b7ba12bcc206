"""Lines appended to a farm's tasklist while it runs: imported as new tasks.

The main loop looks every :data:`~taskfarmer.farm.farmer.IMPORT_POLL` seconds and whenever it
runs out of work (see :mod:`taskfarmer.store.listimport`); the timeline marks each import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import TasklistError
from ..store import StateStore
from ..tasks import TaskList
from ..timeline.events import Event, instant
from ..timeline.file import Timeline
from .recording import counter_events


class ListGrowth:
    """Imports the lines appended to ``tasklist`` since the last look.

    A list whose imported part changed while we run is reported once and no longer imported
    from: the tasks already imported stay valid and are finished.

    Args:
        store: the state files.
        timeline: where the imports are marked and counted.
        handler: how to read the tasklist.
        tasklist: the tasklist's path.
        clock: the wall clock (seconds since the epoch).
        say: tells the farmer a line.
    """

    def __init__(self, store: StateStore, timeline: Timeline, handler: TaskList,
                 tasklist: Path, clock: Callable[[], float], say: Callable[[str], None]
                 ) -> None:
        self._store = store
        self._timeline = timeline
        self._handler = handler
        self._tasklist = tasklist
        self._clock = clock
        self._say = say
        self.changed = False  # the imported part changed: no more imports

    def appended(self, now: float, count: int, track: int) -> Event:
        """The timeline's mark of ``count`` tasks appended, on the farmer's ``track``."""
        return instant("tasks appended", now, track,
                       {"tasks": count, "tasklist": str(self._tasklist)})

    def import_new(self, track: int) -> None:
        """Import lines appended since (one ``stat`` when there are none)."""
        if self.changed or self._store.unimported_bytes(self._tasklist) <= 0:
            return
        try:
            with self._store.locked():
                added = self._store.import_list(self._tasklist, self._handler, starting=False)
                if added:
                    now = self._clock()
                    self._timeline.append([self.appended(now, added, track),
                                           *counter_events(self._timeline, now, pending=added)])
        except TasklistError as error:
            self.changed = True
            self._say(f"error: {error}; importing no more from it")
            return
        if added:
            self._say(f"imported {added} task(s) appended to {self._tasklist}")
