"""Signals that stop a farm: SIGUSR1 (SLURM's warning before the time limit), SIGINT, SIGTERM,
and SIGHUP (the terminal closed, an ssh connection dropped): each puts the running tasks back.

Handlers only set a flag and call plain functions (kill a process group, forward a signal):
they never raise, so a signal arriving in the middle of a state update cannot tear it; the
farm and its workers look at the flag between steps.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from types import CodeType, FrameType
from typing import Callable

#: SIGHUP's default action would kill the farmer at once and leave its tasks running, unrecorded
#: (they run in process groups of their own, which a hang-up does not reach).
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


#: The signals the farmer and its workers handle (SIGALRM: a worker's task timeouts).
HANDLED_SIGNALS = (*STOP_SIGNALS, signal.SIGALRM)


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread in which the handled signals are blocked (a thread inherits the
    mask it is started with).

    The kernel gives a signal sent to the process to any thread that does not block it. One
    taken by a helper thread does not interrupt the main thread's blocking wait, and loses its
    order: SIGUSR1 taken by the heartbeat thread, whose handler Python runs only once the main
    thread checks, after a SIGTERM sent a millisecond later and taken by the main thread itself
    (the farm then reported "stopped by SIGTERM", in 8 of 40 runs of
    tests/e2e/test_late_stop_signal.py).
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    try:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread


def died_of_stop_signal(returncode: int) -> bool:
    """True if a task ended by a stop signal, itself or through its shell (128 + n)."""
    return any(returncode in (-sig, 128 + sig) for sig in STOP_SIGNALS)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGTERM this worker when the farmer's main process dies (even of
    SIGKILL): the worker stops as on any stop signal, killing its task's process group and
    putting its tasks back, so that a farmer started again at once does not find them running
    unrecorded. (SIGKILL would leave the task running: it leads a session of its own.) Set
    once per worker, not per task: a ``preexec_fn`` setting it on each task's leader would cost
    a ``fork`` instead of a ``vfork`` per task, and would kill only the leader."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:
        os._exit(1)


def ignore_stop_signals() -> None:
    """Ignore the stop signals from now on: for a farmer process whose farm has ended.

    Python puts back the default action (terminate) of every signal it handled when the
    interpreter shuts down. A stop signal arriving then, which is common inside SLURM (it
    signals every process of a job, and a batch script may pass the same signal on), would
    kill the exiting farmer and replace its exit code by 128 + the signal number.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _interrupted_signal(frame: FrameType | None, handler: CodeType) -> int | None:
    """The signal of the outermost call of ``handler`` among ``frame`` and its callers."""
    first = None
    while frame is not None:
        if frame.f_code is handler:
            first = frame.f_locals.get("signum", first)
        frame = frame.f_back
    return first


class StopRequest:
    """Remembers the first stop signal and runs callbacks when one arrives."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.signum: int | None = None
        self.reason: str | None = None
        self.at: float | None = None  # when the first stop was requested (``clock``)
        self._clock = clock
        self._callbacks: list[Callable[[], None]] = []

    @property
    def requested(self) -> bool:
        """True once a stop was asked for."""
        return self.signum is not None or self.reason is not None

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the signal handler) whenever a stop is requested."""
        self._callbacks.append(callback)

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        """The signal handler: record the signal and run the callbacks.

        Python runs a handler between two bytecodes of whatever the main thread executes,
        a handler's own first bytecode included: a SIGTERM that arrives as the SIGUSR1
        handler starts runs *inside* it, before it has recorded anything. The first signal
        is then the outermost :meth:`handle` among the frames this one interrupted.
        """
        if self.signum is None:
            self.signum = _interrupted_signal(frame, self.handle.__code__) or signum
        self._stopping()

    def request(self, reason: str) -> None:
        """Ask for a stop without a signal (``--timeout``)."""
        if self.reason is None:
            self.reason = reason
        self._stopping()

    def _stopping(self) -> None:
        if self.at is None:
            self.at = self._clock()
        for callback in self._callbacks:
            callback()

    def cancel(self) -> None:
        """Forget the stop (a worker's that was not its farm's)."""
        self.signum = self.reason = self.at = None

    def describe(self) -> str:
        """``SIGUSR1``, ``timeout`` ... for log lines."""
        if self.signum is not None:
            return signal.Signals(self.signum).name
        return self.reason or "none"

    def install(self) -> None:
        """Install :meth:`handle` for every stop signal in this process.

        A SIGHUP ignored from the start (``nohup farmer ...``) stays ignored: the user asked
        for the farm to outlive the terminal.
        """
        for sig in STOP_SIGNALS:
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            signal.signal(sig, self.handle)
