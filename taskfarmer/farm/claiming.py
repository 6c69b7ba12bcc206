"""How many tasks a worker claims next: the rules of :mod:`.chunking` fed with what the
worker measured and what the workdir holds."""

from __future__ import annotations

from typing import Callable

from ..store import StateStore
from .chunking import DurationEstimate, chunk_size, wanted

#: Seconds between two counts of the workdir's lease files (for the size of a claim).
CLAIMANTS_REFRESH = 10.0
#: The most pending tasks a claim counts: past that the list is far from its end (a few reads
#: of ``toprocess`` per claim, not one per 64 KiB of want x claimants lines).
COUNT_LIMIT = 2048


class ClaimSizer:
    """The size of a worker's next claim.

    Args:
        store: the workdir's state.
        slots: the workers of our farmer, this one included (``--proc``).
        monotonic: the monotonic clock.

    Attributes:
        durations: the worker's measured task durations (:meth:`learn`).
    """

    def __init__(self, store: StateStore, slots: int, monotonic: Callable[[], float]) -> None:
        self._store = store
        self._slots = slots
        self._monotonic = monotonic
        self.durations = DurationEstimate()
        self._claimants: tuple[int, float] | None = None  # (lease files, counted when)

    def learn(self, seconds: float) -> None:
        """One more task ran for ``seconds``."""
        self.durations.add(seconds)

    def size(self) -> int:
        """*locked* How many tasks to claim now: :func:`~.chunking.wanted`, and near the end
        of the list a share of what is left (:func:`~.chunking.chunk_size`)."""
        want = wanted(self.durations)
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
