"""The runner interface: how a worker starts one task and how it stops it.

A runner turns a task into an argument vector (:meth:`Runner.argv`, a pure function of the
runner's settings, the task ID and the command) and an environment, and starts it with its
output in the task's log, in a new session so that the whole tree it starts shares one process
group. To write your own, subclass :class:`Runner`, override :meth:`Runner.argv` (and
:meth:`Runner.cleanup` if stopping the process is not enough, as for containers, and
:meth:`Runner.check` if it needs something of the node), and name the class in a runner
definition (INI ``Runner = module.Class``); the other INI keys are passed to its constructor as
keyword arguments (strings).

:meth:`Runner.run` and :meth:`Runner.terminate` are PyTaskFarmer's blocking interface, kept
so that PyTaskFarmer-style subclasses that override ``run`` and call ``super().run(...)`` keep
working (the registry runs those through :mod:`taskfarmer.compat.runner`).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from typing import IO, ClassVar, Protocol

from ..hpc.resources import SlotResources


class _Inherited:
    """``os.environ`` as :func:`inherit_environment` last left it, in the process that set it."""

    pid = -1
    values: ClassVar[dict[str, str]] = {}


_null: dict[int, int] = {}  # pid -> descriptor of /dev/null opened by that process


def inherit_environment(env: Mapping[str, str]) -> None:
    """Make ``os.environ`` (what children inherit) equal to ``env``, touching only changes."""
    if _Inherited.pid != os.getpid():
        _Inherited.pid = os.getpid()
        _Inherited.values = dict(os.environ)
    applied = _Inherited.values
    for key, value in env.items() - applied.items():  # set operations on dict views: in C
        os.environ[key] = value
        applied[key] = value
    for key in applied.keys() - env.keys():
        os.environ.pop(key, None)
        del applied[key]


def _devnull() -> int:
    """This process's descriptor of /dev/null, for tasks' stdin (opened once, not per task)."""
    pid = os.getpid()
    if pid not in _null:
        _null[pid] = os.open(os.devnull, os.O_RDONLY)
    return _null[pid]


class Process(Protocol):
    """A started task as the worker sees it: :class:`subprocess.Popen`, or the forked helper
    of :class:`~taskfarmer.compat.runner.LegacyRunner`."""

    pid: int
    returncode: int | None  # set once reaped (by :meth:`wait`, or by whoever reaped it)

    def wait(self) -> int:
        """Reap the task's leader; its exit code, ``-N`` if signal N killed it."""
        ...


class Runner:
    """Base class of runners.

    Attributes:
        own_session: :meth:`start` puts the task in a new session (its own process group,
            which the worker kills as a whole); False when PyTaskFarmer's :meth:`run` is
            called inside the legacy adapter's helper, which leads the session already.
        executes: False for a runner that starts no process: the worker records each task
            as succeeded at once (:class:`~.null.NullRunner`, for benchmarks).
        execute: the process :meth:`run` is running (PyTaskFarmer's name, which its
            runners' ``terminate`` methods use), else None.
    """

    own_session = True
    #: False for a runner that starts no process (:class:`~.null.NullRunner`, benchmarks).
    executes: ClassVar[bool] = True
    execute: subprocess.Popen | None = None
    #: The worker slot's devices and CPUs (:meth:`assign`); slot 0 with none until then.
    resources: SlotResources = SlotResources(0)

    def assign(self, resources: SlotResources) -> None:
        """Called once in each worker process: the slot whose tasks this copy runs. The
        environment already carries the slot's variables; runners whose tasks do not see it
        (containers) or need options for devices and CPUs read :attr:`resources` in
        :meth:`argv`."""
        self.resources = resources

    def argv(self, task_id: int, command: str) -> list[str]:
        """The argument vector that runs ``command`` (pure: no side effects)."""
        raise NotImplementedError

    def check(self, environ: Mapping[str, str]) -> None:
        """Called once as the farmer starts, before any task (``environ``: the tasks'
        environment): raise :class:`~taskfarmer.errors.ConfigError` if no task can run on this
        node (a program missing, a daemon not answering), so that the farmer stops with one
        line, its tasks pending, instead of failing every task. The default checks nothing."""

    def environment(self, task_id: int, environ: Mapping[str, str]) -> dict[str, str]:
        """The task's environment: ours plus ``PROC_NUMBER`` = the task ID."""
        env = dict(environ)
        env["PROC_NUMBER"] = str(task_id)
        return env

    def start(self, task_id: int, command: str, log_fd: int,
              environ: Mapping[str, str]) -> subprocess.Popen:
        """Start the task with stdout and stderr in ``log_fd``, as leader of a new session.

        The child inherits this process's environment, made equal to :meth:`environment`
        first: a worker runs one task at a time, and changing the few variables that differ
        (``PROC_NUMBER``) is far cheaper than handing ``Popen`` a whole environment to encode
        for every task (it halves the farmer's CPU time per short task).
        """
        inherit_environment(self.environment(task_id, environ))
        return subprocess.Popen(
            self.argv(task_id, command),
            stdin=_devnull(),
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=self.own_session,
        )

    @staticmethod
    def kill(process: Process, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the task's whole process group (it is the group's leader)."""
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def cleanup(self, task_id: int) -> None:
        """Called after every task ends or is stopped; release what outlives the process."""

    # -- PyTaskFarmer's interface --------------------------------------------------------------

    def run(self, taskid: int, command: str, logfh: IO[str]) -> int:
        """Run the task to its end with its output in ``logfh``; return its exit code.

        The environment is this process's. :meth:`terminate` (from a signal handler) stops it.
        """
        logfh.flush()
        self.execute = self.start(taskid, command, logfh.fileno(), os.environ)
        try:
            return self.execute.wait()
        finally:
            self.cleanup(taskid)

    def terminate(self) -> None:
        """Kill the task :meth:`run` is running, if any (its group, if it leads one)."""
        if self.execute is None or self.execute.returncode is not None:
            return
        if self.own_session:
            self.kill(self.execute)
        else:
            self.execute.kill()
