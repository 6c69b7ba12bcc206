"""The farm: a farmer's main process and the pool of workers it supervises.

The main process prepares the workdir, starts ``--proc`` worker processes
(:mod:`taskfarmer.farm.worker`), renews their leases (in a thread, :mod:`.heartbeat`), takes
over the leases of dead farmers, refills free worker slots while tasks are pending, imports
lines appended to the tasklist (every :data:`IMPORT_POLL` seconds and whenever it runs out of
work; see :mod:`taskfarmer.store.listimport`), shows progress, and on a stop signal,
``--timeout`` or the SLURM job's end (:mod:`taskfarmer.hpc.walltime`) stops the workers (which
put their tasks back) and exits; before a time limit it starts no task not expected to finish
in time. Inside a memory cgroup it starts no more workers than the tasks' memory allows, and a
thread stops the newest task when memory runs short (:mod:`.memory`). It waits while other
farmers still hold leases rather than exit: if one of them dies, its tasks come back and must
be run.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable

from ..errors import TaskfarmerError, as_error
from ..hpc.identity import Identity
from ..hpc.memory import NodeMemory
from ..hpc.resources import SlotResources, pin
from ..hpc.walltime import DEFAULT_MARGIN, TaskTime, Walltime, limits
from ..logs.joblog import JobLogDurations, recent_peak
from ..logs.tasklogs import free_inodes, inode_warning
from ..store import (
    DEFAULT_LEASE,
    NOW,
    Counts,
    StateCounter,
    StateStore,
    farmer_name,
    heartbeat_period,
    lease_warning,
)
from .blackhole import DEFAULT_ROW
from .claiming import FarmDurations
from .deaths import Where, WorkerDeaths
from .display import Display, DisplayFactory, Snapshot, quiet
from .ending import FirstError, close_quietly, close_state, mark_end, stop_workers, work_left
from .gate import StartGate
from .growth import ListGrowth
from .halt import Halt, HaltPolicy
from .heartbeat import Heartbeat
from .memory import MemoryBoard, MemoryGuard
from .messages import MessagePipe, carried_error
from .orphans import OrphanNet
from .pool import WORKER_ERROR, WorkerPool
from .quarantine import QUARANTINE_STOP, WORKER_QUARANTINED, NodeQuarantine
from .report import FarmReport, append_stats
from .signals import StopRequest
from .starting import start_track
from .takeover import Takeover
from .worker import Parts, Worker, WorkerConfig

#: The main loop wakes at least this often.
POLL = 0.5
#: A farmer with no workers left waits for other farmers' leases (their tasks may still come
#: back to ``toprocess``). It looks again after this long, then after twice as long, and so on
#: up to :data:`POLL`: the end of the run is noticed within about the time waited so far
#: (a fixed 0.5 s cost 4 farmers sharing 2,000 short tasks a fifth of their throughput),
#: while a long wait takes the lock no more often than :data:`POLL` allows.
IDLE_POLL_FIRST = 0.02
#: Seconds between looks at the tasklist for appended lines while working.
IMPORT_POLL = 2.0


@dataclass
class FarmConfig:
    """The options of one farmer run."""

    tasklist: Path
    workdir: Path
    proc: int
    timeout: float | None = None
    verbose: bool = False
    lease: float = DEFAULT_LEASE
    task_timeout: float | None = None
    retries: int = 0
    requeue_failed: bool = False
    follow: bool = False
    accept_list: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    logs: str = "flat"
    #: Devices and CPUs of each worker slot (:func:`taskfarmer.hpc.resources.plan_slots`); empty:
    #: none assigned.
    slots: Sequence[SlotResources] = ()
    #: ``--task-time``: seconds a task is expected to take (None: learned from the timeline).
    task_time: float | None = None
    #: ``--stop-margin``: stop this long before the SLURM job's end.
    stop_margin: float = DEFAULT_MARGIN
    #: When the SLURM job ends (seconds since the epoch), if it has a limit.
    job_end: float | None = None
    #: ``--halt``: when to halt the whole farm (None: never; a halt by another farmer is
    #: obeyed all the same).
    halt: HaltPolicy | None = None
    #: ``--quarantine K``: fast failures in a row that may quarantine the node (None: off).
    quarantine: int | None = DEFAULT_ROW
    #: ``--mem-per-task`` in bytes (None: learned from the tasks' peaks).
    mem_per_task: int | None = None

    def slot(self, slot: int) -> SlotResources:
        """What worker slot ``slot`` owns."""
        return self.slots[slot] if self.slots else SlotResources(slot)


class Farm:
    """A farmer's main process.

    Args:
        config: the farmer's options.
        parts: the store, timeline, runner and handler.
        identity: this process (default: found out).
        clock: the wall clock (seconds since the epoch).
        monotonic: the monotonic clock (the stop requests keep their time by it).
        display: makes what the farm shows.
    """

    def __init__(
        self,
        config: FarmConfig,
        parts: Parts,
        identity: Identity | None = None,
        clock: Callable[[], float] = time.time,
        display: DisplayFactory = quiet,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.parts = parts
        self.store = parts.store
        self.timeline = parts.timeline
        self.handler = parts.handler
        self.clock = clock
        self.monotonic = monotonic
        self.identity = identity or Identity.current(environ=config.environ)
        self.name = f"{self.identity.node}:{self.identity.pid}"
        self.farmer = farmer_name(self.identity.node, self.identity.pid, os.urandom(3).hex())
        self.track = 0  # the timeline track's process id, chosen under the lock at start
        self.display: Display = display(self.name, clock)
        self.stop = StopRequest(clock=monotonic)
        self.counter = StateCounter(parts.store)
        self.errors = FirstError(config.workdir)
        self.draining: str | None = None  # why no task starts any more
        self.pipe = MessagePipe()
        self.pool = WorkerPool(config.proc, self._make_worker, self.pipe, self.stop,
                               self.identity.pid, config.workdir, monotonic)
        self.gate = StartGate(config.proc, clock, refresh=POLL)
        self.durations = FarmDurations(self.pool.context)  # shared by the workers
        self.memory = MemoryBoard(config.proc, NodeMemory.current(), config.mem_per_task,
                                  recent_peak(self.store.files.joblog), monotonic)
        self.guard = MemoryGuard(self.memory)
        self.takeover = Takeover(self.store, self.timeline, self.farmer, self.identity,
                                 config.lease, clock, monotonic, self.display.say)
        self.deaths = WorkerDeaths(self.takeover, self.store, Where(
            self.identity.node, self.farmer, config.retries), self.handler.command, clock,
            self.display.say)
        self.orphans = OrphanNet(self.store, self.timeline, clock, self.display.say)
        self.heartbeat = Heartbeat(self.store, self.farmer, heartbeat_period(config.lease),
                                   monotonic)
        self.halt = Halt(self.store, config.halt, self.farmer, clock, monotonic)
        self.growth = ListGrowth(self.store, self.timeline, self.handler, config.tasklist, clock,
                                 monotonic, self.display.say)
        self.quarantine = NodeQuarantine(self.store, self.identity.node,
                                         config.quarantine is not None, clock)

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> FarmReport:
        """Farm until the list is done, a stop signal arrives or ``--timeout`` passes."""
        # Handlers first: a stop signal while the list is being read must not kill us.
        self.stop.on_stop(self.pool.forward_stop)
        self.stop.install()
        try:
            self._prepare()  # no worker yet: an error goes to the caller
        except OSError as error:
            close_quietly(self.store, self.timeline)
            raise as_error(error, self.config.workdir) from None
        except BaseException:
            close_quietly(self.store, self.timeline)
            raise
        try:
            self._farm()
        except (TaskfarmerError, OSError) as error:
            self.errors.fail(error)
        finally:
            self._shutdown()
        return self._report()

    def _farm(self) -> None:
        walltime = Walltime.earliest(
            limits(self.clock(), self.config.timeout, self.config.job_end,
                   self.config.stop_margin),
            TaskTime(self.config.task_time, JobLogDurations(self.store.files.joblog)),
            self.clock)
        deadline = walltime.stop_at if walltime is not None else None
        self.gate.limit_to(deadline)
        period = heartbeat_period(self.config.lease)
        next_look = 0.0
        self.heartbeat.start()  # renewals go on while this loop waits for the lock
        self.guard.start()
        next_import = self.clock() + IMPORT_POLL
        idle_poll = IDLE_POLL_FIRST
        self.display.say(where(self.store))
        warnings = (lease_warning(self.config.lease, self.config.workdir),
                    inode_warning(self.config.logs, free_inodes(self.config.workdir),
                                  self.counter.counts().pending))
        for warning in warnings:
            if warning is not None:
                self.display.say(warning)
        self.display.start(self._snapshot())
        while not self.stop.requested and self.errors.message is None:
            now = self.clock()
            if walltime is not None and self._out_of_time(walltime, now):
                break
            if self.draining is not None and not self.pool:
                break
            self.heartbeat.check()
            if self._halted():
                break
            if now >= next_look:
                self.takeover.take_over_expired(self.track)
                if self.quarantine.check():  # by one of our workers, or another farmer
                    self.stop.request(QUARANTINE_STOP)
                next_look = now + period
            self._reap()
            if self.errors.message is not None:
                break
            if now >= next_import:
                self.growth.import_growth(self.track)
                next_import = now + IMPORT_POLL
            self._fill_slots()
            if not self.pool and self._all_done() and not self.config.follow:
                break
            self._drain_messages()
            self.display.update(self._snapshot())
            poll, idle_poll = idle_backoff(idle_poll, waiting=not self.pool)
            wake = math.inf if deadline is None else deadline
            if self.draining is None:  # also when the start gate closes
                wake = min(wake, self.gate.limit())
            timeout = max(0.0, min(poll, wake - now))
            wait([*self.pool.sentinels(), self.pipe.reader], timeout)

    def _halted(self) -> bool:
        """Look for the workdir's halt record (:meth:`Halt.look`); once it is there, stop the
        workers (``now``: True, the loop ends) or let them drain (``soon``)."""
        record = self.halt.look()
        if record is None:
            return False
        how = ("stopping the running tasks" if record.when == NOW
               else "letting the running tasks finish")
        self.display.say(f"{record.describe()}: {how}, starting no more")
        if record.when == NOW:
            self.stop.request("halt")
            return True
        self.draining = "halt"
        self.gate.close()
        return False

    def _out_of_time(self, walltime: Walltime, now: float) -> bool:
        """Stop (True) at the walltime's limit; before that, close the start gate once no
        task is expected to finish in time (workers ask the gate before each claim)."""
        if now >= walltime.stop_at:
            self.display.say(walltime.why_stop())
            self.stop.request(walltime.limit.reason)
            return True
        if self.draining is None:
            self.gate.estimate(walltime, now)  # reads the timeline's new events: once a POLL
            if now >= self.gate.limit():
                self.draining = walltime.limit.reason
                self.display.say(walltime.why_no_start(self.gate.longest))
        return False

    def _shutdown(self) -> None:
        self.guard.stop()  # evicts no more
        stop_workers(self.pool, self.takeover, self.track, self.errors)
        self._drain_messages()
        self.heartbeat.stop()  # before our leases are handed over or the workdir tidied
        close_state(self.store, self.timeline, self.farmer, self.errors,
                    partial(self.orphans.catch, self.track))

    def _report(self) -> FarmReport:
        left = work_left(self.store, self.errors, self.config.tasklist)
        try:
            snapshot = self._snapshot()
        except (TaskfarmerError, OSError):
            snapshot = Snapshot(Counts(0, 0, 0), 0)
        stopped_by = self.stop.describe() if self.stop.requested else self.draining
        halted = left and self.errors.attempt(self.halt.look_now) and self.halt.record is not None
        report = FarmReport(snapshot.counts, stopped_by, left, self.errors.message, halted,
                            self.quarantine.line())
        if self.errors.message is None and not self.errors.attempt(partial(
                mark_end, self.store, self.timeline, self.track, self.stop, report,
                clock=self.clock, monotonic=self.monotonic)):
            report = replace(report, error=self.errors.message)
        self.display.finish(snapshot, report.outcome)
        self.display.say(where(self.store))
        close_quietly(self.store, self.timeline)
        append_stats(self.config.environ, self.farmer, self.store, self.display.say)
        return report

    def _prepare(self) -> None:
        self.store.prepare()
        self.quarantine.refuse()
        self.handler.prepare(self.config.tasklist, self.config.workdir)  # not locked: it may lock
        with self.store.locked():
            self.halt.refuse_halted()  # before anything changes
            for path, fragment in self.store.repair():
                self.display.say(f"cut a torn last line off {path.name} (kept in torn): "
                                 f"{fragment[:60]!r}")
            self.timeline.repair()
            fresh = not self.store.initialized()
            if not fresh and self.store.needs_adoption():
                adoption = self.store.adopt(self.handler.lines(self.config.tasklist))
                self.display.say(adoption.describe())
            added = self.store.import_list(self.config.tasklist, self.handler, starting=True,
                                           accept=self.config.accept_list)
            if added and not fresh:
                self.display.say(f"imported {added} task(s) appended to "
                                 f"{self.config.tasklist}")
            requeued = 0
            if self.config.requeue_failed:
                requeued = self.store.requeue_failed()
                self.display.say(f"put {requeued} failed task(s) back into toprocess")
            self.orphans.catch(0)  # the last farmer may have died before it tidied
            self.halt.count_from_here()
            self.track, events = start_track(
                self.store, self.timeline, self.counter, self.identity, self.farmer,
                self.config.proc, self.config.environ, self.clock(), requeued,
                0 if fresh else added, self.growth.appended)
            self.timeline.append(events)
        self.takeover.take_over_expired(self.track)

    # -- workers -----------------------------------------------------------------------------

    def _fill_slots(self) -> None:
        free = [] if self.stop.requested or self.draining is not None else self.pool.free()
        free = free[:self.memory.admissible(len(self.pool), len(free))]  # memory, the cap
        if not free:
            return
        with self.store.locked():
            count = self.store.pending_count(len(free))
        self.pool.start(free[:count])

    def _make_worker(self, slot: int) -> Worker:
        """In a forked worker process: the worker of ``slot``."""
        resources = self.config.slot(slot)
        pin(resources)  # the tasks inherit the affinity mask
        self.parts.runner.assign(resources)
        config = WorkerConfig(slot=slot, farmer=self.farmer, track=self.track,
                              node=self.identity.node, verbose=self.config.verbose,
                              task_timeout=self.config.task_timeout,
                              retries=self.config.retries,
                              environ=resources.environment(self.config.environ),
                              logs=self.config.logs, slots=self.config.proc,
                              quarantine=self.config.quarantine)
        return Worker(config, self.parts, StopRequest(clock=self.monotonic), clock=self.clock,
                      monotonic=self.monotonic, say=self.pipe.send, on_change=self._mark,
                      may_start=self.gate.may_start, halt=self.halt,
                      farm_stopping=self.pool.stopping,
                      memory=self.memory, durations=self.durations)

    def _mark(self, slot: int, task_id: int) -> None:
        """In a worker: slot ``slot`` runs ``task_id`` now (-1: none)."""
        self.pool.mark(slot, task_id)
        self.gate.mark(slot, task_id)

    def _drain_messages(self) -> None:
        for line in self.pipe.lines():
            error = carried_error(line)
            if error is None:
                self.display.log(line)
            else:
                self.errors.note(error)

    def _reap(self) -> None:
        for gone in self.pool.reap():  # not in _shutdown
            self._drain_messages()
            if gone.code == WORKER_QUARANTINED:  # its tasks are handed back: not a death
                self.takeover.revoke_worker(gone.slot, gone.pid, self.track)
                if self.quarantine.check():  # by one of our workers, or another farmer
                    self.stop.request(QUARANTINE_STOP)
                continue
            if self.stop.requested or gone.code == WORKER_ERROR:
                self.takeover.revoke_worker(gone.slot, gone.pid, self.track)
                if not self.stop.requested:
                    self.errors.note(f"worker {gone.slot} stopped on an error")
                continue
            self.deaths.settle(gone, self.track)
            if self.deaths.gave_up:  # reported even over an earlier error
                self.errors.message = f"{self.deaths.uncharged} worker crashes; giving up"

    # -- the tasklist ------------------------------------------------------------------------

    def _all_done(self) -> bool:
        self.growth.import_growth(self.track)  # out of work: lines appended since are work too
        if self.store.unimported_bytes(self.config.tasklist) > 0:
            return False  # a last line without its newline: imported once the list rests
        with self.store.locked():
            if self.store.pending() or self.store.any_leases():
                return False
            return not self.orphans.catch(self.track)  # at rest: nothing recorded nowhere

    def _snapshot(self) -> Snapshot:
        return Snapshot(self.counter.counts(), self.pool.running(), self.growth.total())


def where(store: StateStore) -> str:
    """The line that says where a farm's workdir, task logs, job log and timeline are."""
    files = store.files
    return (f"workdir {store.workdir}: task logs in {store.logs}, job log {files.joblog}, "
            f"timeline {files.timeline}")


def idle_backoff(idle_poll: float, waiting: bool) -> tuple[float, float]:
    """(How long the main loop sleeps now, the next ``idle_poll``).

    Working (``waiting`` false): :data:`POLL`, and the back-off starts over. Waiting for other
    farmers: ``idle_poll``, doubling each time up to :data:`POLL`.
    """
    if not waiting:
        return POLL, IDLE_POLL_FIRST
    return idle_poll, min(idle_poll * 2, POLL)


def workdir_for(tasklist: Path, workdir: Path | None) -> Path:
    """``--workdir`` or PyTaskFarmer's default ``TASKLIST_workdir``."""
    return workdir if workdir is not None else Path(str(tasklist) + "_workdir")

