"""A worker: one process of a farmer's pool, running one task at a time.

Each worker has its own lease (``WORKDIR/leases/NAME``; see :mod:`taskfarmer.store`) and loops:
under the lock, record the results of the tasks it ran (then their job log lines, see
:mod:`taskfarmer.logs.joblog` and :mod:`.recording`) and claim the next chunk of tasks (as many
as :mod:`.chunking` says: about a second of work); then run them one after the other without
the lock (:mod:`.execution`), recording the held results in batches meanwhile. So short tasks
cost a lock hold per chunk, not per task. On a stop signal it kills the task's process group,
puts the task and the unstarted ones it had claimed back into ``toprocess``, and drops its
lease.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Callable

from ..errors import TaskfarmerError
from ..hpc.identity import Identity
from ..logs.joblog import JobLog
from ..logs.tasklogs import TaskLogs
from ..runners.base import Runner
from ..store import Lease, LeaseName, LeaseRevoked, Outcome, StateStore, worker_name
from ..tasks import Task, TaskList
from ..timeline.file import Timeline
from .chunking import DurationEstimate, chunk_size, record_due, wanted
from .execution import Execution
from .memory import MemoryBoard
from .recording import RESULT_HOLD, HoldBatch, Result, plan
from .signals import StopRequest

#: Seconds between two counts of the workdir's lease files (for the size of a claim).
CLAIMANTS_REFRESH = 10.0


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
        on_change: told ``(slot, task id)`` when a task starts and ``(slot, -1)`` when it
            ends.
        may_start: asked before each task starts: False starts no more (and puts the unstarted
            claimed ones back).
        memory: what the farm's processes share about memory (None: not watched).
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
        memory: MemoryBoard | None = None,
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
        self.results: list[Result] = []  # ended, not yet recorded (see RESULT_HOLD)
        self.stopped: list[Result] = []  # cut short by a stop: logged once back in toprocess
        self.queue: deque[Task] = deque()
        self._reruns: set[int] = set()  # queued tasks that were started before
        self._generation = 0
        self._durations = DurationEstimate()
        self._claimants: tuple[int, float] | None = None  # (lease files, counted when)
        self.lease: Lease
        self.logs = TaskLogs(self.store.logs, config.logs, worker_name(config.farmer, config.slot))
        self.joblog = JobLog(self.store.files.joblog, coherent=self.store.files.coherent)
        self.batch = HoldBatch(config, self.store, self.timeline, self.joblog, clock, self._say)
        self.execution = Execution(config, parts.runner, self.logs, stop, clock=clock,
                                   monotonic=monotonic, sleep=sleep, say=self._say,
                                   record_due=self._record_due, record_held=self._record_held,
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
            with self.store.locked():
                self.lease = self._register()
            self._loop()
            self._leave()
        except BaseException:
            self._abandon()
            raise
        self._close()
        return 0

    def _loop(self) -> None:
        while True:
            with self.store.locked():
                self._settle()
                if self.stop.requested:
                    self.batch.flush()
                    return
                if self.queue and not self.may_start():
                    self._put_back_unstarted()  # the start gate closed (walltime)
                if not self.queue and self.may_start():
                    self._take(self._claim())
                self.batch.flush()
            if not self.queue:
                if not self.results:
                    return
                self._sleep_until_recordable()
                continue
            if not self._run_queue():
                return

    def _run_queue(self) -> bool:
        """Run the claimed tasks one after the other, without the lock, while the gate is open
        and no stop is requested. False once a stop cut a task short (the worker leaves)."""
        while self.queue and self.may_start() and not self.stop.requested:
            task = self.queue.popleft()
            self._busy(task.id)
            result = self._execute(task)
            self._busy(-1)
            self._durations.add(result.end - result.start)
            self.results.append(result)
            self.batch.count(running=-1)  # written with the next lock hold
            if result.stopped:
                return False
        return True

    def _claim(self) -> list[Task]:
        """*locked* Claim the next chunk (:func:`~.chunking.chunk_size`), with a new lease if
        ours was taken over."""
        count = want = wanted(self._durations)
        if want > 1:  # near the end of the list, a share of what is left
            claimants = self._count_claimants()
            count = chunk_size(want, self.store.pending_count(want * claimants), claimants)
        try:
            return self.store.claim(self.lease, count)
        except LeaseRevoked:
            self.lease = self._register()
            return self.store.claim(self.lease, count)

    def _count_claimants(self) -> int:
        """*locked* The workers of the workdir (its lease files), counted at most every
        :data:`CLAIMANTS_REFRESH` seconds (a directory listing: on a workdir shared by many
        nodes, not something to do per claim)."""
        now = self.monotonic()
        if self._claimants is None or now - self._claimants[1] >= CLAIMANTS_REFRESH:
            self._claimants = (max(1, len(self.store.lease_names())), now)
        return self._claimants[0]

    def _put_back_unstarted(self) -> None:
        """*locked* Put the claimed tasks not started back into ``toprocess``."""
        unstarted = len(self.queue)
        self.store.requeue(self.queue)
        self.queue.clear()
        self.batch.count(running=-unstarted, pending=unstarted)

    def _leave(self) -> None:
        """Record or put back what we hold, drop the lease."""
        with self.store.locked():
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
        claimed_under = self.lease.name  # a takeover while it runs replaces self.lease
        return replace(self.execution.run(task, command, rerun), lease=claimed_under)

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

    def _record_due(self) -> float | None:
        """When the held results are due to be recorded (monotonic clock; see
        :func:`~.chunking.record_due`); None if none is held."""
        if not self.results:
            return None
        return record_due(self.results[0].ended_at, self.results[-1].ended_at)

    def _sleep_until_recordable(self) -> None:
        """Wait until the youngest held result may be recorded (or a stop arrives)."""
        remaining = RESULT_HOLD - (self.monotonic() - self.results[-1].ended_at)
        if remaining > 0 and not self.stop.requested:
            self.sleep(remaining)

    def _record_held(self) -> None:
        """Record the held results that are old enough (while a task runs)."""
        with self.store.locked():
            self._settle()
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
        self._log_discarded(decided.discard)
        logged = self.batch.record(self.lease, decided.record)
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
        self._log_discarded(self.results)
        self.results.clear()
        self.queue.clear()
        self.execution.terminate()
        self._say(f"lease {self.lease.name} was taken over; continuing with a new one")
        self.lease = self._register()

    def _log_discarded(self, results: Sequence[Result]) -> None:
        """*locked* Log results that are not recorded: their tasks were put back by the farmer
        that took their lease over (the job log says ``discarded``, the timeline too)."""
        for result in results:
            self._say(f"task {result.task.id} ended (exit {result.returncode}) after our "
                      "lease was taken over: result logged, not recorded")
        self.batch.log([result for result in results if not result.stopped], "discarded")
        for result in results:
            self.batch.add(result, "stopped" if result.stopped else Outcome.DISCARDED.value)

    def _say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.clock()))
        self.say(f"{stamp} {self.config.node} worker {self.config.slot}: {text}")
