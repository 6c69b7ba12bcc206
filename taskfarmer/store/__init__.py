"""The state of a farm, kept in plain files in the workdir and changed under one lock.

Files (all UTF-8 text, one record per line, every line ends with a newline):

``toprocess``
    ``ID task`` lines: the tasks to run, in order. Tasks are taken from the front by moving a
    cursor; put-back tasks (stop, expired lease, retry) are appended at the end. While farmers
    run, the lines before the cursor are taken; when the last farmer leaves, the file is
    compacted so that at rest it holds exactly the tasks left to do.
``claims``
    ``ID LEASE END`` lines, one per task taken: which lease took it and the byte offset in
    ``toprocess`` just after its line. The last line's ``END`` is the cursor. A line
    ``- compact`` marks a compaction in progress (see :meth:`Compactor.compact`).
``finished`` / ``failed``
    ``ID task`` lines, PyTaskFarmer's format: exit code 0, and anything else.
``attempts``
    ``ID N`` lines: task ID has failed N times so far (``--retries``); the last line of an ID
    counts, ``ID 0`` resets it (``--requeue-failed``).
``tasklist`` / ``imported``
    The imported part of TASKLIST and how long it is, in bytes, lines and tasks: lines
    appended later are imported as new tasks (:mod:`.listimport`).
``leases/NAME``
    One file per live worker: its identity (``key=value`` lines, see
    :mod:`taskfarmer.identity`); its mtime is the heartbeat. A task is running if its last
    claim names a lease whose file exists and it is neither finished, failed nor back in
    ``toprocess``.

Why this is crash-safe (SIGKILL at any instant): every transition is one ``write(2)`` of whole
lines to a file opened ``O_APPEND`` — which a signal cannot tear — or an atomic ``rename(2)``;
the few two-step transitions are ordered so that a crash between the steps leaves a state that
the next lock holder completes (see :meth:`Leases.revoke`, :meth:`Compactor.compact`).
A short write (disk full) is truncated away before the error is raised. Lines that a crashed
node did leave half-written (no final newline) are moved to ``torn`` by :meth:`Workdir.repair`.

Why it is O(1) per task: taking a task reads the last line of ``claims`` (the cursor) and a
chunk of ``toprocess`` at the cursor, and appends to ``claims``; recording appends one line.
No whole file is read or rewritten on the hot path; only recovering a dead lease scans files.

The package, one job per module: :mod:`.lines` (line-file primitives), :mod:`.files` (paths and
descriptors), :mod:`.ledger` (cursor, claims, put-backs), :mod:`.results` (finished, failed,
attempts), :mod:`.leases` (lease files, takeover), :mod:`.compaction`, :mod:`.workdir` (set-up,
repair), :mod:`.listimport` (the tasklist: first read, growth), :mod:`.counting` (displays)
and :mod:`.state` (:class:`StateStore`, the lock and the one entry point).
"""

from .counting import Counts, LineCounter, StateCounter
from .leases import DEAD_SUFFIX, Lease, LeaseInfo, LeaseRevoked, farmer_name
from .ledger import CLAIM_READ, COMPACT_MARK
from .lines import READ_CHUNK
from .listimport import Imported
from .results import Outcome
from .state import StateStore

__all__ = [
    "CLAIM_READ",
    "COMPACT_MARK",
    "DEAD_SUFFIX",
    "READ_CHUNK",
    "Counts",
    "Imported",
    "Lease",
    "LeaseInfo",
    "LeaseRevoked",
    "LineCounter",
    "Outcome",
    "StateCounter",
    "StateStore",
    "farmer_name",
]
