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
  tasklist: first read, growth; :mod:`.tail` -- what an import takes of the list's end;
  :mod:`.listcheck` -- the list compared with its imported copy; :mod:`.halt` -- the record of a
  halted farm (``--halt``);
* :mod:`.locking` -- the lock kinds; :mod:`.exclusion` -- noticing a lock that does not exclude;
* :mod:`.counting` -- counts for displays; :mod:`.snapshot` -- consistent reads for ``--status``;
  :mod:`.opencount` -- each farmer's opens of workdir files (the metadata cost).
* :mod:`.quarantine` -- the records of nodes that quarantined themselves.
"""

from .adopt import Adoption
from .counting import Counts, LineCounter, StateCounter
from .files import StateFiles
from .filesystem import coherent_io
from .halt import NOW, SOON, HaltRecord, read_halt, write_halt
from .leases import (
    DEAD_SUFFIX,
    DEFAULT_LEASE,
    MIN_LEASE,
    Lease,
    LeaseInfo,
    LeaseName,
    LeaseRevoked,
    farmer_name,
    farmer_node,
    farmer_pid,
    heartbeat_period,
    lease_warning,
    live_name,
    owns,
    safe_component,
    worker_name,
)
from .ledger import CLAIM_READ, COMPACT_MARK
from .lines import READ_CHUNK
from .lines import append as append_lines
from .listimport import Imported
from .locking import LOCK_KINDS, WorkdirLock, lock_path, make_lock, shared_flock
from .opencount import opens_per_result, read_records
from .quarantine import QUARANTINE_TIME, FailedRun, QuarantineRecord, Quarantines, exclude_list
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
    "NOW",
    "QUARANTINE_TIME",
    "READ_CHUNK",
    "SOON",
    "Adoption",
    "Counts",
    "FailedRun",
    "HaltRecord",
    "Imported",
    "Lease",
    "LeaseInfo",
    "LeaseName",
    "LeaseRevoked",
    "LineCounter",
    "Outcome",
    "QuarantineRecord",
    "Quarantines",
    "Revocation",
    "Snapshot",
    "StateCounter",
    "StateFiles",
    "StateStore",
    "WorkdirLock",
    "append_lines",
    "coherent_io",
    "exclude_list",
    "farmer_name",
    "farmer_node",
    "farmer_pid",
    "heartbeat_period",
    "lease_warning",
    "live_name",
    "lock_path",
    "make_lock",
    "opens_per_result",
    "owns",
    "read_halt",
    "read_records",
    "safe_component",
    "shared_flock",
    "unimported_lines",
    "worker_name",
    "write_halt",
]
