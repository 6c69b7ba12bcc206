"""How many tasks a worker claims at once, and when it records the results it holds.

A worker takes the lock to claim a *chunk* of tasks and then runs them one after the other
without it; the results are recorded in batches. So one lock hold serves many short tasks
(the lock, and on a shared filesystem every file opened under it, is what one workdir's
throughput is bounded by: see "The ceiling of one workdir" in ``docs/design.md``), while a
long task still claims one at a time. The decisions are pure functions, unit-tested alone:

* :func:`wanted`: enough tasks to keep the slot busy for :data:`CLAIM_PERIOD` seconds, from the
  durations measured (by the farmer's workers, :class:`~.claiming.FarmDurations`; no more
  than were measured: one task at first), at most :data:`MAX_CHUNK`;
* :func:`chunk_size`: that, but near the end of the list no more than a share of what is left,
  so that no slot idles while another holds unstarted work.
* :func:`hand_back_due`: a task that runs past :data:`HAND_BACK_AFTER` was not what the chunk
  was sized for: the claimed tasks waiting behind it go back into ``toprocess`` then, for the
  slots that are free (or free soon), rather than wait for it, which may take hours;
* :func:`record_due`: held results are recorded once the youngest is ``RESULT_HOLD`` old and
  the oldest :data:`RECORD_DELAY` old (or at the next claim, whichever comes first).

What a crash costs is unchanged: claimed tasks not started, and results not recorded, belong
to the worker's lease, and whoever takes it over puts them back (they run again, once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..store.ledger import MAX_CLAIM
from .recording import RESULT_HOLD

#: Seconds of work one claim takes for a slot (from the measured task durations).
CLAIM_PERIOD = 1.0
#: The most tasks one claim takes (the store's bound on a claim): tasks of a few milliseconds
#: fill a chunk, and on a shared filesystem each claim may be a hand-over of the lock from
#: another node, which costs what a whole chunk's other I/O does (see docs/design.md).
MAX_CHUNK = MAX_CLAIM
#: Held results are recorded once the oldest is this old (seconds), at the latest.
RECORD_DELAY = 1.0
#: Seconds a task may run before the claimed tasks queued behind it are handed back.
HAND_BACK_AFTER = 2 * CLAIM_PERIOD
#: Weight of the latest duration in the running estimate (exponential moving average).
DURATION_WEIGHT = 0.2


@dataclass
class DurationEstimate:
    """A running estimate of how long this worker's tasks take.

    Attributes:
        mean: seconds (None: no task ended yet).
        count: how many durations were learnt.
    """

    mean: float | None = None
    count: int = 0

    def add(self, seconds: float) -> None:
        """Learn one more task duration."""
        seconds = max(0.0, seconds)
        self.count += 1
        if self.mean is None:
            self.mean = seconds
        else:
            self.mean += DURATION_WEIGHT * (seconds - self.mean)


def wanted(estimate: DurationEstimate) -> int:
    """Tasks that keep a slot busy for :data:`CLAIM_PERIOD`, given their mean duration, and no
    more than the tasks measured so far: one short task says little of the next, and a long
    task claimed behind it would keep the rest of the chunk waiting."""
    mean = estimate.mean
    if mean is None:
        return 1
    fits = MAX_CHUNK if mean <= 0 else math.floor(CLAIM_PERIOD / mean)
    return max(1, min(MAX_CHUNK, estimate.count, fits))


def chunk_size(want: int, pending: int, claimants: int) -> int:
    """How many tasks to claim now.

    Args:
        want: what :func:`wanted` asks for.
        pending: the tasks waiting in ``toprocess`` (counted up to ``want * claimants``).
        claimants: the workers of the workdir that may claim them (its lease files; at least
            this one).

    Returns:
        ``want`` while the list holds enough for every claimant; near its end half of an even
        share of what is left (at least one), so the last tasks spread over the slots.
    """
    claimants = max(1, claimants)
    if pending >= want * claimants:
        return want
    return max(1, min(want, pending // (2 * claimants)))


def hand_back_due(started: float | None, queued: int) -> float | None:
    """When the ``queued`` claimed tasks waiting behind the running task (started at
    ``started``, monotonic time; None: none runs) are to be handed back; None: never."""
    if started is None or queued == 0:
        return None
    return started + HAND_BACK_AFTER


def record_due(oldest_end: float, youngest_end: float) -> float:
    """When held results are to be recorded (monotonic time): once the youngest has been held
    :data:`~.recording.RESULT_HOLD` and the oldest :data:`RECORD_DELAY`."""
    return max(youngest_end + RESULT_HOLD, oldest_end + RECORD_DELAY)


def earliest(*whens: float | None) -> float | None:
    """The earliest of the times that are not None (None if all are); asked twice per task,
    hence a loop rather than ``min`` over a generator."""
    first = None
    for when in whens:
        if when is not None and (first is None or when < first):
            first = when
    return first
