"""The heartbeat: a daemon thread of the farmer's main process that renews its workers' leases.

Renewing is lock-free (one ``utime`` per lease, :meth:`StateStore.renew`), but the main loop
spends much of its time waiting for the workdir lock, which on a contended NFSv4 or Lustre
mount can take seconds. Beating from that loop would silence a live farmer for as long, and
invite takeovers of its live workers (safe, since a taken-over worker records nothing, but
its work is lost). The thread beats on its own schedule, whatever the main loop waits for.

In the coherent mode each round also leaves the farmer's counts of its opens of workdir files in
the workdir, for ``--status`` (:meth:`taskfarmer.store.opencount.OpenCount.save`). It never
renews a lease once the farmer's lock failed to exclude (the farmer hands its leases over
then, :meth:`StateStore.abandon`), nor after :meth:`Heartbeat.stop` returned. A lease our
farmer released or took over is gone from ``leases`` (renamed away first), and a ``utime`` of
a missing name fails: it cannot bring it back.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from ..errors import TaskfarmerError
from ..store import StateStore, owns
from .signals import start_thread


class Heartbeat:
    """Renews the leases of one farmer's workers every ``period`` seconds, in a thread.

    Args:
        store: the state files (only its lock-free calls are used).
        farmer: our farmer's name (the first part of our workers' lease names).
        period: seconds between renewals (:func:`taskfarmer.store.heartbeat_period`).
        monotonic: the clock the schedule keeps.
        sleep: waits up to its argument (seconds) and returns True if the heartbeat was
            stopped meanwhile; by default the stop event's ``wait``.
    """

    def __init__(self, store: StateStore, farmer: str, period: float,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], bool] | None = None) -> None:
        self._store = store
        self._farmer = farmer
        self._period = period
        self._monotonic = monotonic
        self._stopped = threading.Event()
        self._sleep = sleep or self._stopped.wait
        self._beating = threading.Lock()  # held for one round of renewals
        self._thread: threading.Thread | None = None
        #: The first error of a renewal (the thread beats no more); the main loop raises it.
        self.error: TaskfarmerError | None = None
        #: Rounds of renewals done so far.
        self.rounds = 0

    def start(self) -> None:
        """Start beating (the first round at once)."""
        self._thread = start_thread(self._run, "heartbeat")

    def stop(self) -> None:
        """Stop beating; once this returns, no lease is renewed any more."""
        with self._beating:
            self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def check(self) -> None:
        """In the main loop: raise the error that stopped the renewals, if one did.

        Raises:
            TaskfarmerError: a renewal failed (a filesystem error: the farm stops on it).
        """
        if self.error is not None:
            raise self.error

    def beat(self) -> bool:
        """One round: renew each live lease of ours. False (nothing renewed) once stopped,
        after a lock failure or after an error."""
        with self._beating:
            if self._stopped.is_set() or self.error is not None or self._store.lock_failed:
                return False
            try:
                for name in self._store.lease_names():
                    if owns(self._farmer, name, live=True):
                        self._store.renew(name)
            except TaskfarmerError as error:
                self.error = error
                return False
            try:
                self._store.opens.save(self._farmer)  # for --status; lock-free too
            except OSError:
                pass  # only a figure, written again at the next round and at the end
            self.rounds += 1
            return True

    def _run(self) -> None:
        """The thread: a round every ``period`` seconds of the monotonic clock."""
        due = self._monotonic()
        while True:
            if self._monotonic() >= due:
                if not self.beat():
                    return
                due = self._monotonic() + self._period
            if self._sleep(max(0.0, due - self._monotonic())):
                return
