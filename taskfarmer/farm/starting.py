"""How a farmer appears on the timeline when it starts: its track, and the start events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

from ..hpc.identity import Identity
from ..hpc.slurm import job_labels
from ..store import StateCounter, StateStore
from ..timeline.counts import TaskCounts
from ..timeline.events import Event, choose_pid, farmer_tracks, instant, process_title
from ..timeline.file import Timeline
from .recording import counter_events


def start_track(store: StateStore, timeline: Timeline, counter: StateCounter,
                identity: Identity, farmer: str, proc: int, environ: Mapping[str, str],
                now: float, requeued: int, appended: int,
                appended_mark: Callable[[float, int, int], Event]) -> tuple[int, list[Event]]:
    """*locked* Choose the farmer's track (process id), recount the tasks if no farmer runs
    (the files then tell every count), and make the start events: ``appended`` tasks were
    appended to the list since the last farmer (marked by ``appended_mark(now, count,
    track)``), ``requeued`` failed ones put back.

    Returns:
        The track, and the events to append to the timeline.
    """
    state = timeline.state
    if not store.any_leases():  # no task is running: the files tell every count
        counts = counter.counts()
        state.reset(TaskCounts(counts.finished, counts.failed, 0, counts.pending))
    elif requeued or appended:
        state.change(failed=-requeued, pending=requeued + appended)
    used = state.track_ids()
    track = choose_pid(identity.pid, used, proc, farmer)
    state.add_track_id(track)
    labels = job_labels(environ)
    title = process_title(identity.node, labels, track == identity.pid)
    events = farmer_tracks(track, title, labels, len(used) + 1, proc)
    events.append(instant("farmer start", now, track,
                          {"node": identity.node, "pid": identity.pid, "proc": proc, **labels}))
    if appended:
        events.append(appended_mark(now, appended, track))
    return track, events + counter_events(timeline, now)
