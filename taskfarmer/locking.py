"""The lock that guards every state change in a workdir.

PyTaskFarmer's rule is kept: the lock file lives in ``$SCRATCH`` (some HPC filesystems that
hold workdirs do not support locking), named from a hash of the absolute workdir so every farmer
on every node finds the same file; without ``SCRATCH`` it is ``WORKDIR/lock``.

Two kinds, chosen with ``--lock`` or ``TASKFARMER_LOCK``:

* ``flock`` (default): ``flock(2)`` on the lock file. The kernel (or the NFS/Lustre lock
  manager) drops the lock when its holder dies, so a SIGKILLed farmer never blocks the others.
* ``soft``: filelock's :class:`~filelock.SoftFileLock`, an ``O_CREAT|O_EXCL`` lock file, for
  filesystems where ``flock`` does not work. A farmer killed while holding it leaves the file
  behind; the others then wait and warn, naming the file to remove.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
from pathlib import Path
from typing import Mapping, Optional

from filelock import AcquireReturnProxy, BaseFileLock, SoftFileLock, Timeout, UnixFileLock

from .errors import ConfigError

LOCK_KINDS = ("flock", "soft")

#: How long a farmer waits on a lock before printing a warning (and waiting on).
STALL_WARNING_SECONDS = 60.0


def lock_path(workdir: Path, environ: Mapping[str, str]) -> Path:
    """Where the lock file of ``workdir`` lives."""
    scratch = environ.get("SCRATCH")
    if not scratch:
        return workdir / "lock"
    digest = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:32]
    return Path(scratch) / f"taskfarmer_{digest}.lock"


class BlockingFlockLock(UnixFileLock):
    """``flock`` lock that sleeps in the kernel instead of polling.

    filelock's :class:`UnixFileLock` tries ``LOCK_NB`` and sleeps ``poll_interval`` between
    tries, which adds up to 50 ms to every contended acquisition; with thousands of short tasks
    that is most of the run. Here ``_acquire`` blocks in ``flock(LOCK_EX)`` and wakes the moment
    the holder releases. The descriptor stays open between acquisitions (one ``open`` per lock
    object, not per task). A lock object must not cross ``fork`` (the child would share the
    open file description, and so the lock, with its parent): :class:`StateStore` builds one
    per process.
    """

    _fd: Optional[int] = None

    def _descriptor(self) -> int:
        if self._fd is None:
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            self._fd = os.open(self.lock_file, flags, 0o644)
        return self._fd

    def _acquire(self) -> None:
        fd = self._descriptor()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries already
                continue
        self._context.lock_file_fd = fd

    def _release(self) -> None:
        fd = self._context.lock_file_fd
        self._context.lock_file_fd = None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)


class WarningSoftFileLock(SoftFileLock):
    """Soft lock that warns on stderr, naming the file, each time it has waited a minute."""

    def acquire(self, timeout: Optional[float] = None, poll_interval: float = 0.005,
                **kwargs: object) -> AcquireReturnProxy:
        waited = 0.0
        while True:
            try:
                return super().acquire(timeout=STALL_WARNING_SECONDS, poll_interval=poll_interval)
            except Timeout:
                waited += STALL_WARNING_SECONDS
                print(
                    f"taskfarmer: waited {waited:.0f} s for the soft lock {self.lock_file}; "
                    "if no farmer is running on this workdir, remove that file",
                    file=sys.stderr,
                )


def make_lock(workdir: Path, kind: str, environ: Mapping[str, str]) -> BaseFileLock:
    """Create the lock for ``workdir`` (``kind`` is ``flock`` or ``soft``)."""
    path = lock_path(workdir, environ)
    if kind == "flock":
        return BlockingFlockLock(str(path), timeout=-1)
    if kind == "soft":
        return WarningSoftFileLock(str(path), timeout=-1)
    raise ConfigError(f"unknown lock kind {kind!r} (choose from {', '.join(LOCK_KINDS)})",
                      option="--lock")
