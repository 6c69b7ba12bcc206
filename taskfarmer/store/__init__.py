"""The state of a farm, kept in plain files in the workdir and changed under one lock.

The only code that knows the state files' bytes. Every transition is one ``write(2)`` of whole
lines to an ``O_APPEND`` file or an atomic ``rename(2)``, so a farmer killed at any instant
leaves a state the next lock holder can use; taking and recording a task is O(1); on a
filesystem shared between nodes every lock hold follows close-to-open consistency. The file
formats and the reasoning: ``docs/design.md``, "The store".

Modules, one job each:

* :mod:`.state` -- :class:`StateStore`: the lock and the one entry point;
* :mod:`.files` -- :class:`~.files.StateFiles`: every workdir path, descriptors (fast or
  coherent); :mod:`.filesystem` -- which of the two;
* :mod:`.lines` -- line-file primitives; :mod:`.ledger` -- cursor, claims, put-backs;
  :mod:`.results` -- finished, failed, attempts; :mod:`.leases` -- lease files and names,
  takeover; :mod:`.compaction`; :mod:`.orphans` -- the safety net at rest; :mod:`.workdir`
  -- set-up, repair; :mod:`.adopt` -- PyTaskFarmer's workdirs; :mod:`.listimport` -- the
  tasklist: first read, growth;
* :mod:`.locking` -- the lock kinds; :mod:`.exclusion` -- noticing a lock that does not exclude;
* :mod:`.counting` -- counts for displays; :mod:`.snapshot` -- consistent reads for ``--status``.
"""

from .adopt import Adoption
from .counting import Counts, LineCounter, StateCounter
from .files import StateFiles
from .filesystem import coherent_io
from .leases import (
    DEAD_SUFFIX,
    DEFAULT_LEASE,
    MIN_LEASE,
    Lease,
    LeaseInfo,
    LeaseName,
    LeaseRevoked,
    farmer_name,
    farmer_pid,
    heartbeat_period,
    live_name,
    owns,
    worker_name,
)
from .ledger import CLAIM_READ, COMPACT_MARK
from .lines import READ_CHUNK
from .lines import append as append_lines
from .listimport import Imported
from .locking import LOCK_KINDS, WorkdirLock, lock_path, make_lock, shared_flock
from .results import Outcome
from .snapshot import Snapshot, unimported_lines
from .state import Revocation, StateStore

__all__ = [
    "CLAIM_READ",
    "COMPACT_MARK",
    "DEAD_SUFFIX",
    "DEFAULT_LEASE",
    "LOCK_KINDS",
    "MIN_LEASE",
    "READ_CHUNK",
    "Adoption",
    "Counts",
    "Imported",
    "Lease",
    "LeaseInfo",
    "LeaseName",
    "LeaseRevoked",
    "LineCounter",
    "Outcome",
    "Revocation",
    "Snapshot",
    "StateCounter",
    "StateFiles",
    "StateStore",
    "WorkdirLock",
    "append_lines",
    "coherent_io",
    "farmer_name",
    "farmer_pid",
    "heartbeat_period",
    "live_name",
    "lock_path",
    "make_lock",
    "owns",
    "shared_flock",
    "unimported_lines",
    "worker_name",
]
