"""A node that quarantines itself: the failures a worker holds back, the record it writes and
the tasks it hands back (:class:`NodeWatch`); a farmer that does not start, or stops, on a
quarantined node (:class:`NodeQuarantine`).

The decision is :mod:`.blackhole`'s (pure); this is the I/O around it, under the workdir lock,
through the paths that already keep every task exactly once. A held failure is a task claimed
under the worker's lease and not recorded: if the worker dies, whoever takes the lease over
puts it back, as it does a running task. Handing it back appends it to ``toprocess``
(:meth:`~taskfarmer.store.StateStore.requeue`, as a stop does) while the lease is held, and
touches neither ``failed`` nor ``attempts``: it is not an attempt, no retry is used up. The job
log and the timeline say ``quarantined``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Callable, Protocol

from ..errors import QuarantinedError, TaskfarmerError
from ..logs.joblog import Entry, JobLogTail, exit_and_signal
from ..store import (
    QUARANTINE_TIME,
    FailedRun,
    LeaseName,
    QuarantineRecord,
    StateStore,
    farmer_node,
    safe_component,
)
from .blackhole import KEEP_RUNTIMES, Attempt, Decision, Evidence, fast, hold_limit, judge
from .recording import HoldBatch, Result, SlotConfig

#: A worker's exit code when it quarantined its node (the farmer then stops, exit code 6).
WORKER_QUARANTINED = 5
#: The outcome of a handed-back execution, in the job log and the timeline.
HANDED_BACK = "quarantined"
#: What the farmer's stop is called when its node is quarantined.
QUARANTINE_STOP = "quarantine"
#: The most bytes of the job log one look reads (its newest: evidence is recent).
EVIDENCE_TAIL = 256 << 10
#: A failure is judged fast or not with a look at the job log at most this old (seconds).
EVIDENCE_REFRESH = 1.0
#: Seconds between two looks while a worker waits for other nodes' results.
WAIT_POLL = 0.25


class WatchConfig(SlotConfig, Protocol):
    """What the watch needs of a worker's configuration
    (:class:`~taskfarmer.farm.worker.WorkerConfig`): its slot, farmer, node and
    ``--quarantine``."""

    @property
    def quarantine(self) -> int | None:
        """``--quarantine K``: suspect failures in a row that decide (None: off)."""


def attempt(result: Result) -> Attempt:
    """The :class:`~.blackhole.Attempt` of a failed execution."""
    code, signum = exit_and_signal(result.returncode)
    return Attempt(result.task.id, code, signum, result.start, result.end - result.start)


class NodeWatch:
    """A worker's watch on its node: holds its suspect failures back, and hands them back and
    quarantines the node when :func:`~.blackhole.judge` says so.

    Args:
        config: the worker's node, farmer and ``--quarantine``.
        store: the state files.
        batch: the worker's lock hold (timeline events, counts, job log lines).
        clock: the wall clock (seconds since the epoch).
        monotonic: the monotonic clock.
        say: tells the farmer a line.
    """

    def __init__(self, config: WatchConfig, store: StateStore, batch: HoldBatch,
                 clock: Callable[[], float], monotonic: Callable[[], float],
                 say: Callable[[str], None]) -> None:
        self._config = config
        self._store = store
        self._batch = batch
        self._clock = clock
        self._monotonic = monotonic
        self._say = say
        self._tail = JobLogTail(store.files.joblog, EVIDENCE_TAIL)
        self._evidence = Evidence()  # read through evidence(): see _recorded
        self._unlearned: list[Result] = []  # recorded, not learned yet
        self._learned: float | None = None  # when the job log was last read (monotonic)
        self._waiting: float | None = None  # since when the row waits (monotonic)
        self.row: list[Result] = []  # the held suspect failures, in the order they ended
        self.quarantined = False

    @property
    def waiting(self) -> bool:
        """The row waits for other nodes' results: start no task."""
        return self._waiting is not None

    def sift(self, results: Sequence[Result], final: bool) -> list[Result]:
        """*locked* Of ``results`` (settled, in the order they ended), those to record now;
        suspect failures are held back in :attr:`row` until the row decides. ``final``: the
        worker is leaving, the row decides now (recorded unless the node is quarantined)."""
        if self._config.quarantine is None:
            return list(results)
        ready: list[Result] = []
        for result in results:
            if self._suspect(result):
                self.row.append(result)
            else:  # the row is broken: it is recorded first (it ended before)
                ready += self._recorded([*self.drop(), result])
        if self.row:
            ready += self._recorded(self._decide(self._config.quarantine, final))
        return ready

    def stays(self) -> bool:
        """*locked* Whether the worker, with nothing to run, stays (looking again every
        :data:`WAIT_POLL`): its row waits; or it holds a row that would quarantine the node
        were it k long, while other workers hold leases (they may put tasks back and the row
        grow to k, rather than be recorded short), at most until the row is due
        (:meth:`due`)."""
        if self.waiting:
            return True
        if not self.row or len(self._store.lease_names()) < 2:
            return False
        self._learn()
        row = [attempt(result) for result in self.row]
        return judge(row, self.evidence(), len(row), final=True).decision is Decision.QUARANTINE

    def due(self) -> float | None:
        """When a row of fewer than k is to be recorded, unless it grows (monotonic clock): the
        worker has run something else for longer than a fast failure takes. None if no row
        is held, or it waits."""
        if not self.row or self.waiting:
            return None
        return self.row[-1].ended_at + hold_limit(self.evidence().reference)

    def drop(self) -> list[Result]:
        """Give the held row up (to record it, or our lease was taken over)."""
        row, self.row, self._waiting = self.row, [], None
        return row

    def _suspect(self, result: Result) -> bool:
        if result.succeeded or result.timed_out or result.rerun or result.stopped:
            return False
        if self._learned is None or self._monotonic() - self._learned >= EVIDENCE_REFRESH:
            self._learn()
        return fast(attempt(result), self.evidence().reference)

    def _learn(self) -> None:
        """*locked* Read what the job log gained since the last look (but this worker's own
        lines: :meth:`_recorded` learned those before they were written)."""
        self._learned = self._monotonic()
        ours = (self._config.farmer, self._config.slot)
        entries = [entry for entry in self._tail.new() if (entry.farmer, entry.slot) != ours]
        self._evidence = self.evidence().learn(entries, self._config.node)

    def evidence(self) -> Evidence:
        """What the job log shows and this worker recorded, up to date."""
        if self._unlearned:
            config = self._config
            entries = [Entry(result.task.id, 0, config.node, config.farmer, config.slot,
                             result.start, result.end - result.start,
                             *exit_and_signal(result.returncode),
                             "finished" if result.succeeded else "failed", result.command)
                       for result in self._unlearned]
            self._unlearned = []
            self._evidence = self._evidence.learn(entries, config.node)
        return self._evidence

    def _recorded(self, results: list[Result]) -> list[Result]:
        """Learn ``results``, about to be recorded, as this node's executions (the job log
        has them only after this lock hold's recording); returns them.

        Learned when the evidence is next looked at (:meth:`evidence`), all at once: learning
        entries one by one or together gives the same evidence, but each learning copies the
        latest :data:`~.blackhole.KEEP_RUNTIMES` outcomes, which per successful task (most of
        them, never looked at) cost more than the rest of its recording. At most that many
        wait, so learning stays O(1) per result.
        """
        self._unlearned += results
        if len(self._unlearned) >= KEEP_RUNTIMES:
            self.evidence()
        return results

    def _decide(self, k: int, final: bool) -> list[Result]:
        """*locked* Settle the row if it can be: the results to record.

        Whatever the row holds goes back once the node is quarantined: by this worker, or by
        another worker or farmer of the node (looked at only when the row decides).
        """
        full = len(self.row) >= k
        if self.quarantined or ((full or final) and self._node_quarantined()):
            if not final:
                self.quarantined = True  # quarantined by another: this worker leaves too
            self._hand_back()
            return []
        if not full:
            due = self.due()
            broken = due is not None and self._monotonic() >= due  # by the task running now
            return self.drop() if final or broken else []
        self._learn()
        evidence = replace(self.evidence(), others_active=self._others_active())
        waited = 0.0 if self._waiting is None else self._monotonic() - self._waiting
        verdict = judge([attempt(result) for result in self.row], evidence, k, waited, final)
        if verdict.decision is Decision.QUARANTINE:
            self._quarantine(verdict.reason)
            return []
        if verdict.decision is Decision.WAIT:
            if self._waiting is None:
                self._waiting = self._monotonic()
                self._say(f"{len(self.row)} tasks in a row failed fast here: waiting for "
                          "other nodes' results before recording them")
            return []
        return self.drop()

    def _others_active(self) -> bool:
        """*locked* Whether a worker of another node holds a lease (lease names say whose:
        one directory listing, no file read)."""
        ours = safe_component(self._config.node)
        for name in self._store.lease_names():
            lease = LeaseName.parse(name)
            if lease is not None and not lease.dead and farmer_node(lease.farmer) != ours:
                return True
        return False

    def _node_quarantined(self) -> bool:
        record = self._store.quarantines.read(self._config.node)
        return record is not None and record.active(self._clock())

    def _quarantine(self, reason: str) -> None:
        """*locked* Quarantine the node: its record, the row handed back."""
        config = self._config
        self.quarantined = True
        row = [attempt(result) for result in self.row]
        path = self._hand_back(reason)
        self._batch.mark("node quarantined", {
            "node": config.node, "reason": reason, "record": str(path),
            "tasks": [a.id for a in row], "exits": [a.exit for a in row],
            "runtimes": [round(a.runtime, 3) for a in row]})
        self._say(f"node {config.node} quarantined: {reason}; {len(row)} task(s) handed "
                  f"back (record {path})")

    def _hand_back(self, reason: str = "") -> Path:
        """*locked* Put the row's tasks back into ``toprocess``, uncounted, and list them in
        the node's record (a new one, quarantined for ``reason``, if none is in force).

        The record is written first: if that fails, the tasks are still claimed under our
        lease and recorded nowhere, and whoever takes the lease over puts them back.
        """
        row = self.drop()
        now = self._clock()
        runs = tuple(FailedRun(a.id, a.exit, a.signal, a.runtime) for a in map(attempt, row))
        config = self._config
        record = self._store.quarantines.read(config.node)
        if record is not None and record.active(now):
            record = replace(record, attempts=record.attempts + runs)
        else:
            record = QuarantineRecord(config.node, now, now + QUARANTINE_TIME, config.farmer,
                                      reason or "its tasks failed fast", runs)
        path = self._store.quarantines.write(record)
        self._store.requeue(result.task for result in row)
        for result in row:
            self._batch.add(result, HANDED_BACK)
        self._batch.count(pending=len(row))
        self._batch.log(row, HANDED_BACK)
        return path


def describe(record: QuarantineRecord, path: Path) -> str:
    """The line a farmer ends with when its node is quarantined."""
    until = time.strftime("%H:%M:%S", time.localtime(record.until))
    return (f"node {record.node} quarantined: {record.reason}; {len(record.attempts)} task(s) "
            f"handed back, not counted as failed; farmers on it refuse to start until {until} "
            f"(record {path})")


class NodeQuarantine:
    """A farmer's look at its node's quarantine record.

    Args:
        store: the state files.
        node: this farmer's node.
        enabled: ``--quarantine`` is not ``off`` (off: records are ignored).
        clock: the wall clock (seconds since the epoch).
    """

    def __init__(self, store: StateStore, node: str, enabled: bool,
                 clock: Callable[[], float]) -> None:
        self._store = store
        self._node = node
        self._enabled = enabled
        self._clock = clock
        self._record: QuarantineRecord | None = None  # found in force by :meth:`check`

    def refuse(self) -> None:
        """Refuse to farm on a quarantined node.

        Raises:
            QuarantinedError: the node's record is in force.
        """
        record = self._active()
        if record is not None:
            raise QuarantinedError(record.node, self._store.quarantines.path(self._node),
                                   record.until, record.reason)

    def check(self) -> bool:
        """Whether the node is quarantined now (by one of our workers or another farmer on
        it)."""
        record = self._active()
        if record is not None:
            self._record = record
        return record is not None

    def line(self) -> str | None:
        """What the farmer ends with once :meth:`check` found its node quarantined (the record
        read again: our workers may have handed more tasks back since); None if it did not."""
        if self._record is None:
            return None
        path = self._store.quarantines.path(self._node)
        try:
            record = self._store.quarantines.read(self._node) or self._record
        except TaskfarmerError:
            record = self._record
        return describe(record, path)

    def _active(self) -> QuarantineRecord | None:
        if not self._enabled:
            return None
        record = self._store.quarantines.read(self._node)
        return record if record is not None and record.active(self._clock()) else None
