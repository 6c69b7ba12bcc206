"""How many tasks a worker claims next: the rules of :mod:`.chunking` fed with what the
farmer's workers measured and what the workdir holds."""

from __future__ import annotations

from multiprocessing.context import BaseContext
from typing import Callable

from ..store import StateStore
from .chunking import DurationEstimate, chunk_size, wanted

#: Seconds between two counts of the workdir's lease files (for the size of a claim).
CLAIMANTS_REFRESH = 10.0
#: The most pending tasks a claim counts: past that the list is far from its end (a few reads
#: of ``toprocess`` per claim, not one per 64 KiB of want x claimants lines).
COUNT_LIMIT = 2048


class FarmDurations:
    """The task durations every worker of one farmer measured: a :class:`DurationEstimate`
    in memory the workers share (made before they fork).

    So a worker's chunks grow with what its whole farmer has measured, not only itself: with
    64 slots, each worker alone would claim 1, 1, 2, 4 ... tasks, nine lock holds before its
    chunks are whole, and on a workdir shared by many nodes every hold may be a hand-over of
    the lock between them. Two workers learning at the same moment may lose one of the two
    durations (no lock: it is an estimate, and a lock would cost every task).

    Args:
        context: the multiprocessing context the workers are forked with.
    """

    def __init__(self, context: BaseContext) -> None:
        self._values = context.RawArray("d", 2)  # count, mean (0 and 0: nothing measured)

    def estimate(self) -> DurationEstimate:
        """What the farmer's workers measured so far."""
        count, mean = self._values[0], self._values[1]
        return DurationEstimate(mean if count else None, int(count))

    def add(self, seconds: float) -> None:
        """One more task of the farmer ran for ``seconds``."""
        estimate = self.estimate()
        estimate.add(seconds)
        self._values[1] = estimate.mean or 0.0  # the mean first: count > 0 means it is there
        self._values[0] = estimate.count


class ClaimSizer:
    """The size of a worker's next claim.

    Args:
        store: the workdir's state.
        slots: the workers of our farmer, this one included (``--proc``).
        monotonic: the monotonic clock.
        farm: what every worker of our farmer measured (None: this worker's alone).

    Attributes:
        durations: the worker's measured task durations (:meth:`learn`).
    """

    def __init__(self, store: StateStore, slots: int, monotonic: Callable[[], float],
                 farm: FarmDurations | None = None) -> None:
        self._store = store
        self._slots = slots
        self._monotonic = monotonic
        self._farm = farm
        self.durations = DurationEstimate()
        self._claimants: tuple[int, float] | None = None  # (lease files, counted when)

    def learn(self, seconds: float) -> None:
        """One more task ran for ``seconds``."""
        self.durations.add(seconds)
        if self._farm is not None:
            self._farm.add(seconds)

    def evidence(self) -> DurationEstimate:
        """The durations a claim is sized from: the farmer's, once its workers measured more
        tasks than this one did."""
        if self._farm is not None:
            farm = self._farm.estimate()
            if farm.count > self.durations.count:
                return farm
        return self.durations

    def size(self) -> int:
        """*locked* How many tasks to claim now: :func:`~.chunking.wanted`, and near the end
        of the list a share of what is left (:func:`~.chunking.chunk_size`)."""
        want = wanted(self.evidence())
        if want <= 1:
            return want
        claimants = self._count_claimants()
        limit = want * claimants
        pending = self._store.pending_count(min(limit, COUNT_LIMIT))
        if limit > COUNT_LIMIT and pending >= COUNT_LIMIT:
            # Far from the end of the list: a whole chunk is at most a second of work, so the
            # end of the list shared a little later costs a slot at most that second.
            return want
        return chunk_size(want, pending, claimants)

    def _count_claimants(self) -> int:
        """*locked* The workers of the workdir (its lease files), counted at most every
        :data:`CLAIMANTS_REFRESH` seconds (a directory listing: on a workdir shared by many
        nodes, not something to do per claim), and at least our farmer's: at start-up its
        other workers may not have registered yet, and a count that low would let the first
        worker claim the end of the list alone."""
        now = self._monotonic()
        if self._claimants is None or now - self._claimants[1] >= CLAIMANTS_REFRESH:
            self._claimants = (len(self._store.lease_names()), now)
        return max(self._slots, self._claimants[0])
