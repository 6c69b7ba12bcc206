"""Time limits: stop before the SLURM job ends, and start no task that cannot finish in time.

A farmer has a time limit when it runs in a SLURM job with an end time (:func:`slurm_job_end`:
``SLURM_JOB_END_TIME``, else ``squeue -h -j JOB -o %e``, else ``scontrol show job JOB``) or
with ``--timeout``. :class:`Walltime` turns the limits into two times:

- ``stop_at``: the job's end minus a margin that covers the stop itself (``--stop-margin``),
  or the ``--timeout``, whichever is first. Then running tasks are stopped and put back.
- :meth:`Walltime.latest_start`: ``stop_at`` minus the time a task is expected to take
  (:class:`TaskTime`: ``--task-time``, else a high percentile of the durations of this
  workdir's finished tasks, once there are enough; until then, the farm counts the longest
  task it has run itself). No task starts after it: the running ones finish and the farmer
  exits with work left, instead of starting tasks that would be killed and run again by the
  next job.

Durations come from a :class:`DurationSource`;
:class:`~taskfarmer.logs.joblog.JobLogDurations` reads the finished executions of the workdir's
job log as it grows.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

from .resources import CommandOutput, command_output

#: Default ``--stop-margin``: seconds before the job's end at which the farmer stops.
DEFAULT_MARGIN = 60.0
#: Tasks are expected to take this percentile of the recent finished durations ...
PERCENTILE = 90
#: ... once there are at least this many (the percentile of fewer than 10 is the longest);
#: until then the farm counts the longest task it has run itself.
MIN_SAMPLES = 4
#: The most recent durations kept (and read from the job log's tail at start).
KEEP = 1000

_END_TIME = re.compile(r"\bEndTime=(\S+)")


def parse_slurm_time(text: str) -> float | None:
    """Seconds since the epoch of SLURM's ``2026-11-28T05:12:00`` (local time); None for
    ``Unknown``, ``N/A``, ``NONE`` or anything else that is not such a time."""
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return None


def slurm_job_end(environ: Mapping[str, str], run: CommandOutput = command_output
                  ) -> float | None:
    """When SLURM will end this job (seconds since the epoch), or None: not in a job, no
    time limit, or SLURM cannot be asked."""
    value = environ.get("SLURM_JOB_END_TIME", "").strip()
    if value.isdigit():
        return float(value)
    job = environ.get("SLURM_JOB_ID", "").strip()
    if not job:
        return None
    output = run(["squeue", "-h", "-j", job, "-o", "%e"])
    if output and output.strip():
        return parse_slurm_time(output.split()[0])
    output = run(["scontrol", "show", "job", job])
    found = _END_TIME.search(output or "")
    return parse_slurm_time(found.group(1)) if found else None


class DurationSource:
    """Where durations of finished task executions come from."""

    def new(self) -> list[float]:
        """Durations (seconds) that appeared since the last call."""
        raise NotImplementedError


def percentile(values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile: the smallest value with ``percent`` % at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


class TaskTime:
    """How long the next task is expected to take: ``--task-time``, else learned.

    Args:
        fixed: ``--task-time`` seconds, or None to learn.
        source: where finished durations come from when learning.
    """

    def __init__(self, fixed: float | None, source: DurationSource | None = None) -> None:
        self.fixed = fixed
        self.source = source
        self.samples: deque[float] = deque(maxlen=KEEP)

    def expected(self) -> float | None:
        """Seconds, or None while there are fewer than :data:`MIN_SAMPLES` durations."""
        if self.fixed is not None:
            return self.fixed
        if self.source is not None:
            self.samples.extend(self.source.new())
        if len(self.samples) < MIN_SAMPLES:
            return None
        return percentile(self.samples, PERCENTILE)

    def describe(self) -> str:
        """Where :meth:`expected` comes from, for the log."""
        if self.fixed is not None:
            return "--task-time"
        return f"{PERCENTILE}th percentile of {len(self.samples)} finished task(s)"


@dataclass(frozen=True)
class Limit:
    """A time by which the farmer must have stopped: what it is (for the log) and the stop
    reason it gives (``stopped by REASON``)."""

    at: float
    what: str
    reason: str


def limits(start: float, timeout: float | None, job_end: float | None,
           margin: float) -> list[Limit]:
    """The limits of a run started at ``start``: ``--timeout``, the SLURM job's end."""
    found = []
    if timeout is not None:
        found.append(Limit(start + timeout, "--timeout", "timeout"))
    if job_end is not None:
        end = time.strftime("%H:%M:%S", time.localtime(job_end))
        found.append(Limit(job_end - margin, f"the job's end at {end} minus {margin:g} s",
                           "time limit"))
    return found


class Walltime:
    """When to stop starting tasks and when to stop, under the earliest of ``limits``."""

    def __init__(self, limit: Limit, task_time: TaskTime,
                 clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.task_time = task_time
        self.clock = clock

    @classmethod
    def earliest(cls, found: Sequence[Limit], task_time: TaskTime,
                 clock: Callable[[], float] = time.time) -> Walltime | None:
        """The walltime of the earliest limit; None without limits."""
        if not found:
            return None
        return cls(min(found, key=lambda limit: limit.at), task_time, clock)

    @property
    def stop_at(self) -> float:
        """When running tasks are stopped and put back."""
        return self.limit.at

    def latest_start(self) -> float:
        """No task may start after this: ``stop_at`` minus the expected task time."""
        expected = self.task_time.expected()
        return self.stop_at - expected if expected is not None else self.stop_at

    def why_no_start(self, longest: float) -> str:
        """One log line: why no task starts any more (``longest``: the longest task this
        farmer has run, what counts while nothing is learned)."""
        left = max(0.0, self.stop_at - self.clock())
        expected = self.task_time.expected()
        source = self.task_time.describe()
        if expected is None:
            expected, source = longest, "the longest this farmer ran; too few finished to learn"
        return (f"starting no more tasks: {left:.0f} s left until {self.limit.what}, tasks "
                f"are expected to take {expected:.0f} s ({source}); running ones finish, "
                "then the farmer exits (code 3 if work is left)")

    def why_stop(self) -> str:
        """One log line: why running tasks are stopped."""
        return f"stopping at {self.limit.what}: running tasks go back into toprocess"
