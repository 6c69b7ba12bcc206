"""The start gate: from when on no task may start, shared by a farmer and its workers.

Before a time limit (``--timeout``, the SLURM job's end; see :mod:`taskfarmer.hpc.walltime`) a
farm starts no task not expected to finish in time. The main process sets the limit and
estimates, from the timeline, the latest start; each worker asks the gate itself before every
claim (:meth:`StartGate.may_start`): the main process's estimate arrives up to a poll late, too
late for a worker that has just finished one of the first tasks. When the farm is halted
(``--halt``, :mod:`.halt`) the gate closes for good. The values live in shared memory that the
forked workers inherit.
"""

from __future__ import annotations

import math
from multiprocessing.sharedctypes import RawArray, RawValue
from typing import Callable

from ..hpc.walltime import Walltime


class StartGate:
    """The time limit, the latest start once a task time is known, whether one is, and the
    longest task each worker slot ran (what counts while no task time is known).

    Args:
        proc: the number of worker slots.
        clock: the wall clock (seconds since the epoch).
        refresh: seconds between two estimates of the latest start (each reads the
            timeline's new events).
    """

    def __init__(self, proc: int, clock: Callable[[], float], refresh: float) -> None:
        self._stop_at = RawValue("d", math.inf)
        self._start_by = RawValue("d", math.inf)
        self._known = RawValue("b", 0)
        self._closed = RawValue("b", 0)  # no task starts any more (the farm was halted)
        self._longest = RawArray("d", proc)
        self._clock = clock
        self._refresh = refresh
        self._next_estimate = 0.0
        self._task_started = 0.0  # in a worker: when its current task started

    def limit_to(self, stop_at: float | None) -> None:
        """In the main process: the farm stops at ``stop_at`` (None: no time limit)."""
        self._stop_at.value = math.inf if stop_at is None else stop_at

    def estimate(self, walltime: Walltime, now: float) -> None:
        """In the main process: learn the latest start from ``walltime`` (at most once per
        ``refresh``)."""
        if now >= self._next_estimate:
            self._start_by.value = walltime.latest_start()
            self._known.value = walltime.task_time.expected() is not None
            self._next_estimate = now + self._refresh

    def limit(self) -> float:
        """No task may start from this time on: the walltime's latest start once a task time
        is known; before, the time limit minus the longest task this farmer has run."""
        if self._known.value:
            return float(self._start_by.value)
        return float(self._stop_at.value - self.longest)

    @property
    def longest(self) -> float:
        """The longest task any worker slot of this farmer has run (seconds)."""
        return max(self._longest)

    def close(self) -> None:
        """In the main process: no task may start any more, whatever the time."""
        self._closed.value = 1

    def may_start(self) -> bool:
        """In a worker: whether a task may start now."""
        return not self._closed.value and self._clock() < self.limit()

    def mark(self, slot: int, task_id: int) -> None:
        """In a worker: slot ``slot`` starts ``task_id`` now (-1: its task ended); keep the
        slot's longest task."""
        if task_id >= 0:
            self._task_started = self._clock()
        else:
            self._longest[slot] = max(self._longest[slot], self._clock() - self._task_started)
