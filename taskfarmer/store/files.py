"""The files of a workdir, and this process's descriptors of them (fast or coherent)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import FilesystemError


def private_tmp(path: Path) -> Path:
    """A temporary name next to ``path`` that no other process uses (``NAME.tmp.PID.RANDOM``).

    Files written aside and renamed into place get one: two farmers doing so at once (only
    possible when their lock does not exclude) each rename their own file, where with a
    shared ``NAME.tmp`` the second rename fails (ENOENT) after the first took it.
    """
    return path.with_name(f"{path.name}.tmp.{os.getpid()}.{os.urandom(4).hex()}")


def replace_file(path: Path, data: bytes) -> None:
    """Make ``path`` hold ``data``: written to a :func:`private_tmp` file, fsynced, then
    ``rename(2)``d over it, which is atomic (on an NFS server too): a reader, on any node,
    sees the old content or the new, never part of it, and a crash leaves one of the two."""
    tmp = private_tmp(path)
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.rename(tmp, path)

class StateFiles:
    """Where each state file of ``workdir`` lives, and descriptors opened on demand.

    Each process opens its own descriptors (lazily, so a store survives ``fork``). In the
    fast mode (a local filesystem) they stay open from one lock hold to the next. In the
    coherent mode (``coherent``; a filesystem shared between nodes) every descriptor is opened
    inside a lock hold and closed before it ends (see "The store" in ``docs/design.md``).
    """

    #: Where half-written last lines go (:func:`~.lines.cut_incomplete_line`), beside the file.
    TORN = "torn"

    def __init__(self, workdir: Path, coherent: bool = False) -> None:
        self.workdir = workdir
        self.coherent = coherent
        self.toprocess = workdir / "toprocess"
        self.toprocess_new = workdir / "toprocess.new"  # a compaction's new list
        self.toprocess_adopt = workdir / "toprocess.adopt"  # an adoption's new list
        self.claims = workdir / "claims"
        self.finished = workdir / "finished"
        self.failed = workdir / "failed"
        self.torn = workdir / self.TORN
        self.attempts = workdir / "attempts"
        self.failed_requeue = workdir / "failed.requeue"
        self.holder = workdir / "holder"  # who holds the lock (:mod:`.exclusion`)
        self.imported = workdir / "imported"  # how much of TASKLIST is imported
        self.tasklist = workdir / "tasklist"  # the imported part of TASKLIST
        self.tasklist_tmp = workdir / "tasklist.tmp"
        self.leases = workdir / "leases"
        self.logs = workdir / "logs"
        self.farmers = workdir / "farmers"  # coherent farmers' counts (:mod:`.opencount`)
        self.joblog = workdir / "joblog"  # :mod:`taskfarmer.logs.joblog`
        self.timeline = workdir / "timeline.json"  # :mod:`taskfarmer.timeline`
        self.lock = workdir / "lock"  # the lock file when ``SCRATCH`` is not set
        self.halted = workdir / "halted"  # the farm was halted (:mod:`.halt`)
        self.quarantine = workdir / "quarantine"  # :mod:`.quarantine`
        self._fds: dict[Path, tuple[int, int]] = {}  # path -> (fd, pid that opened it)
        self._toprocess_ino = -1

    def lease_staging(self, name: str) -> Path:
        """Where lease ``name`` is written before it is linked into ``leases``."""
        return self.workdir / f".lease-{name}"

    def task_record(self, name: str) -> Path:
        """The task record of lease ``name`` (:mod:`.records`)."""
        return self.workdir / f".task-{name}"

    def fd(self, path: Path) -> int:
        """This process's ``O_APPEND`` read-write descriptor of ``path`` (created if missing).

        Why ``O_APPEND`` is safe in the coherent mode too: an NFS client appends at its cached
        idea of the file's size, and that is the server's size here, because the descriptor
        was opened after the lock was taken (the open revalidated the attributes: close-to-open)
        and nobody else changes the file while we hold the lock. ``O_CREAT`` makes the open
        itself go to the server, even through a stale cached directory entry.
        """
        entry = self._fds.get(path)
        if entry is not None and entry[1] == os.getpid():
            return entry[0]
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise FilesystemError.from_oserror(path, "open", error) from None
        self._fds[path] = (fd, os.getpid())
        return fd

    def size(self, path: Path) -> int:
        """The size of ``path`` as seen through our descriptor."""
        return os.fstat(self.fd(path)).st_size

    def exists(self, path: Path) -> bool:
        """*locked* Whether ``path`` exists.

        Coherent mode: by opening it, not by ``stat``. An NFS client answers ``stat`` from
        cached directory entries and attributes (up to a minute old: a lease file another node
        renamed away would still "exist"); an open revalidates (NFSv4 sends OPEN by name,
        NFSv3 a GETATTR, and the parent directories were revalidated by :meth:`begin_hold`).
        """
        if not self.coherent:
            return path.exists()
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_NOFOLLOW))
        except FileNotFoundError:
            return False
        except OSError as error:
            # A stale handle is a file replaced or removed by another node: gone (a lease is a
            # fence, and "exists" is the answer that would let a revoked owner record). Any
            # other error: there, but not openable (a permission problem shows when used).
            return error.errno != errno.ESTALE
        return True

    def forget(self, path: Path) -> None:
        """Drop (and close) this process's descriptor of ``path``, replaced or renamed away."""
        entry = self._fds.pop(path, None)
        if entry is not None and entry[1] == os.getpid():
            os.close(entry[0])

    def close(self) -> None:
        """Close this process's descriptors."""
        for fd, pid in self._fds.values():
            if pid == os.getpid():
                os.close(fd)
        self._fds.clear()

    def begin_hold(self) -> None:
        """*locked* Make what this process sees of the workdir current.

        Fast mode: drop a descriptor of a ``toprocess`` that a compaction renamed away.
        Coherent mode: no descriptor survives a hold; open (and close) the workdir and
        ``leases`` directories, which makes an NFS client revalidate their attributes (close-
        to-open applies to directories too) and so re-look-up every cached name in them that
        changed on the server (a lease renamed away, a ``toprocess`` created or replaced).
        """
        if self.coherent:
            for directory in (self.workdir, self.leases):
                try:
                    os.close(os.open(directory, os.O_RDONLY | os.O_DIRECTORY))
                except FileNotFoundError:
                    pass
            return
        try:
            ino = os.stat(self.toprocess).st_ino
        except FileNotFoundError:
            ino = -1
        if ino != self._toprocess_ino:
            self.forget(self.toprocess)
            self._toprocess_ino = ino

    def end_hold(self) -> None:
        """*locked* Coherent mode: close every descriptor before the lock is released.

        On NFS, ``close(2)`` writes the dirty pages to the server and commits them (and reports
        a failed write-back), so the next lock holder on any node, opening after it takes the
        lock, reads what we wrote. Nothing is kept that could later be written back stale.
        """
        if not self.coherent:
            return
        entries, self._fds = list(self._fds.items()), {}
        failure = None
        for path, (fd, pid) in entries:
            if pid != os.getpid():
                continue
            try:
                os.close(fd)
            except OSError as error:
                failure = failure or FilesystemError.from_oserror(path, "write back", error)
        if failure is not None:
            raise failure

    @staticmethod
    def create(path: Path) -> None:
        """Create ``path`` empty unless it exists."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as error:
            raise FilesystemError.from_oserror(path, "create", error) from None
        os.close(fd)
