"""The farmer's side of the safety net at rest (:mod:`taskfarmer.store.orphans`): say what
came back, and recount the timeline's counters, which had counted those tasks as done."""

from __future__ import annotations

from typing import Callable

from ..store import StateCounter, StateStore
from ..timeline.counts import TaskCounts
from ..timeline.events import instant
from ..timeline.file import Timeline
from .recording import counter_events

#: How many IDs of the tasks put back a message and a timeline event list.
SHOWN_IDS = 20


def describe(ids: list[int]) -> str:
    """The farmer line telling that the tasks ``ids`` were recorded nowhere and came back."""
    shown = " ".join(str(task_id) for task_id in ids[:SHOWN_IDS])
    more = " ..." if len(ids) > SHOWN_IDS else ""
    return (f"{len(ids)} task(s) claimed but recorded nowhere (a state line lost or torn, "
            f"see torn) put back into toprocess: {shown}{more}")


class OrphanNet:
    """Puts back, at rest, the tasks that are recorded nowhere, and tells.

    Args:
        store: the state files.
        timeline: the timeline (its counters are recounted from the files).
        clock: the wall clock (seconds since the epoch).
        say: shows a farmer line.
    """

    def __init__(self, store: StateStore, timeline: Timeline, clock: Callable[[], float],
                 say: Callable[[str], None]) -> None:
        self._store = store
        self._timeline = timeline
        self._counter = StateCounter(store)
        self._clock = clock
        self._say = say

    def catch(self, track: int) -> int:
        """*locked* Put back the claimed tasks recorded nowhere (none while a lease exists);
        with a ``track`` (0: not chosen yet, the start recounts), mark it on the timeline.
        Returns how many came back."""
        tasks = self._store.requeue_orphans()
        if not tasks:
            return 0
        ids = [task.id for task in tasks]
        self._say(describe(ids))
        if track:
            counts = self._counter.counts()  # at rest the files tell every count
            self._timeline.state.reset(TaskCounts(counts.finished, counts.failed, 0,
                                                  counts.pending))
            now = self._clock()
            self._timeline.append([
                instant("recorded nowhere: put back", now, track,
                        {"tasks": len(ids), "ids": ids[:SHOWN_IDS]}),
                *counter_events(self._timeline, now)])
        return len(ids)
