"""``--halt``: stop the whole farm, every farmer of the workdir, once too many tasks failed.

The rule (:class:`HaltPolicy`, parsed by :func:`parse_halt`, a pure function) is GNU
parallel's: ``now,fail=N`` or ``soon,fail=N`` (halt at the N-th failure), ``fail=P%`` (once at
least :data:`MIN_RATE_TASKS` tasks ended, when P % of them failed); ``now`` stops the running
tasks and puts them back into ``toprocess``, ``soon`` (the default) lets them finish; either
way no task starts any more and the tasks not run stay pending. Failures are tasks recorded in
``failed`` (after their ``--retries``) by any farmer of the workdir since this farmer started.

How the halt spreads (:class:`Halt`): the worker whose lock hold records the failure that
reaches the rule writes ``WORKDIR/halted`` in the same hold (:mod:`taskfarmer.store.halt`);
every worker reads it before it claims, so nothing is claimed after it; every farmer's main
process looks for it about twice a second and then stops its workers (``now``) or lets them
drain (``soon``), and exits with code 5. A farmer does not start on a halted workdir.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

from ..errors import HaltedError, UsageError
from ..store import NOW, SOON, HaltRecord, LineCounter, StateStore, read_halt, write_halt
from .recording import Result

#: A rate says little of fewer ended tasks: ``fail=P%`` waits for this many.
MIN_RATE_TASKS = 10
#: Seconds between two looks of a farmer's main process for the halt record.
LOOK_EVERY = 0.5

_FORMS = "never, or fail=N or fail=P%, optionally after 'now,' or 'soon,' (e.g. now,fail=1)"


@dataclass(frozen=True)
class HaltPolicy:
    """When to halt the farm (``--halt``) and how.

    Attributes:
        when: :data:`~taskfarmer.store.halt.NOW` or :data:`~taskfarmer.store.halt.SOON`.
        count: halt at this many failures (or None).
        percent: halt when this percentage of the ended tasks failed (or None).
    """

    when: str
    count: int | None = None
    percent: float | None = None

    def reached(self, failed: int, ended: int) -> bool:
        """Whether ``failed`` failures among ``ended`` ended tasks reach the rule."""
        if self.count is not None:
            return failed >= self.count
        assert self.percent is not None
        return ended >= MIN_RATE_TASKS and failed * 100 >= self.percent * ended

    def describe(self) -> str:
        """The rule as ``--halt`` takes it: ``now,fail=3``, ``soon,fail=10%``."""
        amount = f"{self.count}" if self.count is not None else f"{self.percent:g}%"
        return f"{self.when},fail={amount}"


def parse_halt(text: str) -> HaltPolicy | None:
    """The rule of ``--halt TEXT``; None for ``never``.

    Raises:
        UsageError: not one of the forms (the message, one line, says which are).
    """
    value = text.strip().lower()
    if value == "never":
        return None
    when, _, why = value.rpartition(",")
    when = when or SOON
    if when not in (NOW, SOON):
        raise UsageError(text, f"'{when}' is neither now nor soon; expected {_FORMS}")
    key, equals, amount = why.partition("=")
    if key != "fail" or not equals:
        raise UsageError(text, f"only failures halt a farm: expected {_FORMS}")
    if amount.endswith("%"):
        try:
            percent = float(amount[:-1])
        except ValueError:
            percent = math.nan
        if not (math.isfinite(percent) and 0 < percent <= 100):
            raise UsageError(text, "the percentage of failed tasks must be above 0 and at "
                                   "most 100")
        return HaltPolicy(when, percent=percent)
    if not amount.isdigit() or int(amount) < 1:
        raise UsageError(text, "the number of failures must be a whole number, at least 1")
    return HaltPolicy(when, count=int(amount))


class Halt:
    """A farmer's part in halting its workdir's farm; made in the main process, copied into
    each worker when it forks.

    Args:
        store: the workdir's state.
        policy: this farmer's ``--halt`` (None: it only obeys the others').
        farmer: this farmer's name (in the record).
        clock: the wall clock (seconds since the epoch).
        monotonic: the monotonic clock (the main process's looks).
    """

    def __init__(self, store: StateStore, policy: HaltPolicy | None, farmer: str,
                 clock: Callable[[], float], monotonic: Callable[[], float]) -> None:
        self.store = store
        self.policy = policy
        self.farmer = farmer
        self.clock = clock
        self.monotonic = monotonic
        #: The record once this process has seen or written it: the farm is halted.
        self.record: HaltRecord | None = None
        self._failed = LineCounter(store.failed)
        self._finished = LineCounter(store.finished)
        self._base = (0, 0)  # failed and finished lines when this farmer started
        self._next_look = 0.0

    def refuse_halted(self) -> None:
        """*locked* In the main process, first thing as the farmer starts.

        Raises:
            HaltedError: the workdir is halted.
        """
        found = read_halt(self.store.files, locked=True)
        if found is not None:
            raise HaltedError(self.store.files.halted, found.describe())

    def count_from_here(self) -> None:
        """*locked* In the main process, once the farmer's start changed what it changes
        (``--requeue-failed``): failures count from now on."""
        if self.policy is not None:
            self._base = self._counts()

    def judge(self, recorded: Sequence[Result]) -> None:
        """*locked* In a worker, after it recorded ``recorded``: halt the farm if the rule is
        reached (writes the record; :attr:`record` is then set)."""
        policy = self.policy
        if policy is None or self.record is not None or not recorded:
            return
        if policy.count is not None and all(result.succeeded for result in recorded):
            return  # only a failure can reach a count
        failed, finished = (now - base for now, base in zip(self._counts(), self._base))
        ended = max(0, failed) + max(0, finished)
        if policy.reached(max(0, failed), ended):
            last = [result.task.id for result in recorded if not result.succeeded]
            self.record = write_halt(self.store.files, HaltRecord(
                policy.when, policy.describe(), failed, ended, self.farmer, self.clock(),
                last[-1] if last else -1))

    def holds_back(self, held: Sequence[Result]) -> bool:
        """In a worker holding the results ``held``: whether to start and claim nothing now.
        With a rule, a held failure may halt the farm: nothing starts until it is recorded
        and judged, at most :data:`~.recording.RESULT_HOLD` later, so that the farm halts at
        the failure that reaches the rule, not a chunk of tasks after it."""
        return self.policy is not None and any(not result.succeeded for result in held)

    def before_claim(self) -> bool:
        """*locked* In a worker before it claims: whether the farm is halted (a look at the
        workdir's record until it is)."""
        if self.record is None:
            self.record = read_halt(self.store.files, locked=True)
        return self.record is not None

    def look(self) -> HaltRecord | None:
        """In the main process, at most every :data:`LOOK_EVERY` seconds (no lock): the
        workdir's record the first time it is seen, else None."""
        now = self.monotonic()
        if self.record is not None or now < self._next_look:
            return None
        self._next_look = now + LOOK_EVERY
        return self.look_now()

    def look_now(self) -> HaltRecord | None:
        """In the main process (no lock): the workdir's record, looked at now."""
        self.record = self.record or read_halt(self.store.files, locked=False)
        return self.record

    def _counts(self) -> tuple[int, int]:
        """*locked* Lines in ``failed`` and (for a rate) ``finished`` now (only the bytes
        appended since the last count are read)."""
        files = self.store.files
        failed = self._failed.update(size=files.size(files.failed))
        if self.policy is None or self.policy.percent is None:
            return failed, 0
        return failed, self._finished.update(size=files.size(files.finished))
