"""A worker: one process of a farmer's pool, running one task at a time.

Each worker has its own lease (``WORKDIR/leases/NAME``; see :mod:`taskfarmer.store`) and loops:
under the lock, record the result of the task it just ran and take the next one; then run it.
One lock hold per task. On a stop signal it kills the task's process group, puts the task and
any it had taken back into ``toprocess``, and drops its lease.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, List, Mapping, Optional

from .identity import Identity
from .runners.base import Runner
from .signals import StopRequest, died_of_stop_signal
from .store import Lease, LeaseRevoked, Outcome, StateStore
from .tasks import Task, TaskList
from .timeline import Timeline, complete_event

#: Seconds between SIGTERM and SIGKILL when a task is stopped or times out.
KILL_GRACE = 2.0
#: A task that died of a stop signal is requeued, not failed, if our own stop arrives this soon
#: (SLURM signals every process of a step; the task may see it before we do).
STOP_ECHO_WAIT = 1.0


@dataclass
class WorkerConfig:
    """What a worker needs to know besides the store, runner and handler."""

    slot: int
    farmer: str
    track: int
    node: str
    verbose: bool = False
    task_timeout: Optional[float] = None
    retries: int = 0
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


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
    timed_out: bool = False

    @property
    def succeeded(self) -> bool:
        """Exit code 0."""
        return self.returncode == 0


class Worker:
    """Runs tasks until the list is empty or a stop is requested."""

    def __init__(
        self,
        config: WorkerConfig,
        parts: Parts,
        stop: StopRequest,
        clock: Callable[[], float] = time.time,
        say: Callable[[str], None] = print,
        on_change: Optional[Callable[[int, int, Optional[bool]], None]] = None,
    ) -> None:
        self.config = config
        self.store = parts.store
        self.timeline = parts.timeline
        self.runner = parts.runner
        self.handler = parts.handler
        self.stop = stop
        self.clock = clock
        self.say = say
        self.on_change = on_change
        self.queue: Deque[Task] = deque()
        self._process: Optional[subprocess.Popen] = None
        self._terminating = False
        self._timed_out = False
        self._generation = 0
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
                                        "farmer": self.config.farmer})
        return self.store.register(name, owner)

    def run(self) -> int:
        """Work until no task is left or a stop is requested. Returns the process exit code."""
        with self.store.locked():
            lease = self._register()
        results: List[Result] = []
        try:
            while True:
                with self.store.locked():
                    lease = self._settle(lease, results)
                    if self.stop.requested:
                        break
                    if not self.queue:
                        try:
                            self.queue.extend(self.store.claim(lease, 1))
                        except LeaseRevoked:
                            lease = self._register()
                            self.queue.extend(self.store.claim(lease, 1))
                if not self.queue:
                    break
                task = self.queue.popleft()
                result = self._execute(task)
                if result is None:
                    self.queue.appendleft(task)
                    break
                results.append(result)
        finally:
            with self.store.locked():
                lease = self._settle(lease, results)
                if self.store.holds(lease):
                    self.store.requeue(self.queue)
                    self.store.release(lease)
                self.queue.clear()
            self.store.close()
            self.timeline.close()
        return 0

    def _settle(self, lease: Lease, results: List[Result]) -> Lease:
        """*locked* Record finished executions; notice a revoked lease."""
        if not self.store.holds(lease):
            for result in results:
                self._say(f"task {result.task.id} ended (exit {result.returncode}) after our "
                          "lease was taken over: result logged, not recorded")
            results.clear()
            self.queue.clear()  # the farmer that took the lease over put them back
            self._say(f"lease {lease.name} was taken over; continuing with a new one")
            return self._register()
        events = []
        for result in results:
            outcome = self.store.record(lease, result.task, result.succeeded,
                                        self.config.retries)
            attempt = 0 if result.succeeded else self.store.attempt_count(result.task.id)
            events.append(self._event(result, outcome, attempt))
            if outcome is Outcome.RETRY:
                self._say(f"task {result.task.id} failed (attempt {attempt} of "
                          f"{self.config.retries + 1}): back in toprocess")
            if self.on_change is not None:
                self.on_change(self.config.slot, -1, result.succeeded)
        if events:
            self.timeline.append(events)
        results.clear()
        return lease

    def _event(self, result: Result, outcome: Outcome, attempt: int) -> dict:
        args = {"id": result.task.id, "exit": result.returncode, "host": self.config.node,
                "outcome": outcome.value}
        if attempt:
            args["failed_attempts"] = attempt
        if result.timed_out:
            args["timed_out"] = True
        return complete_event(result.command, result.start, result.end, self.config.track,
                              self.config.slot, args)

    # -- one task ----------------------------------------------------------------------------

    def _execute(self, task: Task) -> Optional[Result]:
        """Run ``task``; None if it was stopped (it must go back into ``toprocess``)."""
        command = self.handler.command(task)
        if self.on_change is not None:
            self.on_change(self.config.slot, task.id, None)
        if self.config.verbose:
            self._say(f"start task {task.id}: {command}")
        log_fd = os.open(self.store.logs / f"log_{task.id}",
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._terminating = False
        self._timed_out = False
        try:
            if os.fstat(log_fd).st_size:
                os.write(log_fd, f"---- taskfarmer: task {task.id} runs again on "
                                 f"{self.config.node} ----\n".encode())
            start = self.clock()
            try:
                process = self.runner.start(task.id, command, log_fd, self.config.environ)
            except OSError as error:
                os.write(log_fd, f"taskfarmer: cannot start task: {error}\n".encode())
                return self._finish(task, command, 127, start)
        finally:
            os.close(log_fd)
        self._process = process
        if self.stop.requested:
            self._terminate()
        elif self.config.task_timeout:
            signal.setitimer(signal.ITIMER_REAL, self.config.task_timeout)
        # Wait without reaping: while the leader is a zombie its pid (= the group id) cannot be
        # reused, so killing the group below cannot hit an unrelated process.
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        signal.setitimer(signal.ITIMER_REAL, 0)
        stopped = self.stop.requested
        if stopped or self._timed_out:
            Runner.kill(process, signal.SIGKILL)
        returncode = process.wait()
        self._process = None
        self.runner.cleanup(task.id)
        if not stopped and not self._timed_out and died_of_stop_signal(returncode):
            stopped = self._stop_arrives()
        if stopped:
            if self.config.verbose:
                self._say(f"stopped task {task.id}: back to toprocess")
            return None
        return self._finish(task, command, returncode, start)

    def _finish(self, task: Task, command: str, returncode: int, start: float) -> Result:
        result = Result(task, command, returncode, start, self.clock(), self._timed_out)
        if self.config.verbose:
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
