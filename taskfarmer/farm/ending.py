"""How a farm ends: stopping the workers, putting their tasks back, the report — also after
an error, when the filesystem may still be failing.

An error (a :class:`~taskfarmer.errors.FilesystemError` of the main process or of a worker,
which sends it as data, see :data:`~taskfarmer.farm.messages.ERROR_MARK`) stops the farm like
a stop signal: the workers are SIGTERMed and put their tasks back; the tasks of a worker that
cannot (it stopped on the error itself, or was killed) come back by revoking its lease. Every
step of the way may fail again (the disk is still full): each step is tried on its own
(:meth:`FirstError.attempt`), the first error is the one reported, and a lease that cannot be
revoked now stays for the next farmer to take over (its owner is provably dead by then), so
no task is lost.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from ..errors import TaskfarmerError, as_error
from ..store import StateStore
from ..timeline.events import instant
from ..timeline.file import Timeline
from .execution import KILL_GRACE
from .pool import WorkerPool
from .report import FarmReport
from .signals import StopRequest
from .takeover import Takeover

#: Seconds the workers get to put their tasks back and exit, beyond their tasks' grace.
EXIT_GRACE = KILL_GRACE + 10.0


class FirstError:
    """The first error of a farm: it stops the farm, and it is the one reported.

    Args:
        where: the workdir (an ``OSError`` names no farm file: it is reported as the
            workdir's).
    """

    def __init__(self, where: Path) -> None:
        self._where = where
        self.message: str | None = None

    def fail(self, error: TaskfarmerError | OSError) -> None:
        """Stop the farm on ``error`` (unless an error came first)."""
        self.note(str(as_error(error, self._where)))

    def note(self, message: str) -> None:
        """Stop the farm on the error told by ``message`` (unless an error came first)."""
        if self.message is None:
            self.message = message

    def attempt(self, step: Callable[[], object]) -> bool:
        """Run one step of the ending; a failure is noted (:meth:`fail`), not raised."""
        try:
            step()
        except (TaskfarmerError, OSError) as error:
            self.fail(error)
            return False
        return True


def stop_workers(pool: WorkerPool, takeover: Takeover, track: int, errors: FirstError) -> None:
    """Stop every worker; put back the tasks of those that could not (their leases)."""
    for gone in pool.stop(EXIT_GRACE):
        errors.attempt(partial(takeover.revoke_worker, gone.slot, gone.pid, track))


def close_state(store: StateStore, timeline: Timeline, farmer: str, errors: FirstError,
                catch_orphans: Callable[[], int]) -> None:
    """Hand our leases over after a lock failure; tidy the workdir, then close the timeline.

    ``catch_orphans`` (*locked*) puts back, before the compaction, the tasks claimed but
    recorded nowhere, and tells (:class:`~taskfarmer.farm.orphans.OrphanNet`).
    """
    if store.lock_failed:  # no state written; see taskfarmer.store.exclusion
        errors.attempt(partial(store.abandon, farmer))
    if errors.attempt(partial(_tidy, store, catch_orphans)):
        errors.attempt(timeline.close)


def _tidy(store: StateStore, catch_orphans: Callable[[], int]) -> None:
    with store.locked():
        catch_orphans()
        store.tidy()


def work_left(store: StateStore, errors: FirstError, tasklist: Path) -> bool:
    """Whether tasks wait or run anywhere, or lines of ``tasklist`` wait to be imported (True
    after an error: the files cannot tell)."""
    left = True
    if errors.message is None:
        def look() -> None:
            nonlocal left
            with store.locked():
                left = store.pending() or store.any_leases()
        errors.attempt(look)
    return left or store.unimported_bytes(tasklist) > 0


def mark_end(store: StateStore, timeline: Timeline, track: int, stop: StopRequest,
             report: FarmReport, *, clock: Callable[[], float],
             monotonic: Callable[[], float]) -> None:
    """Mark the stop (when it arrived) and our end on our timeline ``track``, and close the
    timeline.

    Args:
        store: the state files (for the lock).
        timeline: our timeline.
        track: our track (0: the start failed before it was chosen; nothing is marked).
        stop: our stop request.
        report: how the farm ended.
        clock: the wall clock (seconds since the epoch).
        monotonic: the monotonic clock ``stop`` keeps its time by.
    """
    if not track:
        return
    now = clock()
    events = []
    if stop.requested and stop.at is not None:
        at = now - (monotonic() - stop.at)
        events.append(instant(f"stop: {stop.describe()}", at, track,
                              {"stop": stop.describe()}))
    events.append(instant("farmer end", now, track,
                          {"exit_code": report.exit_code, "reason": report.outcome}))
    with store.locked():
        timeline.append(events)
    timeline.close()


def close_quietly(store: StateStore, timeline: Timeline) -> None:
    """Close the timeline and the store; an error is already on its way, or was noted."""
    for close in (timeline.close, store.close):
        try:
            close()
        except (TaskfarmerError, OSError):
            pass
