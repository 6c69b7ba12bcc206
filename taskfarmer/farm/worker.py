"""A worker: one process of a farmer's pool, running one task at a time.

Each worker has its own lease (``WORKDIR/leases/NAME``; see :mod:`taskfarmer.store`) and loops:
under the lock, record the result of the task it just ran (then its job log line, see
:mod:`taskfarmer.logs.joblog`) and take the next one; then run it.
One lock hold per task. On a stop signal it kills the task's process group, puts the task and
any it had taken back into ``toprocess``, and drops its lease.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

from ..errors import TaskfarmerError
from ..hpc.identity import Identity, group_has_live_members
from ..logs.joblog import Entry, JobLog, exit_and_signal
from ..logs.tasklogs import TaskLogs
from ..runners.base import Process, Runner
from ..store import Lease, LeaseRevoked, Outcome, StateStore
from ..tasks import Task, TaskList
from ..timeline.events import Event, counters, execution
from ..timeline.file import Timeline
from .signals import StopRequest, died_of_stop_signal

#: Seconds between SIGTERM and SIGKILL when a task is stopped or times out.
KILL_GRACE = 2.0
#: A task that died of a stop signal is requeued, not failed, if our own stop arrives this soon
#: (SLURM signals every process of a step; the task may see it before we do).
STOP_ECHO_WAIT = 1.0
#: A result is recorded only once it is this old (seconds), and put back instead if a stop
#: arrives sooner: when SLURM signals every process of a step, a command inside a task can die
#: first and the task's shell exit 0 before our own signal arrives.
RESULT_HOLD = 0.1


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

    @property
    def succeeded(self) -> bool:
        """Exit code 0."""
        return self.returncode == 0


#: How recording an outcome changes the workdir's task counts.
#: (An execution leaves ``running`` when it ends, before its result is recorded.)
_OUTCOME_DELTAS: dict[Outcome, dict[str, int]] = {
    Outcome.FINISHED: {"done": 1},
    Outcome.FAILED: {"failed": 1},
    Outcome.RETRY: {"pending": 1},
    Outcome.DISCARDED: {},  # the farmer that took the lease over counted it back as pending
}


class Worker:
    """Runs tasks until the list is empty or a stop is requested."""

    def __init__(
        self,
        config: WorkerConfig,
        parts: Parts,
        stop: StopRequest,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = print,
        on_change: Callable[[int, int], None] | None = None,
        may_start: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.store = parts.store
        self.timeline = parts.timeline
        self.runner = parts.runner
        self.handler = parts.handler
        self.stop = stop
        self.clock = clock
        self.monotonic = monotonic
        self.say = say
        self.results: list[Result] = []  # ended, not yet recorded (see RESULT_HOLD)
        self._events: list[Event] = []  # timeline events of this lock hold
        self._delta: dict[str, int] = {}  # how this lock hold changed the task counts
        self._reruns: set[int] = set()  # queued tasks that were started before
        self.on_change = on_change
        self.may_start = may_start  # asked before each claim: False takes no more tasks
        self.queue: deque[Task] = deque()
        self._process: Process | None = None
        self._terminating = False
        self._kill_at = 0.0
        self._timed_out = False
        self._generation = 0
        self.lease: Lease
        self.logs = TaskLogs(self.store.logs, config.logs, f"{config.farmer}.w{config.slot}")
        self.joblog = JobLog(self.store.workdir / "joblog", coherent=self.store.files.coherent)
        self.stopped: list[Result] = []  # cut short by a stop: logged once back in toprocess
        stop.on_stop(self._terminate)

    # -- signals -----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """Stop signals stop the worker; SIGALRM drives task timeouts and kill escalation."""
        self.stop.install()
        signal.signal(signal.SIGALRM, self._on_alarm)

    def _terminate(self) -> None:
        """SIGTERM the running task's group now, SIGKILL it after :data:`KILL_GRACE`."""
        process = self._process
        if process is None or self._terminating:
            return
        self._terminating = True
        self._kill_at = self.monotonic() + KILL_GRACE
        Runner.kill(process, signal.SIGTERM)
        signal.setitimer(signal.ITIMER_REAL, KILL_GRACE)

    def _on_alarm(self, signum: int, frame: object) -> None:
        process = self._process
        if process is None:
            return
        if self._terminating:
            Runner.kill(process, signal.SIGKILL)
        else:
            self._timed_out = True
            self._terminate()

    # -- the loop ----------------------------------------------------------------------------

    def _register(self) -> Lease:
        self._generation += 1
        name = f"{self.config.farmer}.w{self.config.slot}.{os.getpid()}.{self._generation}"
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
                    self._flush()
                    break
                if not self.queue and self.may_start():
                    try:
                        claimed = self.store.claim(self.lease, 1)
                    except LeaseRevoked:
                        self.lease = self._register()
                        claimed = self.store.claim(self.lease, 1)
                    self._take(claimed)
                self._flush()
            if not self.queue:
                if not self.results:
                    break
                self._sleep_until_recordable()
                continue
            task = self.queue.popleft()
            self._busy(task.id)
            result = self._execute(task)
            self._busy(-1)
            self.results.append(result)
            self._count(running=-1)  # written with the next lock hold, right away
            if result.stopped:
                break

    def _leave(self) -> None:
        """Record or put back what we hold, drop the lease."""
        with self.store.locked():
            unstarted = len(self.queue)
            self._settle(final=True)
            if self.store.holds(self.lease):
                self.store.requeue(self.queue)
                self._count(running=-unstarted, pending=unstarted)
                self.store.release(self.lease)
                self._log(self.stopped, "stopped")
            self.queue.clear()
            self._flush()

    def _abandon(self) -> None:
        """After an error: kill the running task, close what can be closed, touch nothing."""
        process = self._process
        if process is not None:
            Runner.kill(process, signal.SIGKILL)
            try:
                process.wait()
            except OSError:
                pass
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

    def _sleep_until_recordable(self) -> None:
        """Wait until the youngest held result may be recorded (or a stop arrives)."""
        remaining = RESULT_HOLD - (self.monotonic() - self.results[-1].ended_at)
        if remaining > 0 and not self.stop.requested:
            time.sleep(remaining)

    def _busy(self, task_id: int) -> None:
        """Tell ``on_change`` which task this slot runs (-1: none)."""
        if self.on_change is not None:
            self.on_change(self.config.slot, task_id)

    def _settle(self, final: bool = False) -> None:
        """*locked* Record the held results that are old enough; notice a revoked lease.

        With ``final`` (the worker is leaving), every held result is settled: those that
        ended within :data:`RESULT_HOLD` before a stop go back into ``toprocess`` instead.
        """
        if not self.store.holds(self.lease):
            for result in self.results:
                self._say(f"task {result.task.id} ended (exit {result.returncode}) after our "
                          "lease was taken over: result logged, not recorded")
            self._log([result for result in self.results if not result.stopped], "discarded")
            for result in self.results:
                self._events += self._event(result, "stopped" if result.stopped
                                            else Outcome.DISCARDED.value)
            self.results.clear()
            self.queue.clear()  # the farmer that took the lease over put them back
            self._say(f"lease {self.lease.name} was taken over; continuing with a new one")
            self.lease = self._register()
            return
        # Held results are in the order they ended: the recordable ones are a prefix.
        ready = len(self.results)
        if not final:
            too_young = self.monotonic() - RESULT_HOLD
            ready = 0
            while ready < len(self.results) and self.results[ready].ended_at <= too_young:
                ready += 1
        logged: list[Entry] = []
        settled, self.results = self.results[:ready], self.results[ready:]
        for result in settled:
            if result.stopped:  # back into toprocess with the queue, when the worker leaves
                self.queue.appendleft(result.task)
                self.stopped.append(result)
                self._events += self._event(result, "stopped")
                self._count(pending=1)
                continue
            if final and self.stop.requested and (
                    self.stop.at is None or self.stop.at - result.ended_at < RESULT_HOLD):
                self.queue.appendleft(result.task)  # maybe cut short by the stop: run again
                self.stopped.append(result)
                self._say(f"task {result.task.id} ended just before the stop: back to "
                          "toprocess")
                self._events += self._event(result, "put back")
                self._count(pending=1)
                continue
            outcome = self.store.record(self.lease, result.task, result.succeeded,
                                        self.config.retries)
            attempt = 0 if result.succeeded else self.store.attempt_count(result.task.id)
            self._events += self._event(result, outcome.value, attempt)
            self._count(**_OUTCOME_DELTAS[outcome])
            logged.append(self._entry(result, outcome_word(outcome, result.timed_out),
                                      attempt or self.store.attempt_count(result.task.id) + 1))
            if outcome is Outcome.RETRY:
                self._say(f"task {result.task.id} failed (attempt {attempt} of "
                          f"{self.config.retries + 1}): back in toprocess")
        self.joblog.append(logged)

    def _log(self, results: list[Result], outcome: str) -> None:
        """*locked* Job log lines for executions whose result was not recorded."""
        self.joblog.append([self._entry(result, outcome,
                                        self.store.attempt_count(result.task.id) + 1)
                            for result in results])

    def _entry(self, result: Result, outcome: str, attempt: int) -> Entry:
        code, signum = exit_and_signal(result.returncode)
        return Entry(result.task.id, attempt, self.config.node, self.config.farmer,
                     self.config.slot, result.start, result.end - result.start, code, signum,
                     outcome, result.command)

    def _event(self, result: Result, outcome: str, attempt: int = 0) -> list[Event]:
        args = {"exit": result.returncode, "host": self.config.node}
        if attempt:
            args["failed_attempts"] = attempt
        if result.timed_out:
            args["timed_out"] = True
        if result.stopped:
            args["stop"] = result.stopped
        return execution(result.task.id, result.command, result.start, result.end,
                         self.config.track, self.config.slot + 1, outcome, result.rerun, args)

    def _take(self, tasks: list[Task]) -> None:
        """*locked* Queue claimed tasks: they count as running, and tell whether they ran
        before (``timeline.started``)."""
        for task in tasks:
            if not self.timeline.state.first_start(task.id):
                self._reruns.add(task.id)
        self.queue.extend(tasks)
        self._count(pending=-len(tasks), running=len(tasks))

    def _count(self, **delta: int) -> None:
        """Note a change of the workdir's task counts (see :meth:`_flush`)."""
        for key, value in delta.items():
            self._delta[key] = self._delta.get(key, 0) + value

    def _flush(self) -> None:
        """*locked* Append this lock hold's events, with the counts if they changed.

        The counts are changed here, under the same lock hold as the state files: one
        ``pread``/``pwrite`` of ``timeline.state`` and one timeline append per hold (which, in
        the coherent mode, also ends the hold's use of the timeline files).
        """
        if any(self._delta.values()):
            counts = self.timeline.state.change(**self._delta)
            if counts is not None:
                self._events.append(counters(self.clock(), counts.done, counts.failed,
                                             counts.running, counts.pending))
        self._delta.clear()
        self.timeline.append(self._events)
        self._events = []

    # -- one task ----------------------------------------------------------------------------

    def _execute(self, task: Task) -> Result:
        """Run ``task``; a stopped result must go back into ``toprocess``."""
        command = self.handler.command(task)
        rerun = task.id in self._reruns
        self._reruns.discard(task.id)
        if self.config.verbose:
            self._say(f"start task {task.id}: {command}")
        rerun_note = (f"---- taskfarmer: task {task.id} runs again on {self.config.node} "
                      "----\n").encode()
        log_fd = self.logs.open(task.id, rerun_note)
        self._terminating = False
        self._timed_out = False
        try:
            start = self.clock()
            try:
                process = self.runner.start(task.id, command, log_fd, self.config.environ)
            except OSError as error:
                os.write(log_fd, f"taskfarmer: cannot start task: {error}\n".encode())
                os.close(log_fd)
                log_fd = -1
                self.logs.done(task.id, rerun_note)
                return self._finish(task, command, 127, start, rerun)
        finally:
            if log_fd >= 0:
                os.close(log_fd)
        self._process = process
        if self.stop.requested:
            self._terminate()
        elif self.config.task_timeout:
            signal.setitimer(signal.ITIMER_REAL, self.config.task_timeout)
        try:
            self._wait(process)
        except BaseException:  # LockError recording held results: the task must not outlive us
            Runner.kill(process, signal.SIGKILL)
            raise
        stopped = self.stop.requested
        if stopped or self._timed_out:
            # The leader (often a shell, which dies at once on SIGTERM) is gone: give the rest
            # of its group what is left of KILL_GRACE to clean up, then SIGKILL what remains.
            while (self.monotonic() < self._kill_at
                   and group_has_live_members(process.pid)):
                time.sleep(0.02)
            Runner.kill(process, signal.SIGKILL)
        signal.setitimer(signal.ITIMER_REAL, 0)
        returncode = process.wait()
        self.logs.done(task.id, rerun_note)
        self._process = None
        self.runner.cleanup(task.id)
        if not stopped and not self._timed_out and died_of_stop_signal(returncode):
            stopped = self._stop_arrives()
        if stopped:
            if self.config.verbose:
                self._say(f"stopped task {task.id}: back to toprocess")
            return self._finish(task, command, returncode, start, rerun,
                                stopped=self.stop.describe())
        return self._finish(task, command, returncode, start, rerun)

    def _wait(self, process: Process) -> None:
        """Wait until the task's leader exits, recording held results meanwhile.

        The leader is not reaped: while it is a zombie its pid (= the group id) cannot be
        reused, so killing the group afterwards cannot hit an unrelated process. Held results
        become recordable :data:`RESULT_HOLD` after they ended; waiting on a pidfd with a
        timeout lets us record them now rather than after this task, which may run for hours.
        """
        pidfd = None
        if self.results:
            try:
                pidfd = os.pidfd_open(process.pid)
            except (AttributeError, OSError):  # Python < 3.9 or Linux < 5.3: record later
                pidfd = None
        if pidfd is not None:
            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                while self.results:
                    age = self.monotonic() - self.results[-1].ended_at
                    if poller.poll(max(0.0, RESULT_HOLD - age) * 1000):
                        break  # the task ended first
                    with self.store.locked():
                        self._settle()
                        self._flush()
            finally:
                os.close(pidfd)
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)

    def _finish(self, task: Task, command: str, returncode: int, start: float, rerun: bool,
                stopped: str | None = None) -> Result:
        result = Result(task, command, returncode, start, self.clock(), self.monotonic(),
                        self._timed_out, stopped, rerun)
        if self.config.verbose and not stopped:
            how = "timed out" if result.timed_out else f"exit {returncode}"
            self._say(f"end task {task.id}: {how} ({result.end - result.start:.2f} s)")
        return result

    def _stop_arrives(self) -> bool:
        """Wait briefly for our own stop after a task died of a stop signal."""
        deadline = time.monotonic() + STOP_ECHO_WAIT
        while time.monotonic() < deadline:
            if self.stop.requested:
                return True
            time.sleep(0.01)
        return self.stop.requested

    def _say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.say(f"{stamp} {self.config.node} worker {self.config.slot}: {text}")


def outcome_word(outcome: Outcome, timed_out: bool) -> str:
    """The job log's outcome for a recorded execution (see :mod:`taskfarmer.logs.joblog`)."""
    if outcome is Outcome.FAILED and timed_out:
        return "timed out"
    return outcome.value
