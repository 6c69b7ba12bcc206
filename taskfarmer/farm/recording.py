"""Recording what a worker's tasks did: the held results, and what one lock hold writes.

A result is held for :data:`RESULT_HOLD` before it is recorded. :func:`plan` decides, in pure
code, which held results are recorded, which go back into ``toprocess`` and which are held on;
:class:`HoldBatch` applies the decision under the lock and gathers what the hold adds to the
timeline (execution events, the change of the task counts) and to the job log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..logs.joblog import Entry, JobLog, exit_and_signal
from ..store import Lease, Outcome, StateStore
from ..tasks import Task
from ..timeline.events import Event, counters, execution, instant
from ..timeline.file import Timeline
from .memory import OUT_OF_MEMORY, PUT_BACK

#: A result is recorded only once it is this old (seconds), and put back instead if a stop
#: arrives sooner: when SLURM signals every process of a step, a command inside a task can die
#: first and the task's shell exit 0 before our own signal arrives.
RESULT_HOLD = 0.1

#: How recording an outcome changes the workdir's task counts.
#: (An execution leaves ``running`` when it ends, before its result is recorded.)
_OUTCOME_DELTAS: dict[Outcome, dict[str, int]] = {
    Outcome.FINISHED: {"done": 1},
    Outcome.FAILED: {"failed": 1},
    Outcome.RETRY: {"pending": 1},
    Outcome.DISCARDED: {},  # the farmer that took the lease over counted it back as pending
}


@dataclass(frozen=True)
class Result:
    """How one execution of a task ended."""

    task: Task
    command: str
    returncode: int
    start: float
    end: float
    ended_at: float  # monotonic clock, for RESULT_HOLD
    timed_out: bool = False
    stopped: str | None = None  # the stop that cut it short: it goes back to toprocess
    rerun: bool = False  # an earlier execution of the task exists (timeline.started)
    lease: str = ""  # the lease the task was claimed under: only it may record the result
    peak: int = 0  # bytes: its peak memory (ru_maxrss)
    memory: str | None = None  # the memory verdict (see .memory): oom, evicted, out of memory

    @property
    def put_back_as(self) -> str:
        """The outcome of this result put back into ``toprocess`` as the job log and the
        timeline say it: ``stopped``, or ``oom``/``evicted`` (memory)."""
        return self.stopped if self.stopped in PUT_BACK else "stopped"

    @property
    def succeeded(self) -> bool:
        """Exit code 0."""
        return self.returncode == 0


@dataclass(frozen=True)
class Plan:
    """What to do with the held results now, each part in the order the results ended.

    Results are held in the order they ended, so the recorded ones ended before those put
    back (a stopped result is a worker's last).
    """

    record: tuple[Result, ...] = ()  # into finished or failed (or back for a retry)
    put_back: tuple[Result, ...] = ()  # back into toprocess, to run again
    keep: tuple[Result, ...] = ()  # too young: held on
    discard: tuple[Result, ...] = ()  # claimed under a lease since taken over: never recorded


def plan(results: Sequence[Result], now: float, stop_at: float | None, final: bool,
         lease: str) -> Plan:
    """Settle the held ``results`` (in the order they ended) of the worker holding ``lease``.

    A result whose task was claimed under another lease (one of ours that was taken over
    while the task ran: the farmer that took it over put the task back, and it runs again
    elsewhere) is discarded at once: recording it would record the task twice. Of the others,
    a result is settled once it is :data:`RESULT_HOLD` old, or, with ``final``, at once. A
    settled result cut short by a stop goes back; with ``final``, so does one that ended
    within :data:`RESULT_HOLD` before the stop (it may have died of the stop's signal before
    we saw it). Every other settled result is recorded.

    Args:
        results: the held results, oldest first.
        now: the monotonic clock now.
        stop_at: when the stop was requested, on the monotonic clock; None if none was.
        final: the worker is leaving: every held result is settled.
        lease: the name of the lease the worker holds now (it holds it: the caller checked).

    Returns:
        The results to record, to put back, to keep holding and to discard.
    """
    discard = tuple(result for result in results if result.lease != lease)
    results = [result for result in results if result.lease == lease]
    ready = len(results)
    if not final:  # the recordable results are a prefix
        ready = 0
        while ready < len(results) and results[ready].ended_at <= now - RESULT_HOLD:
            ready += 1
    record: list[Result] = []
    put_back: list[Result] = []
    for result in results[:ready]:
        cut_short = final and stop_at is not None and stop_at - result.ended_at < RESULT_HOLD
        (put_back if result.stopped or cut_short else record).append(result)
    return Plan(tuple(record), tuple(put_back), tuple(results[ready:]), discard)


def outcome_word(outcome: Outcome, result: Result) -> str:
    """The job log's outcome for a recorded execution (see :mod:`taskfarmer.logs.joblog`)."""
    if outcome is Outcome.FAILED and result.timed_out:
        return "timed out"
    if outcome is Outcome.FAILED and result.memory == OUT_OF_MEMORY:
        return OUT_OF_MEMORY
    return outcome.value


def counter_events(timeline: Timeline, at: float, **delta: int) -> list[Event]:
    """*locked* Apply ``delta`` to the workdir's task counts; their counter event at ``at``
    (none while the counts are unknown)."""
    counts = timeline.state.change(**delta)
    if counts is None:
        return []
    return [counters(at, counts.done, counts.failed, counts.running, counts.pending)]


class SlotConfig(Protocol):
    """What recording needs of a worker's configuration
    (:class:`~taskfarmer.farm.worker.WorkerConfig`)."""

    @property
    def slot(self) -> int:
        """The worker slot (its timeline thread is ``slot + 1``)."""

    @property
    def farmer(self) -> str:
        """The farmer's name."""

    @property
    def track(self) -> int:
        """The farmer's timeline track (process id)."""

    @property
    def node(self) -> str:
        """The node's name."""

    @property
    def retries(self) -> int:
        """``--retries``."""


class HoldBatch:
    """What one lock hold of a worker records and adds to the timeline and the job log.

    Args:
        config: the worker's slot, names and ``--retries``.
        store: the state files.
        timeline: the timeline its events go to, with the task counts.
        joblog: the job log.
        clock: the wall clock (seconds since the epoch).
        say: tells the farmer a line.
    """

    def __init__(self, config: SlotConfig, store: StateStore, timeline: Timeline,
                 joblog: JobLog, clock: Callable[[], float], say: Callable[[str], None]
                 ) -> None:
        self._config = config
        self._store = store
        self._timeline = timeline
        self._joblog = joblog
        self._clock = clock
        self._say = say
        self._events: list[Event] = []  # timeline events of this lock hold
        self._delta: dict[str, int] = {}  # how this lock hold changed the task counts

    def record(self, lease: Lease, results: Sequence[Result]) -> list[Entry]:
        """*locked* Record ``results`` in the state files; their job log lines (for the
        caller to append once the hold's results are all settled)."""
        logged: list[Entry] = []
        for result in results:
            outcome = self._store.record(lease, result.task, result.succeeded,
                                         self._config.retries)
            attempt = 0 if result.succeeded else self._store.attempt_count(result.task.id)
            self.add(result, outcome.value, attempt)
            self.count(**_OUTCOME_DELTAS[outcome])
            logged.append(self.entry(result, outcome_word(outcome, result),
                                     attempt or self._store.attempt_count(result.task.id) + 1))
            if outcome is Outcome.RETRY:
                self._say(f"task {result.task.id} failed (attempt {attempt} of "
                          f"{self._config.retries + 1}): back in toprocess")
        return logged

    def put_back(self, result: Result) -> None:
        """*locked* Mark ``result`` as going back into ``toprocess`` (with the worker's queue,
        when it leaves)."""
        if not result.stopped:  # maybe cut short by the stop: run again
            self._say(f"task {result.task.id} ended just before the stop: back to toprocess")
        self.add(result, result.put_back_as if result.stopped else "put back")
        self.count(pending=1)

    def log(self, results: list[Result], outcome: str | None = None) -> None:
        """*locked* Job log lines for executions whose result was not recorded (``outcome``
        None: put back, each as :attr:`Result.put_back_as`)."""
        self._joblog.append([self.entry(result, outcome or result.put_back_as,
                                        self._store.attempt_count(result.task.id) + 1)
                             for result in results])

    def discard(self, results: Sequence[Result]) -> None:
        """*locked* Log results that are not recorded: their tasks were put back by the farmer
        that took their lease over (the job log says ``discarded``, the timeline too)."""
        for result in results:
            self._say(f"task {result.task.id} ended (exit {result.returncode}) after our "
                      "lease was taken over: result logged, not recorded")
        self.log([result for result in results if not result.stopped], "discarded")
        for result in results:
            self.add(result, "stopped" if result.stopped else Outcome.DISCARDED.value)

    def entry(self, result: Result, outcome: str, attempt: int) -> Entry:
        """The job log line of ``result``."""
        code, signum = exit_and_signal(result.returncode)
        config = self._config
        return Entry(result.task.id, attempt, config.node, config.farmer, config.slot,
                     result.start, result.end - result.start, code, signum, outcome,
                     result.command, result.peak // 1024)

    def add(self, result: Result, outcome: str, attempt: int = 0) -> None:
        """Add the timeline event of ``result``, ended with ``outcome``."""
        args = {"exit": result.returncode, "host": self._config.node}
        if attempt:
            args["failed_attempts"] = attempt
        if result.timed_out:
            args["timed_out"] = True
        if result.memory:
            args["memory"] = result.memory
        if result.peak:
            args["maxrss_kib"] = result.peak // 1024
        if result.stopped:
            args["stop"] = result.stopped
        self._events += execution(result.task.id, result.command, result.start, result.end,
                                  self._config.track, self._config.slot + 1, outcome,
                                  result.rerun, args)

    def mark(self, name: str, args: dict[str, Any]) -> None:
        """Add a marker ``name`` on the farmer's track, now."""
        self._events.append(instant(name, self._clock(), self._config.track, args))

    def count(self, **delta: int) -> None:
        """Note a change of the workdir's task counts (see :meth:`flush`)."""
        for key, value in delta.items():
            self._delta[key] = self._delta.get(key, 0) + value

    def flush(self) -> None:
        """*locked* Append this lock hold's events, with the counts if they changed.

        The counts are changed here, under the same lock hold as the state files: one
        ``pread``/``pwrite`` of ``timeline.state`` and one timeline append per hold (which, in
        the coherent mode, also ends the hold's use of the timeline files).
        """
        if any(self._delta.values()):
            self._events += counter_events(self._timeline, self._clock(), **self._delta)
        self._delta.clear()
        self._timeline.append(self._events)
        self._events = []
