"""Leases: one file per live worker in ``WORKDIR/leases``, its heartbeat, and takeover.

Beside each lease file, the task record of its worker (:mod:`.records`): made with the lease,
removed before it.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import FilesystemError, operation
from ..hpc.identity import Identity
from ..tasks import Task
from .files import StateFiles
from .filesystem import mount_entry, shared_filesystem
from .ledger import Ledger
from .records import TaskRecords

#: Default ``--lease``: long enough to ride out a stalled parallel filesystem, short enough
#: that the tasks of a dead node come back within minutes.
DEFAULT_LEASE = 300.0
#: The shortest ``--lease``: four heartbeats per lease, each up to half a second late.
MIN_LEASE = 2.0
#: What a lease file's name ends with while it is being taken over (:meth:`Leases.revoke`).
DEAD_SUFFIX = ".dead"

_LEASE_NAME = re.compile(r"(?P<farmer>.+)\.w(?P<slot>\d+)\.(?P<pid>\d+)\.(?P<generation>\d+)")


class LeaseRevoked(Exception):
    """Our lease was taken over by another farmer: its tasks are back in ``toprocess``."""


@dataclass(frozen=True)
class Lease:
    """A worker's claim on the tasks it takes; a file in ``WORKDIR/leases``."""

    name: str
    path: Path


@dataclass(frozen=True)
class LeaseInfo:
    """What another farmer can see of a lease: its name, heartbeat and owner."""

    name: str
    heartbeat: float
    owner: Identity
    dead: bool
    #: What changes with every heartbeat (inode, mtime and ctime in ns), as this node's
    #: server sees it: observers compare it over time instead of comparing clocks.
    token: tuple[int, int, int] = (0, 0, 0)


def heartbeat_period(lease: float) -> float:
    """Seconds between a farmer's renewals of its leases: four per ``lease``, at most 30 s
    apart (a lease that missed two renewals is late: ``--status`` shows it)."""
    return min(lease / 4, 30.0)


#: How late another node may see a renewal on a filesystem shared between nodes, on top of
#: the filesystem's caching: each renewal and each look is a round trip to the server, which a
#: loaded node (a CPU hog on each one-CPU node of the NFS lab) or a busy server delays.
SHARED_LATENESS = 5.0
#: The NFS client's default ``acregmax``: how long it may serve cached attributes.
NFS_ACREGMAX = 60.0


def caching_delay(fstype: str | None, options: Mapping[str, str]) -> float:
    """Seconds for which another node may keep seeing an old heartbeat because its client
    caches attributes: none where opening a file revalidates them, which the observers rely
    on (:meth:`Leases.infos` opens each lease): NFS's close-to-open, and the other shared
    filesystems, coherent by their own locks. NFS mounted ``nocto`` (without ``noac``): the
    attribute cache's ``acregmax`` (or ``actimeo``), 60 s by default."""
    if not (fstype or "").startswith("nfs") or "noac" in options or "nocto" not in options:
        return 0.0
    try:
        return float(options.get("acregmax") or options.get("actimeo") or NFS_ACREGMAX)
    except ValueError:
        return NFS_ACREGMAX


def shortest_lease(shared: bool, fstype: str | None, options: Mapping[str, str]) -> float:
    """The shortest ``--lease`` that live farmers' leases survive on the workdir's filesystem.

    A renewal comes every quarter lease (:func:`heartbeat_period`); another node sees it after
    the caching delay (:func:`caching_delay`) and the lateness of a shared filesystem
    (:data:`SHARED_LATENESS`), and must see it before the lease runs out: ``lease / 4 + delay +
    late < lease``, so ``lease > 4/3 (delay + late)``: 6.7 s on NFS (close-to-open), 86.7 s
    with ``nocto``. On a local filesystem no other node looks, and on the same node liveness is
    the process, not the heartbeat: :data:`MIN_LEASE`.
    """
    if not shared:
        return MIN_LEASE
    return max(MIN_LEASE, round(4 / 3 * (SHARED_LATENESS + caching_delay(fstype, options)), 1))


def lease_advice(lease: float, shared: bool, fstype: str | None,
                 options: Mapping[str, str]) -> str | None:
    """The warning for a ``--lease`` shorter than :func:`shortest_lease` (None: none)."""
    floor = shortest_lease(shared, fstype, options)
    if lease >= floor:
        return None
    where = f"this {fstype} mount" + (" (nocto)" if "nocto" in options else "") if fstype \
        else "this shared filesystem"
    return (f"warning: --lease {lease:g} is shorter than {floor:g} s, the shortest that "
            f"heartbeats every {heartbeat_period(lease):g} s allow on {where}: farmers on other "
            "nodes may take live workers' tasks over (their results are then discarded and "
            "the tasks run again)")


def lease_warning(lease: float, workdir: Path) -> str | None:
    """:func:`lease_advice` for ``workdir``'s filesystem (its type and mount options)."""
    fstype, options = mount_entry(workdir)
    return lease_advice(lease, shared_filesystem(workdir), fstype, options)


def safe_component(node: str) -> str:
    """``node`` as a path component: characters other than letters, digits, ``_.-`` become
    ``_``, at most 48 of them (``node`` if none is left)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", node)[:48].lstrip(".") or "node"


def farmer_name(node: str, pid: int, token: str) -> str:
    """A farmer's name, ``NODE.PID-TOKEN``, the prefix of its workers' lease files: readable,
    unique (``token``), safe as a path component whatever the node is called."""
    return f"{safe_component(node)}.{pid}-{token}"


def farmer_pid(farmer: str) -> int | None:
    """The PID in a farmer's name (:func:`farmer_name`); None if it has none."""
    pid = farmer.rsplit(".", 1)[-1].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def farmer_node(farmer: str) -> str:
    """The node in a farmer's name (:func:`farmer_name`), as :func:`safe_component` wrote it."""
    return farmer.rsplit(".", 1)[0]


def worker_name(farmer: str, slot: int) -> str:
    """A worker's name, ``FARMER.wSLOT``: unique in the workdir while its farmer lives."""
    return f"{farmer}.w{slot}"


def live_name(name: str) -> str:
    """A lease file's name without the ``.dead`` of a takeover in progress."""
    return name.removesuffix(DEAD_SUFFIX)


@dataclass(frozen=True)
class LeaseName:
    """The name of a lease file, ``FARMER.wSLOT.PID.GEN`` (``.dead`` appended while it is
    taken over): whose worker holds it, and which of that worker process's leases it is
    (a worker registers a new one after a takeover)."""

    farmer: str
    slot: int
    pid: int
    generation: int
    dead: bool = False

    def __str__(self) -> str:
        name = f"{worker_name(self.farmer, self.slot)}.{self.pid}.{self.generation}"
        return name + DEAD_SUFFIX if self.dead else name

    @classmethod
    def parse(cls, name: str) -> LeaseName | None:
        """The parts of a lease file's name; None for a name not in this format."""
        match = _LEASE_NAME.fullmatch(live_name(name))
        if match is None:
            return None
        return cls(match["farmer"], int(match["slot"]), int(match["pid"]),
                   int(match["generation"]), name.endswith(DEAD_SUFFIX))

    def owned_by(self, farmer: str, slot: int | None = None, pid: int | None = None) -> bool:
        """Whether this lease is ``farmer``'s (and of its worker ``slot`` in process ``pid``,
        if given)."""
        return (self.farmer == farmer and (slot is None or slot == self.slot)
                and (pid is None or pid == self.pid))


def owns(farmer: str, name: str, slot: int | None = None, pid: int | None = None, *,
         live: bool = False) -> bool:
    """Whether lease file ``name`` is ``farmer``'s (see :meth:`LeaseName.owned_by`); with
    ``live``, only if it is not being taken over (no ``.dead``)."""
    lease = LeaseName.parse(name)
    return lease is not None and lease.owned_by(farmer, slot, pid) and not (live and lease.dead)


class Leases:
    """The lease files of a workdir.

    A task is running if its last claim names a lease whose file exists and it is neither
    finished, failed nor back in ``toprocess``; taking a lease over puts such tasks back.
    """

    def __init__(self, files: StateFiles, ledger: Ledger) -> None:
        self.files = files
        self.directory = files.leases
        self.ledger = ledger
        self.records = TaskRecords(files)
        self._held: set[str] = set()  # leases found alive during the current lock hold

    def begin_hold(self) -> None:
        """*locked* Forget what the previous lock hold found out."""
        self._held.clear()

    def register(self, name: str, owner: Identity) -> Lease:
        """*locked* Create the lease file ``leases/NAME`` with our identity in it.

        Written to ``WORKDIR/.lease-NAME`` first, then linked into place (``link(2)`` fails
        if the name exists, like ``O_EXCL``): a lease file never exists without its owner.
        An empty one (a worker killed between creating and writing it) names nobody whose
        death can be proved, so the next farmer would wait the whole ``--lease`` for it.
        """
        path = self.directory / name
        staging = self.files.lease_staging(name)
        try:
            try:
                with open(staging, "w") as handle:
                    handle.write(owner.to_text())
                os.link(staging, path)
            finally:
                staging.unlink(missing_ok=True)
        except OSError as error:
            raise FilesystemError.from_oserror(path, "create", error) from None
        self.records.create(name)
        return Lease(name, path)

    def holds(self, lease: Lease) -> bool:
        """*locked* True while nobody has revoked ``lease`` (checked once per lock hold)."""
        if lease.name in self._held:
            return True
        if self.files.exists(lease.path):
            self._held.add(lease.name)
            return True
        self.records.drop(lease.name)  # revoked for good: its taker removes the record
        return False

    @operation("touch", lambda self, name: self.directory / name)
    def renew(self, name: str) -> bool:
        """Heartbeat: touch lease ``name``. False if it was revoked (the file is gone).

        Needs no lock: a revocation renames the file away first, so a late touch fails. A
        stale NFS handle (the file was renamed away and removed on another node) is gone too.
        """
        try:
            os.utime(self.directory / name)
        except FileNotFoundError:
            return False
        except OSError as error:
            if error.errno != errno.ESTALE:
                raise
            return False
        return True

    @operation("remove", lambda self, lease: lease.path)
    def release(self, lease: Lease) -> None:
        """*locked* Remove our lease: we hold no tasks any more (its task record first: a
        lease without one names no task to kill, a record without its lease would stay)."""
        self._held.discard(lease.name)
        self.records.remove(lease.name)
        lease.path.unlink(missing_ok=True)

    def abandon(self, farmer: str) -> list[str]:
        """Without the lock: rename the live lease files of ``farmer`` to ``NAME.dead``, the
        commit point of :meth:`revoke`, which the next lock holder finishes at once. Only for
        a farmer whose lock did not exclude, after its tasks are gone (:mod:`.exclusion`). A
        lease revoked meanwhile is skipped. Returns the names renamed.
        """
        renamed = []
        for name in self.names():
            if owns(farmer, name, live=True):
                try:
                    os.rename(self.directory / name, self.directory / (name + DEAD_SUFFIX))
                except FileNotFoundError:  # revoked by another farmer meanwhile
                    continue
                renamed.append(name)
        return renamed

    @operation("list", lambda self: self.directory)
    def names(self) -> list[str]:
        """The names of the lease files, live or half-revoked (``NAME.dead``): one listing,
        no file read (heartbeats run on parallel filesystems, where each read costs)."""
        try:
            return sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []

    def infos(self, names: Iterable[str] | None = None) -> list[LeaseInfo]:
        """Every lease file (or those of ``names``, as :meth:`names` lists them), live or
        half-revoked (``.dead``), with heartbeat and owner."""
        infos = []
        for name in self.names() if names is None else names:
            path = self.directory / name
            try:
                # Opened, then looked at: on NFS the open revalidates the attributes, so the
                # heartbeat (mtime) is the server's, not a cached one up to a minute old.
                with open(path, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    owner = Identity.from_text(handle.read().decode(errors="replace"))
            except FileNotFoundError:
                continue
            infos.append(LeaseInfo(live_name(name), stat.st_mtime, owner,
                                   name.endswith(DEAD_SUFFIX),
                                   (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns)))
        return infos

    def any(self) -> bool:
        """*locked* True if any lease file (live or half-revoked) exists."""
        return bool(self.names())

    def revoke(self, name: str) -> list[Task]:
        """*locked* Begin taking over lease ``name``: the tasks running under it, for the
        caller to settle (put back, or record) before :meth:`finish_revoke`.

        First the lease file is renamed to ``NAME.dead`` — atomic, and the commit point: from
        then on the owner, if it is in fact alive, can neither record a result nor take a task
        (it checks its file under this lock). Then the caller settles its tasks, and the task
        record and the ``.dead`` file are removed. A crash in between leaves the ``.dead``
        file, and the next revoke finishes the job; it recomputes which tasks are still
        running, so tasks already settled are not settled twice. Empty if the lease is gone.
        """
        live = self.directory / name
        dead = self.directory / (name + DEAD_SUFFIX)
        self._held.discard(name)
        try:
            os.rename(live, dead)
        except FileNotFoundError:
            if not self.files.exists(dead):
                return []
        return self.ledger.running_tasks(name)

    def finish_revoke(self, name: str) -> None:
        """*locked* The last step of :meth:`revoke`, once its tasks are settled."""
        self.records.remove(name)
        (self.directory / (name + DEAD_SUFFIX)).unlink(missing_ok=True)
