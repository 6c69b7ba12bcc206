"""Is this node a black hole? A pure decision over a worker's failures in a row and what the
job log shows of the workdir.

A node with a broken environment (a missing module, a full or unwritable ``$TMPDIR``, a bad
mount, a container runtime that is down) fails every task in milliseconds, and at fork speed
would record the whole list as failed. On one node, a broken node and broken tasks look the
same; they differ elsewhere: tasks that are at fault fail on every node. So a worker holds back
(does not record) its *suspect* failures while it goes on: fast ones (:func:`fast`: exit code
126 or 127, the shell's "cannot execute" and "command not found", or a run time under
1/:data:`FAST_RATIO` of the median successful run), of tasks never run before (a task handed
back by a quarantine, or put back for any reason, counts as itself when it fails again: so no
task is handed back twice, and no quarantine spreads from node to node with the tasks). A
success, a failure that is not a suspect or a task that runs longer than a fast failure would
(:func:`hold_limit`) breaks the row: it is recorded as it would have been. Once ``k`` are
held (``--quarantine K``), :func:`judge` decides:

1. this node recorded a success since the first of them started: the node works, some tasks
   do not — record them;
2. one of them is no longer fast by the current median: record them;
3. another node recorded a success since shortly before they started (:func:`recent_window`),
   and k failures in a row are unlikely there (:func:`by_chance` at most :data:`CHANCE`, by
   the share of failures among the other nodes' latest executions): **quarantine** (the node
   fails what runs elsewhere);
4. this node succeeded before, and k failures in a row were unlikely by its own record:
   **quarantine** (it broke);
5. another node recorded a failure meanwhile: the tasks fail there too — record them;
6. other nodes are running tasks whose results are not in yet: **wait** (claim nothing, keep
   holding) for at most :data:`WAIT_LIMIT` seconds, then record them.

The chance rule keeps a workload whose tasks fail now and then everywhere (bad inputs) from
quarantining a node that just met a few in a row: with k = 5, it takes under 6% failures
elsewhere.

No evidence that the node is wrong (a farmer alone, whose tasks all fail), no quarantine: the
failures are recorded as they always were.
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ..logs.joblog import Entry

#: ``--quarantine``'s default: this many suspect failures in a row decide.
DEFAULT_ROW = 5
#: Exit codes of a shell that could not run the command: 126 cannot execute, 127 not found.
FAST_EXITS = frozenset({126, 127})
#: A failure is fast when it ran less than the median successful run divided by this.
FAST_RATIO = 10.0
#: A success elsewhere is recent if it ended at most this long (or twice the median successful
#: run, if longer) before the first held failure started.
RECENT_MIN = 60.0
#: The longest a worker waits for other nodes' first results before recording its failures.
WAIT_LIMIT = 120.0
#: Fewer than k held failures are recorded once the worker has run something else for this
#: long (or a tenth of the median successful run, if longer): the task running then is no fast
#: failure, and the row is broken (:func:`hold_limit`).
ROW_HOLD = 5.0
#: The successful run times the median is taken over (the latest), and the executions per side
#: (this node, the others) the failure shares are taken over.
KEEP_RUNTIMES = 256
#: Quarantine only if k failures in a row are at most this likely by the failure share seen.
CHANCE = 1e-6
#: Job log outcomes of failed executions.
FAILURES = ("failed", "timed out", "retry")


@dataclass(frozen=True)
class Attempt:
    """One failed execution of this node."""

    id: int
    exit: int  # the job log's: 128 + the signal if one killed the task
    signal: int
    start: float  # epoch seconds
    runtime: float


@dataclass(frozen=True)
class Evidence:
    """What the job log shows, from the point of view of one node."""

    own_success: float | None = None  # when this node's latest success ended (epoch s)
    other_success: float | None = None  # when another node's latest success ended
    other_node: str = ""  # which node that was
    other_failure: float | None = None  # when another node's latest failure ended
    runtimes: tuple[float, ...] = ()  # of the latest successes, any node's, oldest first
    own: tuple[bool, ...] = ()  # this node's latest executions: succeeded or failed
    others: tuple[bool, ...] = ()  # the other nodes' latest executions
    others_active: bool = False  # other nodes hold leases (are running tasks)

    def learn(self, entries: Iterable[Entry], node: str) -> Evidence:
        """This evidence updated with job log ``entries`` (oldest first) for ``node``."""
        own, other, other_node = self.own_success, self.other_success, self.other_node
        failure = self.other_failure
        runtimes = list(self.runtimes)
        outcomes = {True: list(self.own), False: list(self.others)}  # keyed by: this node's
        for entry in entries:
            succeeded = entry.outcome == "finished"
            if not succeeded and entry.outcome not in FAILURES:
                continue  # stopped, discarded, quarantined: not a result
            outcomes[entry.node == node].append(succeeded)
            if succeeded:
                runtimes.append(entry.runtime)
                if entry.node == node:
                    own = max(own or entry.end, entry.end)
                elif other is None or entry.end >= other:
                    other, other_node = entry.end, entry.node
            elif entry.node != node:
                failure = max(failure or entry.end, entry.end)
        return replace(self, own_success=own, other_success=other, other_node=other_node,
                       other_failure=failure, runtimes=tuple(runtimes[-KEEP_RUNTIMES:]),
                       own=tuple(outcomes[True][-KEEP_RUNTIMES:]),
                       others=tuple(outcomes[False][-KEEP_RUNTIMES:]))

    @property
    def reference(self) -> float | None:
        """The median successful run time (seconds); None before any success."""
        return statistics.median(self.runtimes) if self.runtimes else None


class Decision(enum.Enum):
    """What a worker does with its held failures."""

    HOLD = "hold"  # fewer than k: keep holding, keep running tasks
    RECORD = "record"  # record them as failures (or retries), as without quarantine
    WAIT = "wait"  # keep holding, start nothing: other nodes' results are not in yet
    QUARANTINE = "quarantine"  # hand them back uncounted, quarantine the node


@dataclass(frozen=True)
class Verdict:
    """A decision and, for a quarantine, why (one line's worth)."""

    decision: Decision
    reason: str = ""


def fast(attempt: Attempt, reference: float | None) -> bool:
    """Whether ``attempt`` failed fast: exit code 126 or 127, or a run time under
    ``reference`` (the median successful run) / :data:`FAST_RATIO`."""
    if attempt.signal == 0 and attempt.exit in FAST_EXITS:
        return True
    return reference is not None and attempt.runtime * FAST_RATIO < reference


def by_chance(outcomes: Sequence[bool], k: int) -> float:
    """How likely ``k`` failures in a row are at the share of failures (False) in
    ``outcomes`` (1 without any)."""
    if not outcomes:
        return 1.0
    return float((outcomes.count(False) / len(outcomes)) ** k)


def hold_limit(reference: float | None) -> float:
    """How long after its last failure a row of fewer than k is held while the worker runs
    other tasks: :data:`ROW_HOLD`, or the longest a fast failure takes if longer."""
    return max(ROW_HOLD, reference / FAST_RATIO) if reference is not None else ROW_HOLD


def recent_window(reference: float | None) -> float:
    """How long before a row of failures began a success elsewhere still counts as recent:
    :data:`RECENT_MIN`, or two median successful runs if longer (long tasks succeed rarely)."""
    return max(RECENT_MIN, 2 * reference) if reference is not None else RECENT_MIN


def judge(row: Sequence[Attempt], evidence: Evidence, k: int, waited: float = 0.0,
          final: bool = False) -> Verdict:
    """What to do with a worker's held suspect failures (see the module docstring).

    Args:
        row: the held failures, in the order they ended.
        evidence: what the job log (and the lease files) show now.
        k: how many in a row decide (``--quarantine K``).
        waited: seconds this row has already waited (:attr:`Decision.WAIT`).
        final: the worker is leaving: no holding or waiting, record unless quarantined.
    """
    if len(row) < k:
        return Verdict(Decision.RECORD if final else Decision.HOLD)
    began = row[0].start
    reference = evidence.reference
    if evidence.own_success is not None and evidence.own_success >= began:
        return Verdict(Decision.RECORD)
    if not all(fast(attempt, reference) for attempt in row):
        return Verdict(Decision.RECORD)
    window = recent_window(reference)
    failed = describe_row(row, reference)
    succeeded = evidence.other_success is not None and evidence.other_success >= began - window
    if succeeded and by_chance(evidence.others, k) <= CHANCE:
        share = f"{evidence.others.count(False)} of the other nodes' last {len(evidence.others)}"
        return Verdict(Decision.QUARANTINE, f"{failed} while tasks succeeded on node "
                                            f"{evidence.other_node} ({share} failed)")
    if evidence.own_success is not None and by_chance(evidence.own, k) <= CHANCE:
        share = f"{evidence.own.count(False)} of its last {len(evidence.own)}"
        return Verdict(Decision.QUARANTINE,
                       f"{failed} after tasks succeeded on this node ({share} failed)")
    if evidence.other_failure is not None and evidence.other_failure >= began - window:
        return Verdict(Decision.RECORD)
    if evidence.others_active and waited < WAIT_LIMIT and not final:
        return Verdict(Decision.WAIT)
    return Verdict(Decision.RECORD)


def describe_row(row: Sequence[Attempt], reference: float | None) -> str:
    """``5 tasks in a row failed fast (exit 127, in 0.002-0.004 s; successful runs take
    0.31 s)``."""
    codes = sorted({f"signal {a.signal}" if a.signal else f"exit {a.exit}" for a in row})
    low = min(a.runtime for a in row)
    high = max(a.runtime for a in row)
    took = f"{low:.3f} s" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f}-{high:.3f} s"
    median = f"; successful runs take {reference:.3g} s" if reference is not None else ""
    return f"{len(row)} tasks in a row failed fast ({', '.join(codes)}, in {took}{median})"
