"""The lock that guards every state change in a workdir.

PyTaskFarmer's rule is kept: the lock file lives in ``$SCRATCH`` (some HPC filesystems that
hold workdirs do not support locking), named from a hash of the absolute workdir so every farmer
on every node finds the same file; without ``SCRATCH`` it is ``WORKDIR/lock``.

Two kinds, chosen with ``--lock`` or ``TASKFARMER_LOCK``:

* ``flock`` (default): ``flock(2)`` on the lock file. The kernel (or the NFS/Lustre lock
  manager) drops the lock when its holder dies, so a SIGKILLed farmer never blocks the others.
* ``soft``: filelock's :class:`~filelock.SoftFileLock`, an ``O_CREAT|O_EXCL`` lock file, for
  filesystems where ``flock`` does not work. A farmer killed while holding it leaves the file
  behind; the others then wait and warn, naming the file to remove. filelock's own breaking of
  lock files it judges stale is switched off: on NFS it broke live locks of other nodes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from filelock import AcquireReturnProxy, BaseFileLock, SoftFileLock, Timeout, UnixFileLock

from ..errors import ConfigError, FilesystemError

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


def check_scratch(environ: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` unless ``SCRATCH`` (if set) is a writable directory
    (:class:`FilesystemError` if it cannot even be looked at: an I/O error...).

    Checked before the workdir is touched, for both lock kinds. Nothing is created in place of
    a missing ``SCRATCH``: on a node with a mistyped or unmounted ``SCRATCH`` a directory made
    there would hold a lock no other farmer sees.
    """
    scratch = environ.get("SCRATCH")
    if not scratch:
        return
    fix = "set SCRATCH to a writable directory shared by every farmer of the workdir, or unset it"
    try:
        mode = os.stat(scratch).st_mode
    except (FileNotFoundError, NotADirectoryError):  # (also a dangling symbolic link)
        raise ConfigError(f"{scratch} does not exist; {fix}", option="SCRATCH") from None
    except OSError as error:  # EIO, EACCES on a directory above it...: not the user's typo
        raise FilesystemError.from_oserror(Path(scratch), "stat", error) from error
    if not stat.S_ISDIR(mode):
        raise ConfigError(f"{scratch} is not a directory; {fix}", option="SCRATCH")
    # access(2) also reports a read-only filesystem (EROFS), which root's rights do not bypass.
    if not os.access(scratch, os.W_OK | os.X_OK):
        raise ConfigError(f"{scratch} is not writable; {fix}", option="SCRATCH")


class BlockingFlockLock(UnixFileLock):
    """``flock`` lock that sleeps in the kernel instead of polling.

    filelock's :class:`UnixFileLock` tries ``LOCK_NB`` and sleeps ``poll_interval`` between
    tries, which adds up to 50 ms to every contended acquisition; here ``_acquire`` blocks in
    ``flock(LOCK_EX)`` and wakes the moment the holder releases. The descriptor stays open
    between acquisitions (one ``open`` per lock object, not per task).

    ``acquire``/``release`` are this class's own: a farmer takes the lock once per task, and
    filelock's general ones (thread-local contexts, fork tracking, a ``realpath`` and a
    ``mkdir`` of the lock's directory, deadlock registries) cost 83 us per acquire/release pair
    on this machine against 1.2 us for the two ``flock`` calls, 8 % of the CPU a 1 ms task
    costs. What they guard against cannot happen here: the lock is taken by one thread per
    process, and it never crosses ``fork`` (the child would share the open file description,
    and so the lock, with its parent): :class:`StateStore` builds one per process. Like
    filelock's, it is re-entrant: nested acquisitions are counted. It always blocks;
    ``timeout`` and ``blocking`` are accepted for the interface and ignored.
    """

    _fd: int | None = None
    _depth = 0

    def _descriptor(self) -> int:
        if self._fd is None:
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            try:
                self._fd = os.open(self.lock_file, flags, 0o644)
            except OSError as error:  # SCRATCH removed, full (ENOSPC, EDQUOT), read-only...
                raise FilesystemError.from_oserror(Path(self.lock_file), "open", error) \
                    from error
        return self._fd

    def _acquire(self) -> None:
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX)  # PEP 475 retries on EINTR
        except OSError as error:  # ENOLCK: an NFS mount without a lock manager (nolock)
            raise FilesystemError.from_oserror(Path(self.lock_file), "lock", error) from error

    def _release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def acquire(self, timeout: float | None = None, poll_interval: float = 0.05,
                **kwargs: object) -> AcquireReturnProxy:
        """Block until this process holds the lock (or count one more nested hold)."""
        if self._depth == 0:
            self._acquire()
        self._depth += 1
        return AcquireReturnProxy(lock=self)

    def release(self, force: bool = False) -> None:
        """Undo one ``acquire`` (all of them with ``force``); unlock after the last."""
        if self._depth == 0:
            return
        self._depth = 0 if force else self._depth - 1
        if self._depth == 0:
            self._release()

    def __enter__(self) -> BlockingFlockLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        # The kernel drops an flock with the last descriptor of its open file description.
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except Exception:  # at interpreter exit ``os`` may already be torn down
                pass

    @property
    def is_locked(self) -> bool:
        """True while this object holds the lock."""
        return self._depth > 0

    @property
    def lock_counter(self) -> int:
        """Number of nested acquisitions not yet released."""
        return self._depth


class WarningSoftFileLock(SoftFileLock):
    """Soft lock that warns on stderr, naming the file, each time it has waited a minute, and
    never removes another holder's lock file."""

    def _try_break_stale_lock(self) -> None:
        """Never break the lock (filelock >= 4 does, for a lock file it finds malformed and
        unchanged for 2 s, or whose owner looks dead on this host).

        It judges "unchanged" by ``lstat``, which on NFS answers from this node's attribute
        and directory caches, stale for seconds, and reads a marker that its holder on
        another node may not have written yet: in the NFS lab it removed the lock file of a
        live holder on the other node and let a second farmer in (the holder check noticed;
        see :mod:`taskfarmer.store.exclusion`). A lock file left by a killed farmer is removed
        by the user, whom :meth:`acquire` tells which file it is.
        """

    def acquire(self, timeout: float | None = None, poll_interval: float = 0.005,
                **kwargs: object) -> AcquireReturnProxy:
        waited = 0.0
        while True:
            try:
                return super().acquire(timeout=STALL_WARNING_SECONDS, poll_interval=poll_interval)
            except Timeout:  # (a TimeoutError, so an OSError: caught first)
                waited += STALL_WARNING_SECONDS
                print(
                    f"taskfarmer: waited {waited:.0f} s for the soft lock {self.lock_file}; "
                    "if no farmer is running on this workdir, remove that file",
                    file=sys.stderr,
                )
            except OSError as error:  # SCRATCH full (ENOSPC, EDQUOT), removed, read-only...
                raise FilesystemError.from_oserror(Path(self.lock_file), "create", error) \
                    from error


def make_lock(workdir: Path, kind: str, environ: Mapping[str, str]) -> BaseFileLock:
    """Create the lock for ``workdir`` (``kind`` is ``flock`` or ``soft``).

    Raises:
        ConfigError: ``kind`` is unknown, or ``SCRATCH`` is set but not a writable directory.
        FilesystemError: ``SCRATCH`` cannot be looked at.
    """
    check_scratch(environ)
    path = lock_path(workdir, environ)
    if kind == "flock":
        return BlockingFlockLock(str(path), timeout=-1)
    if kind == "soft":
        return WarningSoftFileLock(str(path), timeout=-1)
    raise ConfigError(f"unknown lock kind {kind!r} (choose from {', '.join(LOCK_KINDS)})",
                      option="--lock")
