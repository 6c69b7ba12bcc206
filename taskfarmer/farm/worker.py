"""A worker: one process of a farmer's pool, running one task at a time.

Each worker has its own lease (``WORKDIR/leases/NAME``; see :mod:`taskfarmer.store`) and loops:
under the lock, record the results of the tasks it ran (then their job log lines, see
:mod:`taskfarmer.logs.joblog` and :mod:`.recording`) and claim the next chunk of tasks (as many
as :mod:`.chunking` says: about a second of work); then run them one after the other without
the lock (:mod:`.execution`), recording the held results in batches meanwhile. So short tasks
cost a lock hold per chunk, not per task. Failures that may show a broken node are held back
longer (:mod:`.quarantine`): they go back uncounted if the node quarantines itself. On a stop
signal it kills the task's process group, puts the task and the unstarted ones it had claimed
back into ``toprocess``, and drops its lease.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

from ..errors import TaskfarmerError
from ..hpc.groups import TaskGroup
from ..hpc.identity import Identity
from ..logs.joblog import JobLog
from ..logs.tasklogs import TaskLogs
from ..runners.base import Runner
from ..store import Lease, LeaseName, LeaseRevoked, StateStore, worker_name
from ..tasks import Task, TaskList
from ..timeline.file import Timeline
from .blackhole import DEFAULT_ROW
from .chunking import earliest, hand_back_due, record_due
from .claiming import ClaimSizer, FarmDurations
from .execution import Execution
from .halt import Halt
from .memory import MemoryBoard
from .quarantine import WAIT_POLL, WORKER_QUARANTINED, NodeWatch
from .recording import RESULT_HOLD, HoldBatch, Result, plan
from .signals import StopRequest


@dataclass
class WorkerConfig:
    """What a worker needs to know besides the store, runner and handler."""

    slot: int
    farmer: str
    track: int  # the farmer's timeline track (process id); this worker's tid is slot + 1
    node: str
    verbose: bool = False
    task_timeout: float | None = None
    retries: int = 0
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    logs: str = "flat"
    slots: int = 1  # the farmer's workers, this one included (--proc)
    quarantine: int | None = DEFAULT_ROW  # ``--quarantine K`` (None: off)


@dataclass(frozen=True)
class Parts:
    """What a farm and each of its workers work with: the state, the timeline, how to run a
    task (runner) and how to read the tasklist (handler)."""

    store: StateStore
    timeline: Timeline
    runner: Runner
    handler: TaskList


class Worker:
    """Runs tasks until the list is empty or a stop is requested.

    Args:
        config: the worker's slot, names and options.
        parts: the store, timeline, runner and handler.
        stop: the worker's stop request (see :meth:`install_signal_handlers`).
        clock: the wall clock (seconds since the epoch).
        monotonic: the monotonic clock (the one ``stop`` keeps its time by).
        sleep: sleeps that many seconds.
        say: tells the farmer a line.
        on_change: told ``(slot, task id)`` when a task starts, ``(slot, -1)`` when it ends.
        may_start: asked before each task starts: False starts no more (and puts the unstarted
            claimed ones back).
        halt: the farmer's part in ``--halt`` (:class:`~.halt.Halt`): judged after each
            recording, looked at before each claim (default: one without a rule).
        farm_stopping: whether the whole farm stops (see :class:`Execution`).
        memory: what the farm's processes share about memory (None: not watched).
        durations: what the farmer's workers measured, to size claims (None: its own).
    """

    def __init__(
        self,
        config: WorkerConfig,
        parts: Parts,
        stop: StopRequest,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        say: Callable[[str], None] = print,
        on_change: Callable[[int, int], None] | None = None,
        may_start: Callable[[], bool] = lambda: True,
        halt: Halt | None = None,
        farm_stopping: Callable[[], bool] = lambda: True,
        memory: MemoryBoard | None = None,
        durations: FarmDurations | None = None,
    ) -> None:
        self.config = config
        self.store = parts.store
        self.timeline = parts.timeline
        self.handler = parts.handler
        self.stop = stop
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self.say = say
        self.on_change = on_change
        self.may_start = may_start
        self.halt = halt or Halt(parts.store, None, config.farmer, clock, monotonic)
        self.results: list[Result] = []  # ended, not yet recorded (see RESULT_HOLD)
        self.stopped: list[Result] = []  # cut short by a stop: logged once back in toprocess
        self.queue: deque[Task] = deque()
        self._reruns: set[int] = set()  # queued tasks that were started before
        self._generation = 0
        self.sizer = ClaimSizer(self.store, config.slots, monotonic, durations)
        self._started: float | None = None  # when the running task started (monotonic)
        self.lease: Lease
        self.logs = TaskLogs(self.store.logs, config.logs, worker_name(config.farmer, config.slot))
        self.joblog = JobLog(self.store.files.joblog, coherent=self.store.files.coherent)
        self.batch = HoldBatch(config, self.store, self.timeline, self.joblog, clock, self._say)
        self.watch = NodeWatch(config, self.store, self.batch, clock, monotonic, self._say)
        self.execution = Execution(config, parts.runner, self.logs, stop, clock=clock,
                                   monotonic=monotonic, sleep=sleep, say=self._say,
                                   chores_due=self._chores_due, do_chores=self._do_chores,
                                   on_start=self._name_group, farm_stopping=farm_stopping,
                                   memory=memory)
        stop.on_stop(self.execution.terminate)

    def install_signal_handlers(self) -> None:
        """Stop signals stop the worker; SIGALRM drives task timeouts and kill escalation."""
        self.stop.install()
        signal.signal(signal.SIGALRM, self.execution.on_alarm)

    # -- the loop ----------------------------------------------------------------------------

    def _register(self) -> Lease:
        self._generation += 1
        name = str(LeaseName(self.config.farmer, self.config.slot, os.getpid(), self._generation))
        owner = Identity.current(environ=self.config.environ,
                                 extra={"worker": str(self.config.slot),
                                        "farmer": self.config.farmer,
                                        "since": f"{self.clock():.3f}"})
        return self.store.register(name, owner)

    def run(self) -> int:
        """Work until no task is left or a stop is requested. Returns the process exit code.

        Raises:
            TaskfarmerError, OSError: the state could not be read or changed. The worker
                stops at once (its task killed) and changes nothing more: its lease stays,
                and whoever takes it over (our farmer, else the next) puts back exactly the
                tasks that are not recorded (:meth:`StateStore.revoke` reads the files, not
                what we believe we did), so nothing is lost or recorded twice.
        """
        try:
            self._loop()
        except BaseException:
            self._abandon()
            raise
        self._close()
        return WORKER_QUARANTINED if self.watch.quarantined else 0

    def _loop(self) -> None:
        """Claim, run, record, until the worker leaves: in the lock hold that finds nothing
        more to do (the lease taken in the first, with the first claim: one hold each)."""
        register = True
        while True:
            with self.store.locked():
                if register:
                    self.lease, register = self._register(), False
                self._settle()
                if self.stop.requested or self.watch.quarantined:
                    return self._leave()
                halted = self.halt.before_claim()
                if self.queue and (halted or not self.may_start() or self.watch.waiting):
                    # the start gate closed (walltime), halted, or the node's watch waits
                    self._put_back_unstarted()
                judging = self.halt.holds_back(self.results)
                if not self.queue and not halted and not judging and self._may_run():
                    self._take(self._claim())
                if not self.queue and not self.results and not self.watch.stays():
                    return self._leave()
                self.batch.flush()
            if not self.queue or self.halt.holds_back(self.results):
                self._sleep_until_recordable()
            elif not self._run_queue():
                with self.store.locked():
                    return self._leave()

    def _run_queue(self) -> bool:
        """Run the claimed tasks one after the other, without the lock, while
        :meth:`_may_run`. False once a stop cut a task short (the worker leaves)."""
        while self.queue and self._may_run():
            if self.queue[0].id in self._reruns and self.results:
                # It ran before: it may be what killed its last worker, and would take what we
                # hold down with us (innocent tasks would run again and again). Record first;
                # then look again (our lease may have been taken over: the queue is empty).
                self._sleep_until_recordable()
                self._do_chores()
                continue
            task = self.queue.popleft()
            self._busy(task.id)
            self._started = self.monotonic()
            result = self._execute(task)
            self._started = None
            self._busy(-1)
            self.sizer.learn(result.end - result.start)
            self.results.append(result)
            self.batch.count(running=-1)  # written with the next lock hold
            if result.stopped:
                return False
        return True

    def _may_run(self) -> bool:
        """Whether the next claimed task may start: the gate is open, no stop is requested,
        the farm is not halted, no failure of ours waits to be judged (``--halt``), and the
        node's watch neither waits nor quarantined it (``--quarantine``)."""
        return (self.may_start() and not self.stop.requested and self.halt.record is None
                and not self.halt.holds_back(self.results) and not self.watch.waiting
                and not self.watch.quarantined)

    def _claim(self) -> list[Task]:
        """*locked* Claim the next chunk (:class:`~.claiming.ClaimSizer`), with a new lease if
        ours was taken over."""
        count = self.sizer.size()
        try:
            return self.store.claim(self.lease, count)
        except LeaseRevoked:
            self.lease = self._register()
            return self.store.claim(self.lease, count)

    def _put_back_unstarted(self) -> None:
        """*locked* Put the claimed tasks not started back into ``toprocess``."""
        unstarted = len(self.queue)
        self.store.requeue(self.queue)
        self.queue.clear()
        self.batch.count(running=-unstarted, pending=unstarted)

    def _leave(self) -> None:
        """*locked* Record or put back what we hold, drop the lease."""
        unstarted = len(self.queue)
        self._settle(final=True)
        if self.store.holds(self.lease):
            self.store.requeue(self.queue)
            self.batch.count(running=-unstarted, pending=unstarted)
            self.store.release(self.lease)
            self.batch.log(self.stopped)
        self.queue.clear()
        self.batch.flush()

    def _abandon(self) -> None:
        """After an error: kill the running task, close what can be closed, touch nothing."""
        self.execution.kill()
        self._close(quiet=True)

    def _close(self, quiet: bool = False) -> None:
        """Close our descriptors (``quiet``: ignoring failures, an error is on its way)."""
        for close in (self.store.close, self.joblog.close, self.timeline.close,
                      self.logs.close):
            try:
                close()
            except (TaskfarmerError, OSError):
                if not quiet:
                    raise

    def _execute(self, task: Task) -> Result:
        """Run ``task``; a stopped result must go back into ``toprocess``."""
        command = self.handler.command(task)
        rerun = task.id in self._reruns
        self._reruns.discard(task.id)
        # the lease it was claimed under: a takeover while it runs replaces self.lease
        return self.execution.run(task, command, rerun, self.lease.name)

    def _name_group(self, group: TaskGroup) -> None:
        """Name the task just started, and its process group, in our lease."""
        self.store.task_records.mark(self.lease.name, group)

    def _busy(self, task_id: int) -> None:
        """Tell ``on_change`` which task this slot runs (-1: none)."""
        if self.on_change is not None:
            self.on_change(self.config.slot, task_id)

    def _take(self, tasks: list[Task]) -> None:
        """*locked* Queue claimed tasks: they count as running, and tell whether they ran
        before (``timeline.started``)."""
        for task in tasks:
            if not self.timeline.state.first_start(task.id):
                self._reruns.add(task.id)
        self.queue.extend(tasks)
        self.batch.count(pending=-len(tasks), running=len(tasks))

    # -- held results ------------------------------------------------------------------------

    def _chores_due(self) -> float | None:
        """When the next chore is due while a task runs (monotonic clock; None: none):
        recording (:func:`~.chunking.record_due`), the watch's row (:meth:`NodeWatch.due`),
        handing the queued tasks back (:func:`~.chunking.hand_back_due`)."""
        return earliest(hand_back_due(self._started, len(self.queue)), self.watch.due(),
                        record_due(self.results[0].ended_at, self.results[-1].ended_at)
                        if self.results else None)

    def _sleep_until_recordable(self) -> None:
        """Wait until the youngest held result may be recorded, or the waiting watch looks
        again (or a stop arrives)."""
        remaining = (RESULT_HOLD - (self.monotonic() - self.results[-1].ended_at)
                     if self.results else WAIT_POLL)
        if remaining > 0 and not self.stop.requested:
            self.sleep(remaining)

    def _do_chores(self) -> None:
        """While a task runs: record the held results that are old enough, and hand the queued
        tasks back once the task has run past :data:`~.chunking.HAND_BACK_AFTER`."""
        with self.store.locked():
            self._settle()
            back = hand_back_due(self._started, len(self.queue))
            if back is not None and self.monotonic() >= back:
                self._put_back_unstarted()
            self.batch.flush()

    def _settle(self, final: bool = False) -> None:
        """*locked* Record the held results that are old enough; notice a revoked lease.

        With ``final`` (the worker is leaving), every held result is settled: those that
        ended within :data:`RESULT_HOLD` before a stop go back into ``toprocess`` instead
        (:func:`~taskfarmer.farm.recording.plan`). ``self.stop.at`` is set exactly when a
        stop was requested.
        """
        if not self.store.holds(self.lease):
            self._discard()
            return
        decided = plan(self.results, self.monotonic(), self.stop.at, final, self.lease.name)
        self.results = list(decided.keep)
        self.batch.discard(decided.discard)
        recorded = self.watch.sift(decided.record, final)
        logged = self.batch.record(self.lease, recorded)
        self.halt.judge(recorded)  # the failure that reaches --halt halts the farm
        for result in decided.put_back:  # back into toprocess with the queue, when we leave
            self.queue.appendleft(result.task)
            self.stopped.append(result)
            self.batch.put_back(result)
        self.joblog.append(logged)

    def _discard(self) -> None:
        """*locked* Our lease was taken over: log the held results, record none, start over
        with a new lease (the farmer that took it over put our tasks back, the running one
        included: it is stopped now, so that it does not run twice at once, and its result
        will be discarded too, for it was claimed under the old lease)."""
        self.batch.discard(self.watch.drop() + self.results)
        self.results.clear()
        self.queue.clear()
        self.execution.terminate()
        self._say(f"lease {self.lease.name} was taken over; continuing with a new one")
        self.lease = self._register()

    def _say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.clock()))
        self.say(f"{stamp} {self.config.node} worker {self.config.slot}: {text}")
