"""Runners written for PyTaskFarmer: ``run(taskid, command, logfh)`` and ``terminate()``.

Such a runner blocks in ``run`` until its task ends and is stopped by ``terminate``, called
from a signal handler; ours start a process that the worker waits for and kills. The adapter,
:class:`LegacyRunner`, forks the worker for each task: the child, a *helper*, leads a new
session (so the worker can kill everything it starts at once, as for any task), calls ``run``
of its copy of the user's runner (built once by the registry, as PyTaskFarmer built it once and
copied it to every task) with the task log as ``logfh`` and ``PROC_NUMBER`` in its environment,
and exits with the code ``run`` returned. A stop signal reaching the helper calls
``terminate``; if that raises, the helper kills its whole process group.

Forking, not starting a Python interpreter per task: a new interpreter importing taskfarmer and
the user's module cost 90 ms of CPU per task, eleven times the cost of the basic runner.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Mapping
from typing import Any, NoReturn

from ..farm.signals import STOP_SIGNALS
from ..runners.base import Runner, inherit_environment


def is_legacy(runner_class: type) -> bool:
    """True for a class written for PyTaskFarmer: it defines its own ``run``."""
    own = getattr(runner_class, "run", None)
    return callable(own) and own is not Runner.run


class ForkedTask:
    """A helper process, with what the worker uses of :class:`subprocess.Popen`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def wait(self) -> int:
        """Reap the helper; its exit code, or ``-N`` if signal N killed it (as Popen's)."""
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


class LegacyRunner(Runner):
    """Runs each task through a PyTaskFarmer-style runner in a forked helper process.

    Args:
        legacy: the user's runner, built from its INI definition.
    """

    def __init__(self, legacy: Any) -> None:
        self.legacy = legacy

    def argv(self, task_id: int, command: str) -> list[str]:
        """No argument vector: the helper is a fork of the worker, not a program."""
        raise NotImplementedError("a PyTaskFarmer-style runner runs in a forked helper")

    def check(self, environ: Mapping[str, str]) -> None:
        """A subclass of one of our runners (``ShifterRunner`` with its own ``run``) needs
        what that one needs; another class, nothing we know of."""
        if isinstance(self.legacy, Runner):
            self.legacy.check(environ)

    def start(self, task_id: int, command: str, log_fd: int,  # type: ignore[override]
              environ: Mapping[str, str]) -> ForkedTask:
        """Fork the helper that runs the task; stop signals are blocked until it has its own
        handlers (the worker's, inherited, must never run in the helper)."""
        env = self.environment(task_id, environ)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                _helper(self.legacy, task_id, command, log_fd, env)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        return ForkedTask(pid)


def _helper(runner: Any, task_id: int, command: str, log_fd: int,
            env: Mapping[str, str]) -> NoReturn:
    """The helper process: run one task through ``runner`` and exit with its code.

    ``None`` (a ``run`` that returns nothing) is a failure, as it was in PyTaskFarmer; a
    negative code (killed by signal N, in :mod:`subprocess` terms) ends the helper by signal N.
    Nothing of the worker survives into the task: descriptors other than 0, 1 and 2 are closed
    (an inherited lock descriptor would keep the state lock's open file description alive after
    the worker died), and the helper never returns into the worker's code.
    """
    code = 1
    try:
        os.setsid()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # closed with the rest below
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        # New stream objects: the worker's may hold buffered output of its own.
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        inherit_environment(env)
        if isinstance(runner, Runner):
            runner.own_session = False  # its task stays in this helper's group
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda signum, frame: _terminate(runner))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        returncode = runner.run(task_id, command, sys.stdout)
        code = _exit_code(returncode)
    except BaseException:  # the user's runner: its traceback goes to the task's log
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _terminate(runner: Any) -> None:
    """A stop signal in the helper: the user's ``terminate``, or if that raises, SIGKILL to the
    helper's whole process group (itself included), so that no task process is left behind."""
    try:
        runner.terminate()
    except Exception as error:
        reason = " ".join(str(error).split())
        print(f"taskfarmer: {type(runner).__name__}.terminate() raised "
              f"{type(error).__name__}: {reason}; killing the task's process group",
              file=sys.stderr, flush=True)
        os.killpg(0, signal.SIGKILL)


def _exit_code(returncode: int | None) -> int:
    """The helper's exit code for what ``run`` returned (a signal ends the helper itself)."""
    if returncode is None:
        return 1
    if returncode < 0:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            signal.signal(-returncode, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [-returncode])
        except (OSError, ValueError):  # SIGKILL and SIGSTOP have no handler to reset
            pass
        os.kill(os.getpid(), -returncode)
        return 128 - returncode
    return min(returncode, 255)
