"""One execution of a task in a worker: start it, ``--task-timeout``, kill escalation, wait.

A stop (:meth:`Execution.terminate`, a callback of the worker's
:class:`~taskfarmer.farm.signals.StopRequest`) or the task timeout SIGTERMs the task's process
group, and SIGALRM SIGKILLs it :data:`KILL_GRACE` later; the task counts as ended once no
process of its group runs (it may run again at once, elsewhere). While the task runs, the
worker's held results are recorded as they come of age (see :mod:`.recording`). As it starts,
its process group is named in the worker's lease (``started``): should the worker die,
whoever takes the lease over on this machine kills it (:mod:`taskfarmer.hpc.groups`).
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Mapping
from typing import Callable, Protocol

from ..hpc.groups import TaskGroup, boot_ticks, group_has_live_members, kill_group
from ..logs.tasklogs import TaskLogs
from ..runners.base import Process, Runner
from ..tasks import Task
from .memory import PUT_BACK, Judgement, MemoryBoard
from .recording import Result
from .signals import StopRequest, died_of_stop_signal

#: Seconds between SIGTERM and SIGKILL when a task is stopped or times out.
KILL_GRACE = 2.0
#: A task that died of a stop signal is requeued, not failed, if our own stop arrives this soon
#: (SLURM signals every process of a step; the task may see it before we do); a worker's stop
#: is the farm's if the farm's arrives this soon.
STOP_ECHO_WAIT = 1.0
#: Seconds between two looks at a stopped task's process group, and for our own stop.
_GROUP_POLL = 0.02
_STOP_POLL = 0.01


def outcome(returncode: int, timed_out: bool, stopped: bool) -> str:
    """How an execution ended, as its log says: ``exit N``, ``signal N``, ``timed out`` or
    ``stopped``."""
    if stopped:
        return "stopped"
    if timed_out:
        return "timed out"
    return f"signal {-returncode}" if returncode < 0 else f"exit {returncode}"


def reap(process: Process) -> tuple[int, int]:
    """Reap the task's leader: (its exit code as ``Popen`` gives it, its peak memory in bytes:
    ``ru_maxrss``, the largest resident set of the leader and of the children it waited
    for)."""
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except ChildProcessError:  # reaped already
        return process.wait(), 0
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss * 1024


def group_exists(pgid: int) -> bool:
    """Whether process group ``pgid`` still has a member, its leader reaped (one syscall, per
    task: a background process of the task may still write to its log)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member runs as another user: it exists
        return True
    return True


class TaskOptions(Protocol):
    """What an execution needs of a worker's configuration
    (:class:`~taskfarmer.farm.worker.WorkerConfig`)."""

    @property
    def slot(self) -> int:
        """The worker slot."""

    @property
    def node(self) -> str:
        """The node's name."""

    @property
    def verbose(self) -> bool:
        """``--verbose``: a line per task start and end."""

    @property
    def task_timeout(self) -> float | None:
        """``--task-timeout``."""

    @property
    def environ(self) -> Mapping[str, str]:
        """The tasks' environment."""


class Execution:
    """Runs a worker's tasks, one at a time.

    Args:
        options: the worker's node, ``--verbose``, ``--task-timeout`` and environment.
        runner: how a task becomes a process.
        logs: the task logs.
        stop: the worker's stop request.
        clock: the wall clock (seconds since the epoch).
        monotonic: the monotonic clock.
        sleep: sleeps that many seconds.
        say: tells the farmer a line.
        chores_due: when the worker has chores to do while a task runs (monotonic time; None:
            none): held results to record, claimed tasks to hand back.
        do_chores: does the chores that are due (takes the lock).
        on_start: told the task's process group once it started.
        farm_stopping: whether the farm stops (a stop that reached only this worker, as when a
            task signals its own worker, kills the task, which then ends as it ended).
        memory: what the farm's processes share about memory (None: nothing is learned or
            watched).
    """

    def __init__(self, options: TaskOptions, runner: Runner, logs: TaskLogs, stop: StopRequest,
                 *, clock: Callable[[], float], monotonic: Callable[[], float],
                 sleep: Callable[[float], None], say: Callable[[str], None],
                 chores_due: Callable[[], float | None], do_chores: Callable[[], None],
                 on_start: Callable[[TaskGroup], None],
                 farm_stopping: Callable[[], bool], memory: MemoryBoard | None = None) -> None:
        self._options = options
        self._runner = runner
        self._logs = logs
        self._stop = stop
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._say = say
        self._chores_due = chores_due
        self._do_chores = do_chores
        self._on_start = on_start
        self._farm_stopping = farm_stopping
        self._memory = memory
        self._process: Process | None = None
        self._terminating = False
        self._kill_at = 0.0
        self._timed_out = False
        self._lease = ""  # the lease the running task was claimed under

    # -- signals -----------------------------------------------------------------------------

    def terminate(self) -> None:
        """SIGTERM the running task's group now, SIGKILL it after :data:`KILL_GRACE`."""
        process = self._process
        if process is None or self._terminating:
            return
        self._terminating = True
        self._kill_at = self._monotonic() + KILL_GRACE
        Runner.kill(process, signal.SIGTERM)
        signal.setitimer(signal.ITIMER_REAL, KILL_GRACE)

    def on_alarm(self, signum: int, frame: object) -> None:
        """The SIGALRM handler: the task timed out, or its grace after SIGTERM is over."""
        process = self._process
        if process is None:
            return
        if self._terminating:
            Runner.kill(process, signal.SIGKILL)
        else:
            self._timed_out = True
            self.terminate()

    def kill(self) -> None:
        """After an error: SIGKILL the running task's group and reap its leader."""
        process = self._process
        if process is not None:
            Runner.kill(process, signal.SIGKILL)
            try:
                process.wait()
            except OSError:
                pass

    # -- one task ----------------------------------------------------------------------------

    def run(self, task: Task, command: str, rerun: bool, lease: str) -> Result:
        """Run ``task``, claimed under ``lease``, as ``command``; a stopped result must go back
        into ``toprocess``."""
        self._lease = lease
        if self._options.verbose:
            self._say(f"start task {task.id}: {command}")
        if not self._runner.executes:  # zero-execution (benchmarks): the farm's own cost
            return self._finish(task, command, 0, self._clock(), rerun)
        node = self._options.node
        self._terminating = False
        self._timed_out = False
        start = self._clock()
        log_fd = self._logs.open(task.id, node, start)
        before = self._memory.starting(self._options.slot) if self._memory is not None else None
        try:
            first = boot_ticks()  # the leader starts after this: see TaskGroup
            process = self._runner.start(task.id, command, log_fd, self._options.environ)
        except OSError as error:
            self._exited()
            try:
                os.write(log_fd, f"taskfarmer: cannot start task: {error}\n".encode())
            finally:
                os.close(log_fd)
            self._logs.done(task.id, node, "cannot start", lingering=False)
            return self._finish(task, command, 127, start, rerun)
        except BaseException:
            self._exited()
            os.close(log_fd)
            raise
        try:
            os.close(log_fd)  # our copy: the task has its own
            self._on_start(TaskGroup(task.id, process.pid, first, boot_ticks(), start))
        except BaseException:  # the lease cannot name it: the task must not outlive us
            Runner.kill(process, signal.SIGKILL)
            self._exited()
            raise
        returncode, stopped, evicted, peak = self._supervise(process)
        lingering = group_exists(process.pid)
        self._process = None
        self._runner.cleanup(task.id)
        if stopped and not self._soon(self._farm_stopping):
            stopped = False  # not the farm's stop: the task's outcome stands, we go on
            self._stop.cancel()
            self._say(f"a stop signal reached this worker, not its farmer (did task {task.id} "
                      "signal its own worker?): the task was stopped, and counts as it ended")
        elif not stopped and not self._timed_out and died_of_stop_signal(returncode):
            stopped = self._soon(lambda: self._stop.requested)
        judged = self._judge(task, returncode, before, evicted, peak, stopped)
        how = outcome(returncode, self._timed_out, stopped)
        self._logs.done(task.id, node, how if judged is None else f"{how} ({judged.word})",
                        lingering)
        if stopped:
            if self._options.verbose:
                self._say(f"stopped task {task.id}: back to toprocess")
            return self._finish(task, command, returncode, start, rerun,
                                stopped=self._stop.describe(), peak=peak)
        return self._finish(task, command, returncode, start, rerun, peak=peak, memory=judged)

    def _judge(self, task: Task, returncode: int, before: int | None, evicted: bool,
               peak: int, stopped: bool) -> Judgement | None:
        """What memory had to do with the task's end, said in a line (None: nothing)."""
        if self._memory is None or stopped or self._timed_out:
            return None
        judged = self._memory.judge(self._options.slot, returncode, before, evicted, peak)
        if judged is not None:
            self._say(judged.describe(task.id))
        return judged

    def _supervise(self, process: Process) -> tuple[int, bool, bool, int]:
        """Wait for the started ``process`` under the stop and the task timeout; (its exit
        code, whether a stop cut it short, whether memory ran short and we killed it, its peak
        memory in bytes)."""
        self._process = process
        if self._memory is not None:
            self._memory.running(self._options.slot, process.pid)
        if self._stop.requested:
            self.terminate()
        elif self._options.task_timeout:
            signal.setitimer(signal.ITIMER_REAL, self._options.task_timeout)
        try:
            self._wait(process)
        except BaseException:  # LockError recording held results: the task must not outlive us
            Runner.kill(process, signal.SIGKILL)
            self._exited()
            raise
        stopped = self._stop.requested
        if stopped or self._timed_out:
            # The leader (often a shell, which dies at once on SIGTERM) is gone: give the rest
            # of its group what is left of KILL_GRACE to clean up, then SIGKILL what remains.
            while (self._monotonic() < self._kill_at
                   and group_has_live_members(process.pid)):
                self._sleep(_GROUP_POLL)
            kill_group(process.pid, monotonic=self._monotonic, sleep=self._sleep)
        signal.setitimer(signal.ITIMER_REAL, 0)
        evicted = self._exited()
        returncode, peak = reap(process)
        return returncode, stopped, evicted, peak

    def _exited(self) -> bool:
        """Tell the memory board the task's leader exited, before it is reaped (a reaped pid
        may be reused, and the board must not evict that); whether we evicted it."""
        return self._memory is not None and self._memory.exited(self._options.slot)

    def _wait(self, process: Process) -> None:
        """Wait until the task's leader exits, doing the worker's chores meanwhile.

        The leader is not reaped: while it is a zombie its pid (= the group id) cannot be
        reused, so killing the group afterwards cannot hit an unrelated process. Held results
        are due to be recorded a moment after they ended, and the claimed tasks queued behind
        a long task to be handed back (``chores_due``); waiting on a pidfd with a timeout lets
        us do that then rather than after this task, which may run for hours.
        """
        pidfd = None
        if self._chores_due() is not None:
            try:
                pidfd = os.pidfd_open(process.pid)
            except (AttributeError, OSError):  # Python < 3.9 or Linux < 5.3: record later
                pidfd = None
        if pidfd is not None:
            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                while (due := self._chores_due()) is not None:
                    if poller.poll(max(0.0, due - self._monotonic()) * 1000):
                        break  # the task ended first
                    self._do_chores()
            finally:
                os.close(pidfd)
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)

    def _finish(self, task: Task, command: str, returncode: int, start: float, rerun: bool,
                stopped: str | None = None, peak: int = 0, memory: Judgement | None = None
                ) -> Result:
        word = memory.word if memory is not None else None
        if word in PUT_BACK:
            stopped = word
        result = Result(task, command, returncode, start, self._clock(), self._monotonic(),
                        self._timed_out, stopped, rerun, self._lease, peak, word)
        if self._options.verbose and not stopped:
            how = "timed out" if result.timed_out else f"exit {returncode}"
            self._say(f"end task {task.id}: {how} ({result.end - result.start:.2f} s)")
        return result

    def _soon(self, condition: Callable[[], bool]) -> bool:
        """Wait up to :data:`STOP_ECHO_WAIT` for ``condition``: our own stop after a task died
        of a stop signal, the farm's after ours (SLURM signals every process at once)."""
        deadline = self._monotonic() + STOP_ECHO_WAIT
        while self._monotonic() < deadline:
            if condition():
                return True
            self._sleep(_STOP_POLL)
        return condition()
