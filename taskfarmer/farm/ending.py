"""How a farm ends: stopping the workers, putting their tasks back, the report — also after
an error, when the filesystem may still be failing.

An error (a :class:`~taskfarmer.errors.FilesystemError` of the main process or of a worker,
which sends it as data, see :data:`ERROR_MARK`) stops the farm like a stop signal: the workers
are SIGTERMed and put their tasks back; the tasks of a worker that cannot (it stopped on the
error itself, or was killed) come back by revoking its lease. Every step of the way may fail
again (the disk is still full): each step is tried on its own, the first error is the one
reported, and a lease that cannot be revoked now stays for the next farmer to take over
(its owner is provably dead by then), so no task is lost.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import TaskfarmerError, as_error
from ..store import DEAD_SUFFIX, Counts
from ..timeline.events import instant
from .display import Snapshot
from .execution import KILL_GRACE

if TYPE_CHECKING:  # pragma: no cover
    from .farmer import Farm, FarmReport

#: A worker's message line that starts with this carries the error it stopped on.
ERROR_MARK = "\x01error\x01"


class FarmEnding:
    """The :class:`~taskfarmer.farm.farmer.Farm` methods that end a farm (a mixin)."""

    def fail(self: Farm, error: TaskfarmerError | OSError) -> None:
        """Stop the farm on ``error`` (the first error is the one reported)."""
        if self.error is None:
            self.error = str(as_error(error, self.config.workdir))

    def attempt(self: Farm, step: Callable[[], None]) -> bool:
        """Run one step of the ending; a failure is noted (:meth:`fail`), not raised."""
        try:
            step()
        except (TaskfarmerError, OSError) as error:
            self.fail(error)
            return False
        return True

    def worker_says(self: Farm, line: str) -> bool:
        """Take a worker's error from its message ``line``; False if it is not one."""
        if not line.startswith(ERROR_MARK):
            return False
        if self.error is None:
            self.error = line[len(ERROR_MARK):]
        return True

    def _shutdown(self: Farm) -> None:
        self._forward_stop()
        end = time.monotonic() + KILL_GRACE + 10.0
        for process in self.workers.values():
            process.join(max(0.0, end - time.monotonic()))
        for slot, process in list(self.workers.items()):
            if process.is_alive():
                process.kill()
                process.join()
            if process.exitcode != 0:  # a worker that exited 0 released its lease itself
                self.attempt(lambda s=slot, p=process: self._revoke_worker(s, p))
        self.workers.clear()
        self._busy[:] = [-1] * self.config.proc
        self._drain_messages()
        if self.store.lock_failed:  # no state written; see taskfarmer.store.exclusion
            self.attempt(lambda: self.store.abandon(self.farmer + "."))
        if self.attempt(self._tidy):
            self.attempt(self.timeline.close)

    def _tidy(self: Farm) -> None:
        with self.store.locked():
            self.store.tidy()

    def _report(self: Farm) -> FarmReport:
        from .farmer import FarmReport

        work_left = True
        if self.error is None:
            def look() -> None:
                nonlocal work_left
                with self.store.locked():
                    work_left = self.store.pending() or self.store.any_leases()
            self.attempt(look)
        try:
            snapshot = self._snapshot()
        except (TaskfarmerError, OSError):
            snapshot = Snapshot(Counts(0, 0, 0), 0)
        report = FarmReport(snapshot.counts, self.stop.describe() if self.stop.requested
                            else self.draining, work_left, self.error)
        if self.error is None and not self.attempt(lambda: self._timeline_end(report)):
            report = FarmReport(snapshot.counts, report.stopped_by, work_left, self.error)
        self.display.finish(snapshot, report.outcome)
        self.display.say(self._where())
        self.close_quietly()
        return report

    def close_quietly(self: Farm) -> None:
        """Close the timeline and the store; an error is already on its way, or was noted."""
        for close in (self.timeline.close, self.store.close):
            try:
                close()
            except (TaskfarmerError, OSError):
                pass

    def _timeline_end(self: Farm, report: FarmReport) -> None:
        """Mark the stop signal (when it arrived) and our end on our timeline track."""
        if not self.track:  # the start failed before our track was chosen
            return
        now = self.clock()
        events = []
        if self.stop.requested and self.stop.at is not None:
            at = now - (time.monotonic() - self.stop.at)  # StopRequest's clock is monotonic
            events.append(instant(f"stop: {self.stop.describe()}", at, self.track,
                                  {"stop": self.stop.describe()}))
        events.append(instant("farmer end", now, self.track,
                              {"exit_code": report.exit_code, "reason": report.outcome}))
        with self.store.locked():
            self.timeline.append(events)
        self.timeline.close()

    def _revoke_worker(self: Farm, slot: int, process: multiprocessing.Process) -> None:
        """Put back the tasks of one of our workers that is gone (after a lock failure:
        handed over in :meth:`_shutdown` instead)."""
        if self.store.lock_failed:
            return
        prefix = f"{self.farmer}.w{slot}.{process.pid}."
        with self.store.locked():
            for name in self.store.lease_names():
                if name.startswith(prefix):
                    self._revoke(name.removesuffix(DEAD_SUFFIX),
                                 {"node": self.identity.node, "worker": slot + 1})

    def _forward_stop(self: Farm) -> None:
        """SIGTERM every live worker (``is_alive`` reaps exited ones: their pids may be reused)."""
        if os.getpid() != self._main_pid:
            return  # a worker just forked, before it installed its own handlers: not ours
        for process in self.workers.values():
            if process.pid is not None and process.is_alive():
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass


def worker_error(error: TaskfarmerError | OSError, where: Path) -> str:
    """The message line a worker sends when it stops on ``error``."""
    return ERROR_MARK + str(as_error(error, where))
