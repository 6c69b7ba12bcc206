"""The farmer's worker processes: forked, reaped, told to stop, joined or killed.

Workers are forked (the ``fork`` start method) so that each inherits the farm's parts, the
shared start gate (:mod:`.gate`) and the message pipe (:mod:`.messages`).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.context import ForkProcess
from pathlib import Path
from typing import Callable

from ..errors import TaskfarmerError
from .messages import MessagePipe, worker_error
from .signals import StopRequest, die_with_parent
from .worker import Worker

#: Worker exit code for a state or configuration error (not worth restarting the worker).
WORKER_ERROR = 2
#: Give up after this many unexpected worker deaths.
MAX_WORKER_CRASHES = 20


@dataclass(frozen=True)
class Exit:
    """A worker process that exited with a non-zero ``code`` (None: it did not exit), and the
    task it was running then (None: none)."""

    slot: int
    pid: int | None
    code: int | None
    task: int | None = None


class WorkerPool:
    """One worker process per busy slot, and which task each slot runs.

    Args:
        proc: the number of worker slots.
        make_worker: in a forked worker process, builds the :class:`Worker` of a slot.
        pipe: the message pipe the workers write to.
        stop: the main process's stop request (a stop may arrive before a worker has its
            own handlers).
        parent: the main process's pid (a worker dies with it).
        where: the workdir, for a worker's error line.
        monotonic: the monotonic clock.
    """

    def __init__(self, proc: int, make_worker: Callable[[int], Worker], pipe: MessagePipe,
                 stop: StopRequest, parent: int, where: Path,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._proc = proc
        self._make_worker = make_worker
        self._pipe = pipe
        self._stop = stop
        self._parent = parent
        self._where = where
        self._monotonic = monotonic
        self._main_pid = os.getpid()
        self.context = multiprocessing.get_context("fork")
        self.workers: dict[int, ForkProcess] = {}
        self._busy = self.context.RawArray("i", [-1] * proc)
        self._forking = self.context.Lock()  # held while a batch of workers is forked
        self._stopping = self.context.RawValue("b", 0)  # set once the farm stops

    def __len__(self) -> int:
        """How many worker processes are running (or not yet reaped)."""
        return len(self.workers)

    def sentinels(self) -> list[int]:
        """What becomes ready when a worker exits (for ``multiprocessing.connection.wait``)."""
        return [process.sentinel for process in self.workers.values()]

    def free(self) -> list[int]:
        """The slots without a worker."""
        return [slot for slot in range(self._proc) if slot not in self.workers]

    def start(self, slots: list[int]) -> None:
        """Fork the workers of ``slots``; none of them starts working before all are forked.

        A worker forked while others already run competes with them for the CPU, and the main
        process with all of them: at ``--proc 64`` on two cores the main process forked a
        worker every 3 ms, when a fork takes 0.7 ms alone. So each new worker first waits
        for :attr:`_forking`, which the main process holds while it forks (a worker dies
        with the main process even while it waits: it set that up before).
        """
        with self._forking:
            for slot in slots:
                process = self.context.Process(target=self.worker_main, args=(slot,),
                                               name=f"taskfarmer worker {slot}", daemon=False)
                process.start()
                self.workers[slot] = process

    def worker_main(self, slot: int) -> None:
        """Body of a worker process (runs after fork)."""
        die_with_parent(self._parent)
        with self._forking:
            pass
        # Everything inherited from the main process is long-lived: keep the cyclic garbage
        # collector from walking it again and again (it showed in profiles of short tasks).
        gc.freeze()
        self._pipe.close_reader()
        try:  # start-up errors too: one line, no traceback from multiprocessing
            worker = self._make_worker(slot)
            worker.install_signal_handlers()
            if self._stop.requested:  # it arrived before our handlers: the farmer's ran, here
                worker.stop.handle(self._stop.signum or signal.SIGTERM)
            code = worker.run()
        except (TaskfarmerError, OSError) as error:
            self._pipe.send(worker_error(error, self._where))
            code = WORKER_ERROR
        sys.exit(code)

    def mark(self, slot: int, task_id: int) -> None:
        """In a worker: slot ``slot`` runs ``task_id`` now (-1: none)."""
        self._busy[slot] = task_id

    def running(self) -> int:
        """How many slots run a task now."""
        return sum(1 for task_id in self._busy if task_id >= 0)

    def reap(self) -> list[Exit]:
        """Join the workers that exited; those that exited with a non-zero code."""
        failed = []
        for slot, process in list(self.workers.items()):
            if process.is_alive():
                continue
            process.join()
            del self.workers[slot]
            if process.exitcode != 0:
                failed.append(self._exit(slot, process))
            self._busy[slot] = -1
        return failed

    def _exit(self, slot: int, process: ForkProcess) -> Exit:
        """How the worker of ``slot`` ended, with the task it ran (before its slot is freed)."""
        task = self._busy[slot]
        return Exit(slot, process.pid, process.exitcode, task if task >= 0 else None)

    def stopping(self) -> bool:
        """In a worker: whether the farm stops (:meth:`forward_stop` ran, or the main process
        is gone), not only this worker."""
        return bool(self._stopping.value) or os.getppid() != self._parent

    def forward_stop(self) -> None:
        """SIGTERM every live worker (``is_alive`` reaps exited ones: their pids may be reused)."""
        if os.getpid() != self._main_pid:
            return  # a worker just forked, before it installed its own handlers: not ours
        self._stopping.value = 1
        for process in self.workers.values():
            if process.pid is not None and process.is_alive():
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def stop(self, grace: float) -> list[Exit]:
        """Stop every worker: SIGTERM, ``grace`` seconds to exit, then SIGKILL. The workers
        that did not exit cleanly (a worker that exited 0 released its lease itself)."""
        self.forward_stop()
        end = self._monotonic() + grace
        for process in self.workers.values():
            process.join(max(0.0, end - self._monotonic()))
        failed = []
        for slot, process in self.workers.items():
            if process.is_alive():
                process.kill()
                process.join()
            if process.exitcode != 0:
                failed.append(self._exit(slot, process))
        self.workers.clear()
        self._busy[:] = [-1] * self._proc
        return failed
