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
``holder``
    One line: which process holds the lock now or held it last, and through which lock file
    (:mod:`.exclusion`: a lock that does not exclude is noticed).
``tasklist`` / ``imported``
    The imported part of TASKLIST and how long it is, in bytes, lines and tasks: lines
    appended later are imported as new tasks (:mod:`.listimport`).
``leases/NAME``
    One file per live worker: its identity (``key=value`` lines, see
    :mod:`taskfarmer.hpc.identity`); its mtime is the heartbeat. A task is running if its last
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

Coherence: workdirs shared between nodes (NFS and other network filesystems). The lock makes
one farmer at a time change the state, but on NFS a lock is a cache-coherence point only for
the locked file itself (revalidated on lock, flushed on unlock), and the lock file is another
file. Each NFS client keeps its own page and attribute caches: a descriptor kept open from one
lock hold to the next reads, sizes and appends from what this node saw last time, and its
cached pages (stale zeros included) can be written back over another node's appends. One
``write(2)`` to an ``O_APPEND`` file is atomic on a local filesystem, not between NFS clients.
So on a shared filesystem the store follows NFS's documented model, close-to-open consistency,
in every lock hold (:class:`~.files.StateFiles`, coherent mode):

* open after taking the lock: the open revalidates the file's attributes with the server and
  drops cached pages if the file changed, so reads, ``fstat`` sizes and ``O_APPEND`` positions
  are the server's; the workdir and ``leases`` directories are opened too, which revalidates
  them and so every cached name in them (``toprocess`` replaced, a lease renamed away);
  existence checks open the file instead of trusting a cached ``stat``;
* close before releasing it: ``close(2)`` writes the dirty pages to the server and commits
  them, and reports a failed write-back (raised, not ignored);
* keep no descriptor across lock holds, so nothing cached can be written back later;
* no ``fsync`` beyond that: close already makes the data durable on the server; files that are
  renamed into place (``toprocess``) are still fsynced first.

Alternatives not taken: ``noac``/``sync`` mounts are the user's choice, not ours, and still
lose appends (NFS has no atomic append between clients); locking each state file itself
(POSIX locks are revalidation points for the locked file) costs a lock round trip per file per
hold and still needs the files opened under it. Per hold the discipline costs an open
(GETATTR/OPEN) and a close (WRITE+COMMIT if written) per file touched, which is what the
other nodes need in any case. On a local filesystem it would only cost time, so
:mod:`.filesystem` detects the filesystem (``statfs``) and keeps descriptors open there (the
fast mode); ``TASKFARMER_IO=coherent`` forces the coherent mode.

The package, one job per module: :mod:`.lines` (line-file primitives), :mod:`.files` (paths and
descriptors, fast or coherent), :mod:`.filesystem` (which of the two), :mod:`.ledger` (cursor,
claims, put-backs), :mod:`.results` (finished, failed, attempts), :mod:`.leases` (lease files,
takeover), :mod:`.compaction`, :mod:`.workdir` (set-up, repair), :mod:`.listimport` (the
tasklist: first read, growth), :mod:`.counting` (displays)
and :mod:`.state` (:class:`StateStore`, the lock and the one entry point).
"""

from .counting import Counts, LineCounter, StateCounter
from .filesystem import coherent_io
from .leases import DEAD_SUFFIX, Lease, LeaseInfo, LeaseRevoked, farmer_name
from .ledger import CLAIM_READ, COMPACT_MARK
from .lines import READ_CHUNK
from .lines import append as append_lines
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
    "append_lines",
    "coherent_io",
    "farmer_name",
]
