"""The store of one workdir: the lock, and the parts that change the state under it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..hpc.identity import Identity
from ..tasks import Task, TaskList
from .adopt import Adoption, reconcile, unadopted
from .compaction import Compactor
from .exclusion import ExclusionCheck
from .files import StateFiles
from .leases import Lease, LeaseInfo, LeaseRevoked, Leases
from .ledger import Ledger
from .listimport import Imported, ListImport
from .locking import WorkdirLock, open_lock
from .opencount import OpenCount
from .orphans import Orphans
from .quarantine import Quarantines
from .results import Outcome, Results
from .workdir import Workdir


@dataclass(frozen=True)
class Revocation:
    """What taking a lease over did with the tasks that ran under it."""

    #: Put back into ``toprocess``.
    back: list[Task]
    #: The task blamed for its worker's death, if it was running under the lease: recorded
    #: as a failed attempt instead (``outcome``: retry or failed).
    blamed: Task | None = None
    outcome: Outcome | None = None


class StateStore:
    """The state files of one workdir. Methods marked *locked* need :meth:`locked` held
    (they raise ``AssertionError`` otherwise).

    The work is done by parts with one job each — :class:`Workdir` (set-up and repair),
    :class:`Ledger` (cursor, claims, put-backs), :class:`Results` (recording), :class:`Leases`
    (lease files, takeover), :class:`Compactor`, :class:`Quarantines` (quarantined nodes'
    records) — sharing this process's descriptors (:class:`StateFiles`). This class holds the
    lock and is what the farmer and its workers call.
    """

    def __init__(self, workdir: Path, lock: WorkdirLock, coherent: bool = False) -> None:
        self.workdir = workdir
        self.lock = lock
        self._lock_pid = os.getpid()
        self.files = StateFiles(workdir, coherent)
        self.toprocess = self.files.toprocess
        self.claims = self.files.claims
        self.finished = self.files.finished
        self.failed = self.files.failed
        self.attempts = self.files.attempts
        self.leases = self.files.leases
        self.logs = self.files.logs
        self.workdir_setup = Workdir(self.files)
        self.ledger = Ledger(self.files)
        self.results = Results(self.files, self.ledger)
        self.lease_files = Leases(self.files, self.ledger)
        self.task_records = self.lease_files.records  # written and read without the lock
        self.compactor = Compactor(self.files, self.ledger)
        self.orphans = Orphans(self.files, self.ledger)
        self.exclusion = ExclusionCheck(self.files, lock.lock_file)
        self.opens = OpenCount(self.files.farmers, coherent)
        self.quarantines = Quarantines(self.files)  # written and read without the lock
        self._depth = 0  # nested holds of this process
        self.list_import = ListImport(self.files)

    # -- the lock ----------------------------------------------------------------------------

    def _process_lock(self) -> WorkdirLock:
        """The lock object for this process.

        A lock object must not cross ``fork``: ``flock`` locks belong to the open file
        description, which a child shares with its parent, and a soft lock's nesting count is
        the process's own. Each worker therefore opens its own, of the same kind and file.
        """
        if self._lock_pid != os.getpid():
            self.lock = open_lock(self.lock.kind, self.lock.lock_file)
            self._lock_pid = os.getpid()
            self._depth = 0  # a hold of the parent is not ours
        return self.lock

    def _held(self, method: str) -> None:
        """The check at the top of every *locked* method."""
        if not self._depth:
            raise AssertionError(f"StateStore.{method} needs store.locked()")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the workdir lock; every state change happens inside this block.

        Raises:
            LockError: another farmer was inside at the same time (:mod:`.exclusion`): on
                entry (before the block ran), on leaving, or in an earlier hold of this farmer
                (then on entry, at once).
        """
        with self._process_lock():
            if self._depth:
                yield
                return
            self._depth = 1
            self.files.begin_hold()
            self.lease_files.begin_hold()
            try:
                self.exclusion.begin()
                self.opens.flush()
                try:
                    yield
                finally:
                    self.exclusion.end()
            finally:
                self._depth = 0
                self.lease_files.begin_hold()
                self.files.end_hold()

    def close(self) -> None:
        """Close this process's descriptors."""
        self.lease_files.records.close()
        self.files.close()
        self.exclusion.close()

    # -- set-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """A farmer's start: in the coherent mode, count this process's opens of workdir
        files from now on (and its workers', :mod:`.opencount`); create the workdir and its
        sub-directories (see :meth:`Workdir.prepare`)."""
        self.opens.start()
        self.workdir_setup.prepare()

    def initialized(self) -> bool:
        """True once ``toprocess`` exists: see :meth:`Workdir.initialized`."""
        return self.workdir_setup.initialized()

    def initialize(self, lines: Iterable[str]) -> bool:
        """*locked* Create ``toprocess`` unless it exists: see :meth:`Workdir.initialize`."""
        self._held("initialize")
        return self.workdir_setup.initialize(lines)

    def needs_adoption(self) -> bool:
        """*locked* True for a workdir PyTaskFarmer made: see :mod:`.adopt`."""
        self._held("needs_adoption")
        return unadopted(self.files)

    def adopt(self, tasklist: Iterable[str]) -> Adoption:
        """*locked* Reconcile PyTaskFarmer's workdir with the task lines: see
        :func:`.adopt.reconcile`."""
        self._held("adopt")
        return reconcile(self.files, tasklist)

    def import_list(self, tasklist: Path, handler: TaskList, starting: bool,
                    accept: bool = False) -> int:
        """*locked* Import TASKLIST or its growth: see :meth:`ListImport.update`."""
        self._held("import_list")
        return self.list_import.update(tasklist, handler, starting, accept)

    def unimported_bytes(self, tasklist: Path) -> int:
        """Bytes of TASKLIST not imported yet: see :meth:`ListImport.unimported_bytes`."""
        return self.list_import.unimported_bytes(tasklist)

    def imported(self) -> Imported | None:
        """How much of the tasklist is imported: see :meth:`ListImport.state`."""
        return self.list_import.state()

    def repair(self) -> list[tuple[Path, bytes]]:
        """*locked* Move half-written last lines to ``torn`` (:meth:`Workdir.repair`) and
        finish an interrupted ``--requeue-failed``. Returns what was cut."""
        self._held("repair")
        cut = self.workdir_setup.repair()
        if self.files.exists(self.files.failed_requeue):
            self.results.finish_requeue_failed()
        return cut

    # -- the cursor --------------------------------------------------------------------------

    def cursor(self) -> int:
        """*locked* See :meth:`Ledger.cursor`."""
        self._held("cursor")
        return self.ledger.cursor()

    def peek_cursor(self) -> int | None:
        """The cursor without the lock: see :meth:`Ledger.peek_cursor`."""
        return self.ledger.peek_cursor()

    def pending_count(self, limit: int) -> int:
        """*locked* See :meth:`Ledger.pending_count`."""
        self._held("pending_count")
        return self.ledger.pending_count(limit)

    def pending(self) -> bool:
        """*locked* See :meth:`Ledger.pending`."""
        self._held("pending")
        return self.ledger.pending()

    # -- leases ------------------------------------------------------------------------------

    def register(self, name: str, owner: Identity) -> Lease:
        """*locked* See :meth:`Leases.register`."""
        self._held("register")
        return self.lease_files.register(name, owner)

    def holds(self, lease: Lease) -> bool:
        """*locked* See :meth:`Leases.holds`."""
        self._held("holds")
        return self.lease_files.holds(lease)

    def renew(self, name: str) -> bool:
        """Heartbeat without the lock: see :meth:`Leases.renew`."""
        return self.lease_files.renew(name)

    def release(self, lease: Lease) -> None:
        """*locked* See :meth:`Leases.release`."""
        self._held("release")
        self.lease_files.release(lease)

    @property
    def lock_holds(self) -> tuple[int, int]:
        """(lock holds, hand-overs from another node) of this farmer, all its processes."""
        return self.exclusion.holds

    @property
    def lock_failed(self) -> bool:
        """True once this farmer saw the lock fail to exclude (:mod:`.exclusion`): it takes
        the lock no more."""
        return self.exclusion.failed

    def abandon(self, farmer: str) -> list[str]:
        """Without the lock, after :attr:`lock_failed`: see :meth:`Leases.abandon`."""
        return self.lease_files.abandon(farmer)

    def lease_names(self) -> list[str]:
        """See :meth:`Leases.names`."""
        return self.lease_files.names()

    def lease_infos(self, names: Iterable[str] | None = None) -> list[LeaseInfo]:
        """See :meth:`Leases.infos`."""
        return self.lease_files.infos(names)

    def any_leases(self) -> bool:
        """*locked* See :meth:`Leases.any`."""
        self._held("any_leases")
        return self.lease_files.any()

    def revoke(self, name: str, blame: int | None = None, retries: int = 0) -> Revocation:
        """*locked* Take over lease ``name`` (:meth:`Leases.revoke`): put its running tasks
        back into ``toprocess``, except task ``blame`` (its dead worker ran it), which counts
        a failed attempt (:meth:`Results.record` with ``retries``)."""
        self._held("revoke")
        tasks = self.lease_files.revoke(name)
        blamed = next((task for task in tasks if task.id == blame), None)
        back = [task for task in tasks if task is not blamed]
        self.ledger.requeue(back)
        outcome = self.results.record(blamed, False, retries) if blamed is not None else None
        self.lease_files.finish_revoke(name)
        return Revocation(back, blamed, outcome)

    def running_tasks(self, name: str) -> list[Task]:
        """*locked* See :meth:`Ledger.running_tasks`."""
        self._held("running_tasks")
        return self.ledger.running_tasks(name)

    # -- taking and recording tasks ----------------------------------------------------------

    def claim(self, lease: Lease, count: int) -> list[Task]:
        """*locked* Take up to ``count`` tasks from the front of ``toprocess`` for ``lease``.

        Raises:
            LeaseRevoked: the lease was taken over; register a new one.
        """
        self._held("claim")
        if not self.holds(lease):
            raise LeaseRevoked(lease.name)
        return self.ledger.take(lease.name, count)

    def record(self, lease: Lease, task: Task, succeeded: bool, retries: int = 0) -> Outcome:
        """*locked* Record how an execution of ``task`` ended (:meth:`Results.record`).

        Records nothing (``Outcome.DISCARDED``) if ``lease`` was revoked meanwhile: then the
        task is back in ``toprocess`` (or already ran again elsewhere) and recording it here
        would count it twice.
        """
        self._held("record")
        if not self.holds(lease):
            return Outcome.DISCARDED
        outcome = self.results.record(task, succeeded, retries)
        self.opens.flush(results=1)
        return outcome

    def attempt_count(self, task_id: int) -> int:
        """*locked* See :meth:`Results.attempt_count`."""
        self._held("attempt_count")
        return self.results.attempt_count(task_id)

    def requeue_failed(self) -> int:
        """*locked* See :meth:`Results.requeue_failed`."""
        self._held("requeue_failed")
        return self.results.requeue_failed()

    def requeue(self, tasks: Iterable[Task]) -> None:
        """*locked* See :meth:`Ledger.requeue`."""
        self._held("requeue")
        self.ledger.requeue(tasks)

    # -- at rest -----------------------------------------------------------------------------

    def requeue_orphans(self) -> list[Task]:
        """*locked* At rest (no lease file left), put the tasks that were claimed but are
        recorded nowhere back into ``toprocess`` (:meth:`Orphans.requeue`); nothing while a
        lease exists (its tasks may be running). Returns the tasks put back."""
        self._held("requeue_orphans")
        if self.any_leases():
            return []
        return self.orphans.requeue()

    def tidy(self) -> bool:
        """*locked* Compact ``toprocess`` when no lease is left. Returns True if it did.

        With no lease file no task is running, so the claims carry no information beyond the
        cursor, and ``toprocess`` can be cut down to the tasks after it — once every claimed
        task recorded nowhere is back in it (:meth:`requeue_orphans`): compaction forgets the
        claims, the only trace of such a task.
        """
        self._held("tidy")
        if self.any_leases() or self.files.size(self.claims) == 0:
            return False
        self.orphans.requeue()
        self.compactor.compact()
        return True
