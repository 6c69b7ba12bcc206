"""The farm: a farmer's main process and the pool of workers it supervises.

The main process prepares the workdir, starts ``--proc`` worker processes
(:mod:`taskfarmer.farm.worker`), renews their leases, takes over the leases of dead farmers, refills
free worker slots while tasks are pending, imports lines appended to the tasklist (every
:data:`IMPORT_POLL` seconds and whenever it runs out of work; see
:mod:`taskfarmer.store.listimport`), shows progress, and on a stop signal, ``--timeout`` or the
SLURM job's end (:mod:`taskfarmer.hpc.walltime`) stops the workers (which put their tasks back) and
exits; before a time limit it starts no task not expected to finish in time. It waits while
other farmers still hold leases rather than exit: if one of them dies, its tasks come back and
must be run.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable

from ..errors import ExitCode, TaskfarmerError, TasklistError, as_error
from ..hpc.identity import Identity
from ..hpc.resources import SlotResources, pin
from ..hpc.slurm import job_labels
from ..hpc.walltime import DEFAULT_MARGIN, TaskTime, Walltime, limits
from ..logs.joblog import JobLogDurations
from ..store import DEAD_SUFFIX, Counts, LeaseInfo, StateCounter, farmer_name
from ..store.adopt import adopt, needs_adoption
from ..timeline.counts import TaskCounts
from ..timeline.events import Event, choose_pid, counters, farmer_tracks, instant, process_title
from .display import Display, DisplayFactory, Snapshot, quiet
from .ending import FarmEnding, worker_error
from .signals import StopRequest, die_with_parent
from .worker import Parts, Worker, WorkerConfig

#: Default ``--lease``: long enough to ride out a stalled parallel filesystem, short enough
#: that the tasks of a dead node come back within minutes.
DEFAULT_LEASE = 300.0
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
#: Worker exit code for a state or configuration error (not worth restarting the worker).
WORKER_ERROR = 2
#: Give up after this many unexpected worker deaths.
MAX_WORKER_CRASHES = 20


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

    def slot(self, slot: int) -> SlotResources:
        """What worker slot ``slot`` owns."""
        return self.slots[slot] if self.slots else SlotResources(slot)


@dataclass(frozen=True)
class FarmReport:
    """How a farmer run ended."""

    counts: Counts
    stopped_by: str | None
    work_left: bool
    error: str | None = None

    @property
    def exit_code(self) -> ExitCode:
        """0 all done; 1 done with failures; 2 error; 3 stopped with work left."""
        if self.error is not None:
            return ExitCode.ERROR
        if self.work_left:
            return ExitCode.STOPPED
        return ExitCode.FAILED if self.counts.failed else ExitCode.OK

    @property
    def outcome(self) -> str:
        """A few words for the last log line."""
        if self.error is not None:
            return f"error: {self.error}"
        if self.work_left:
            return f"stopped by {self.stopped_by}, work left"
        return "done with failures" if self.counts.failed else "done"


def expired(info: LeaseInfo, now: float, lease: float, observer: Identity) -> bool:
    """Whether another farmer's lease may be taken over.

    Half-revoked leases always; provably dead owners (same boot and PID namespace, pid gone)
    at once; anyone else once the heartbeat is older than ``lease`` seconds.
    """
    return info.dead or info.owner.provably_dead(observer) or now - info.heartbeat > lease


class Farm(FarmEnding):
    """A farmer's main process."""

    def __init__(
        self,
        config: FarmConfig,
        parts: Parts,
        identity: Identity | None = None,
        clock: Callable[[], float] = time.time,
        display: DisplayFactory = quiet,
    ) -> None:
        self.config = config
        self.parts = parts
        self.store = parts.store
        self.timeline = parts.timeline
        self.handler = parts.handler
        self.clock = clock
        self.identity = identity or Identity.current(environ=config.environ)
        self.name = f"{self.identity.node}:{self.identity.pid}"
        self._main_pid = os.getpid()
        self.farmer = farmer_name(self.identity.node, self.identity.pid, os.urandom(3).hex())
        self.track = 0  # the timeline track's process id, chosen under the lock at start
        self.display: Display = display(self.name, clock)
        self.stop = StopRequest()
        self.counter = StateCounter(parts.store)
        self.workers: dict[int, multiprocessing.Process] = {}
        self.crashes = 0
        self.error: str | None = None
        self.list_changed = False
        self._context = multiprocessing.get_context("fork")
        self._busy = self._context.RawArray("i", [-1] * config.proc)
        # The start gate (see _start_limit), shared with the workers: the time limit, when no
        # task may start any more if a task time is known, whether one is, and the longest
        # task each worker slot ran (what counts while no task time is known).
        self._stop_at = self._context.RawValue("d", math.inf)
        self._start_by = self._context.RawValue("d", math.inf)
        self._known = self._context.RawValue("b", 0)
        self._longest = self._context.RawArray("d", config.proc)
        self._task_started = 0.0  # in a worker: when its current task started
        self.draining: str | None = None  # why no task starts any more
        self._next_estimate = 0.0
        self._messages_r, self._messages_w = os.pipe()
        os.set_blocking(self._messages_r, False)
        self._partial = b""

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> FarmReport:
        """Farm until the list is done, a stop signal arrives or ``--timeout`` passes."""
        # Handlers first: a stop signal while the list is being read must not kill us.
        self.stop.on_stop(self._forward_stop)
        self.stop.install()
        try:
            self._prepare()  # no worker yet: an error goes to the caller
        except OSError as error:
            self.close_quietly()
            raise as_error(error, self.config.workdir) from None
        except BaseException:
            self.close_quietly()
            raise
        try:
            self._farm()
        except (TaskfarmerError, OSError) as error:
            self.fail(error)
        finally:
            self._shutdown()
        return self._report()

    def _farm(self) -> None:
        walltime = Walltime.earliest(
            limits(self.clock(), self.config.timeout, self.config.job_end,
                   self.config.stop_margin),
            TaskTime(self.config.task_time, JobLogDurations(self.store.workdir / "joblog")),
            self.clock)
        deadline = walltime.stop_at if walltime is not None else None
        self._stop_at.value = math.inf if deadline is None else deadline
        period = min(self.config.lease / 4, 30.0)
        next_beat = 0.0
        next_import = self.clock() + IMPORT_POLL
        idle_poll = IDLE_POLL_FIRST
        self.display.say(self._where())
        self.display.start(self._snapshot())
        while not self.stop.requested and self.error is None:
            now = self.clock()
            if walltime is not None and self._out_of_time(walltime, now):
                break
            if self.draining is not None and not self.workers:
                break
            if now >= next_beat:
                self._heartbeat()
                self._take_over_expired()
                next_beat = now + period
            self._reap()
            if self.error is not None:
                break
            if now >= next_import:
                self._import_growth()
                next_import = now + IMPORT_POLL
            self._fill_slots()
            if not self.workers and self._all_done() and not self.config.follow:
                break
            self._drain_messages()
            self.display.update(self._snapshot())
            poll, idle_poll = idle_backoff(idle_poll, waiting=not self.workers)
            wake = math.inf if deadline is None else deadline
            if self.draining is None:  # also when the start gate closes
                wake = min(wake, self._start_limit())
            timeout = max(0.0, min(poll, wake - now))
            wait([*(p.sentinel for p in self.workers.values()), self._messages_r], timeout)

    def _out_of_time(self, walltime: Walltime, now: float) -> bool:
        """Stop (True) at the walltime's limit; before that, close the start gate once no
        task is expected to finish in time (workers ask :meth:`_start_limit` before each claim)."""
        if now >= walltime.stop_at:
            self.display.say(walltime.why_stop())
            self.stop.request(walltime.limit.reason)
            return True
        if self.draining is None:
            if now >= self._next_estimate:  # reads the timeline's new events: once a POLL
                self._start_by.value = walltime.latest_start()
                self._known.value = walltime.task_time.expected() is not None
                self._next_estimate = now + POLL
            if now >= self._start_limit():
                self.draining = walltime.limit.reason
                self.display.say(walltime.why_no_start(max(self._longest)))
        return False

    def _start_limit(self) -> float:
        """No task may start from this time on: the walltime's latest start once a task time
        is known; before, the limit minus the longest task this farmer has run. Workers ask
        it themselves before every claim: the estimate the main process reads from the
        timeline arrives up to a poll late, too late for a worker that has just finished one
        of the first tasks."""
        if self._known.value:
            return self._start_by.value
        return self._stop_at.value - max(self._longest)

    def _prepare(self) -> None:
        self.store.prepare()
        self.handler.prepare(self.config.tasklist, self.config.workdir)  # not locked: it may lock
        with self.store.locked():
            for path, fragment in self.store.repair():
                self.display.say(f"cut a torn last line off {path.name} (kept in torn): "
                                 f"{fragment[:60]!r}")
            self.timeline.repair()
            fresh = not self.store.initialized()
            if not fresh and needs_adoption(self.store):
                adoption = adopt(self.store, self.handler.lines(self.config.tasklist))
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
            events = self._timeline_start(0 if fresh else added, requeued)
            self.timeline.append(events)
        self._take_over_expired()

    def _timeline_start(self, appended: int, requeued: int) -> list[Event]:
        """*locked* Choose our track, recount the tasks if no farmer runs; the start events."""
        state = self.timeline.state
        if not self.store.any_leases():  # no task is running: the files tell every count
            counts = self.counter.counts()
            state.reset(TaskCounts(counts.finished, counts.failed, 0, counts.pending))
        elif requeued or appended:
            state.change(failed=-requeued, pending=requeued + appended)
        used = state.track_ids()
        self.track = choose_pid(self.identity.pid, used, self.config.proc, self.farmer)
        state.add_track_id(self.track)
        labels = job_labels(self.config.environ)
        title = process_title(self.identity.node, labels, self.track == self.identity.pid)
        now = self.clock()
        events = farmer_tracks(self.track, title, labels, len(used) + 1, self.config.proc)
        events.append(instant("farmer start", now, self.track,
                              {"node": self.identity.node, "pid": self.identity.pid,
                               "proc": self.config.proc, **labels}))
        if appended:
            events.append(self._appended(now, appended))
        return events + self._counters(now)

    def _appended(self, now: float, count: int) -> Event:
        return instant("tasks appended", now, self.track,
                       {"tasks": count, "tasklist": str(self.config.tasklist)})

    def _counters(self, now: float, **delta: int) -> list[Event]:
        """*locked* Apply ``delta`` to the workdir's task counts; their counter event."""
        counts = self.timeline.state.change(**delta)
        if counts is None:
            return []
        return [counters(now, counts.done, counts.failed, counts.running, counts.pending)]

    def _where(self) -> str:
        workdir = self.config.workdir
        return (f"workdir {workdir}: task logs in {workdir / 'logs'}, job log "
                f"{workdir / 'joblog'}, timeline {workdir / 'timeline.json'}")

    # -- workers -----------------------------------------------------------------------------

    def _fill_slots(self) -> None:
        free = [slot for slot in range(self.config.proc) if slot not in self.workers]
        if not free or self.stop.requested or self.draining is not None:
            return
        with self.store.locked():
            count = self.store.pending_count(len(free))
        for slot in free[:count]:
            process = self._context.Process(target=self._worker_main, args=(slot,),
                                            name=f"taskfarmer worker {slot}", daemon=False)
            process.start()
            self.workers[slot] = process

    def _worker_main(self, slot: int) -> None:
        """Body of a worker process (runs after fork)."""
        die_with_parent(self.identity.pid)
        # Everything inherited from the main process is long-lived: keep the cyclic garbage
        # collector from walking it again and again (it showed in profiles of short tasks).
        gc.freeze()
        os.close(self._messages_r)
        try:  # start-up errors too: one line, no traceback from multiprocessing
            resources = self.config.slot(slot)
            pin(resources)  # the tasks inherit the affinity mask
            self.parts.runner.assign(resources)
            stop = StopRequest()
            config = WorkerConfig(slot=slot, farmer=self.farmer, track=self.track,
                                  node=self.identity.node, verbose=self.config.verbose,
                                  task_timeout=self.config.task_timeout,
                                  retries=self.config.retries,
                                  environ=resources.environment(self.config.environ),
                                  logs=self.config.logs)
            worker = Worker(config, self.parts, stop, clock=self.clock, say=self._send,
                            on_change=self._mark, may_start=self._may_start)
            worker.install_signal_handlers()
            if self.stop.requested:  # it arrived before our handlers: the farmer's ran, here
                stop.handle(self.stop.signum or signal.SIGTERM)
            code = worker.run()
        except (TaskfarmerError, OSError) as error:
            self._send(worker_error(error, self.config.workdir))
            code = WORKER_ERROR
        sys.exit(code)

    def _may_start(self) -> bool:
        """In a worker: whether a task may start now (see :meth:`_out_of_time`)."""
        return self.clock() < self._start_limit()

    def _mark(self, slot: int, task_id: int) -> None:
        """In a worker: slot ``slot`` runs ``task_id`` now (-1: none); keep its longest task."""
        self._busy[slot] = task_id
        if task_id >= 0:
            self._task_started = self.clock()
        else:
            self._longest[slot] = max(self._longest[slot], self.clock() - self._task_started)

    def _send(self, text: str) -> None:
        # One write(2) of at most PIPE_BUF bytes to a pipe is atomic: lines never interleave.
        data = (text.rstrip("\n") + "\n").encode()[: 4000]
        try:
            os.write(self._messages_w, data)
        except OSError:
            pass

    def _drain_messages(self) -> None:
        while True:
            try:
                data = os.read(self._messages_r, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            text = line.decode(errors="replace")
            if not self.worker_says(text):
                self.display.log(text)

    def _reap(self) -> None:
        for slot, process in list(self.workers.items()):
            if process.is_alive():
                continue
            process.join()
            del self.workers[slot]
            self._busy[slot] = -1
            code = process.exitcode
            if code == 0:
                continue
            self._drain_messages()
            self._revoke_worker(slot, process)  # gone: _shutdown will not see it
            if self.stop.requested:
                continue
            if code == WORKER_ERROR:
                self.error = self.error or f"worker {slot} stopped on an error"
            else:
                self.crashes += 1
                self.display.say(f"worker {slot} died (exit code {code}); its tasks are back "
                                 "in toprocess")
                if self.crashes > MAX_WORKER_CRASHES:
                    self.error = f"{self.crashes} worker crashes; giving up"

    # -- leases ------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        """Renew the leases of our workers (one ``utime`` each, per period, not per task)."""
        for name in self.store.lease_names():
            if name.startswith(self.farmer + ".") and not name.endswith(DEAD_SUFFIX):
                self.store.renew(name)

    def _take_over_expired(self) -> None:
        now = self.clock()
        with self.store.locked():
            for info in self.store.lease_infos():
                if info.name.startswith(self.farmer + "."):
                    continue
                if expired(info, now, self.config.lease, self.identity):
                    count = self._revoke(info.name, {"node": info.owner.node,
                                                     "pid": info.owner.pid})
                    self.display.say(f"took over lease {info.name} of {info.owner.node} "
                                     f"pid {info.owner.pid}: {count} task(s) back in "
                                     "toprocess")

    def _revoke(self, name: str, owner: dict[str, Any]) -> int:
        """*locked* Take over lease ``name`` and mark it on our track; how many tasks came back."""
        tasks = self.store.revoke(name)
        now = self.clock()
        events = [instant("lease taken over", now, self.track,
                          {"lease": name, **owner, "tasks": len(tasks),
                           "ids": [task.id for task in tasks[:20]]})]
        if tasks:
            events += self._counters(now, running=-len(tasks), pending=len(tasks))
        self.timeline.append(events)
        return len(tasks)

    def _all_done(self) -> bool:
        self._import_growth()  # out of work: lines appended since are work too
        with self.store.locked():
            return not self.store.pending() and not self.store.any_leases()

    def _import_growth(self) -> None:
        """Import lines appended to the tasklist since (one ``stat`` when there are none).

        A list whose imported part changed while we run is reported once and no longer
        imported from: the tasks already imported stay valid and are finished.
        """
        if self.list_changed or self.store.unimported_bytes(self.config.tasklist) <= 0:
            return
        try:
            with self.store.locked():
                added = self.store.import_list(self.config.tasklist, self.handler,
                                               starting=False)
                if added:
                    now = self.clock()
                    self.timeline.append([self._appended(now, added),
                                          *self._counters(now, pending=added)])
        except TasklistError as error:
            self.list_changed = True
            self.display.say(f"error: {error}; importing no more from it")
            return
        if added:
            self.display.say(f"imported {added} task(s) appended to {self.config.tasklist}")

    def _snapshot(self) -> Snapshot:
        running = sum(1 for task_id in self._busy if task_id >= 0)
        return Snapshot(self.counter.counts(), running)


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

