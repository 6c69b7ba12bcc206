"""The node gate: on a shared filesystem, the processes of one node take a node-local lock
before the workdir's lock, so that at most one of them at a time asks the server for it.

Every worker waiting for the workdir's lock asked the server: on NFSv4 :class:`FlockLock`
tries ``LOCK_NB`` at short intervals, the soft lock tries ``link(2)``. Measured in the NFS lab
(2 nodes x 16 workers, NFSv4.2, zero-execution): 3.4 LOCK calls per task, of 7.8 NFS
operations per task in all. The gate is ``flock(2)`` on a file in ``/dev/shm`` (else the
temporary directory, if it is local): its waiters sleep in their own node's kernel.

It adds nothing to the exclusion, which the workdir's lock alone provides. So a gate that
cannot be had is left out: no local writable directory, a file of another user that
``protected_regular`` keeps us from opening, a lock call that fails; and a process in another
container of the node, with a /dev/shm of its own, does not queue with ours. Each of these only
brings back the polls.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .filesystem import shared_filesystem

if TYPE_CHECKING:
    from .locking import WorkdirLock


def gate_directories() -> list[str]:
    """Where a gate may live, best first: node-local memory, then the temporary directory."""
    return ["/dev/shm", tempfile.gettempdir()]


def gate_path(lock_file: str, directories: Sequence[str],
              shared: Callable[[Path], bool] = shared_filesystem) -> Path | None:
    """The gate of ``lock_file``: the same name for every process of the node that uses that
    lock file (by its real path), in the first of ``directories`` that is a writable directory
    on a local filesystem; None if there is none."""
    digest = hashlib.sha256(os.path.realpath(lock_file).encode()).hexdigest()[:32]
    for directory in directories:
        if os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK) \
                and not shared(Path(directory)):
            return Path(directory) / f"taskfarmer-gate-{digest}"
    return None


class GatedLock:
    """``lock`` taken only while this process holds the node's gate ``gate`` (see the module's
    docstring); the gate is held as long as the lock, nested holds included."""

    def __init__(self, lock: WorkdirLock, gate: Path) -> None:
        self._lock = lock
        self._gate = gate
        self._fd: int | None = None  # the gate's descriptor, opened at the first hold
        self._usable = True  # False once the gate could not be opened or locked

    @property
    def kind(self) -> str:
        """The workdir lock's kind."""
        return self._lock.kind

    @property
    def lock_file(self) -> str:
        """The workdir lock's file."""
        return self._lock.lock_file

    @property
    def is_locked(self) -> bool:
        """True while this object holds the workdir's lock."""
        return self._lock.is_locked

    def acquire(self) -> None:
        """Take the gate, then the workdir's lock (or count one more nested hold)."""
        if self._lock.is_locked:
            self._lock.acquire()
            return
        gated = self._enter()
        try:
            self._lock.acquire()
        except BaseException:
            if gated:
                self._leave()
            raise

    def release(self, force: bool = False) -> None:
        """Undo one :meth:`acquire` (all of them with ``force``); after the last, release the
        workdir's lock and then the gate (even if releasing the lock failed)."""
        if not self._lock.is_locked:
            return
        try:
            self._lock.release(force)
        finally:
            if not self._lock.is_locked:
                self._leave()

    def _enter(self) -> bool:
        """Wait for the gate; False if there is none to be had (then there is none for good)."""
        if not self._usable:
            return False
        try:
            if self._fd is None:
                self._fd = os.open(self._gate, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC
                                   | getattr(os, "O_NOFOLLOW", 0), 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # PEP 475 retries on EINTR
            return True
        except OSError:
            self._usable = False
            self._close()
            return False

    def _leave(self) -> None:
        """Release the gate, if this object holds it."""
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:  # closing the descriptor drops the lock all the same
            self._usable = False
            self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> GatedLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:  # at interpreter exit ``os`` may already be torn down
            pass
