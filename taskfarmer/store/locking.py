"""The lock that guards every state change in a workdir.

PyTaskFarmer's rule is kept: the lock file lives in ``$SCRATCH`` (some HPC filesystems that
hold workdirs do not support locking), named from a hash of the absolute workdir so every farmer
on every node finds the same file; without ``SCRATCH`` it is ``WORKDIR/lock``.

Two kinds, chosen with ``--lock`` or ``TASKFARMER_LOCK``:

* ``flock`` (default): ``flock(2)`` on the lock file. The kernel (or the NFS/Lustre lock
  manager) drops the lock when its holder dies, so a SIGKILLed farmer never blocks the others.
* ``soft``: a lock file made with ``link(2)`` (:class:`SoftLock`), for filesystems where
  ``flock`` does not work. A farmer killed while holding it leaves the file behind; the others
  then wait and warn, naming the file to remove. Nothing breaks a lock file it judges stale
  (filelock's soft lock, used before, did: on NFS it broke live locks of other nodes).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
import socket
import stat
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Protocol

from ..errors import ConfigError, FilesystemError
from .files import StateFiles
from .filesystem import mount_type

#: How long a farmer waits on a lock before printing a warning (and waiting on).
STALL_WARNING_SECONDS = 60.0


def lock_path(workdir: Path, environ: Mapping[str, str]) -> Path:
    """Where the lock file of ``workdir`` lives."""
    scratch = environ.get("SCRATCH")
    if not scratch:
        return StateFiles(workdir).lock
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


class WorkdirLock(Protocol):
    """What the store and PyTaskFarmer's handlers need of a workdir lock. Re-entrant: nested
    acquisitions are counted. Never shared across ``fork`` (:func:`open_lock` makes another)."""

    @property
    def kind(self) -> str:
        """``flock`` or ``soft`` (:data:`LOCK_KINDS`)."""

    @property
    def lock_file(self) -> str:
        """The lock file's path."""

    @property
    def is_locked(self) -> bool:
        """True while this object holds the lock."""

    def acquire(self) -> None:
        """Wait until this object holds the lock (or count one more nested hold)."""

    def release(self, force: bool = False) -> None:
        """Undo one :meth:`acquire` (all of them with ``force``); unlock after the last."""

    def __enter__(self) -> WorkdirLock: ...

    def __exit__(self, *exc_info: object) -> None: ...


#: Polling for an NFSv4 lock: the first wait (seconds), and the longest.
POLL_FIRST = 0.001
POLL_MAX = 0.05


def next_poll(previous: float, jitter: float) -> float:
    """How long to wait before trying a contended NFSv4 lock again: twice the ``previous``
    wait (:data:`POLL_FIRST` at first), at most :data:`POLL_MAX`, scaled by ``jitter`` (in
    [0.5, 1]) so that waiters on different nodes do not try in step."""
    return min(POLL_MAX, max(POLL_FIRST, previous * 2)) * jitter


class FlockLock:
    """``flock(2)`` on the lock file, sleeping in the kernel instead of polling.

    filelock's :class:`~filelock.UnixFileLock` tries ``LOCK_NB`` and sleeps ``poll_interval``
    between tries, which adds up to 50 ms to every contended acquisition; here the
    acquisition blocks in ``flock(LOCK_EX)`` and wakes the moment the holder releases. The
    descriptor stays open between acquisitions (one ``open`` per lock object, not per task).
    filelock's general machinery (thread-local contexts, fork tracking, deadlock registries)
    costs far more than the two ``flock`` calls and guards against what cannot happen here:
    one thread per process takes the lock, and the object never crosses ``fork``.

    Except on NFSv4 (``poll``; by default when the lock file is on an ``nfs4`` mount): there a
    blocked lock waits in the client, which asks the server again after 0.1 s, then twice as
    long each time up to 30 s, unless the server calls back. Meanwhile every waiter on the
    holder's own node is woken by the local unlock and asks at once, so the node holding the
    lock keeps it while it has waiters, and another node can starve (measured: one node got 1
    lock hold in 15 s while the other got 1,181 to 2,219). So each process asks itself, with
    ``LOCK_NB``, at short capped intervals (:func:`next_poll`): a node waits no longer than
    :data:`POLL_MAX` between tries. NFSv3's lock manager queues blocked locks at the server
    and grants them in turn: blocking stays (polling would lose that order).

    Args:
        lock_file: the lock file (created if missing).
        poll: poll with ``LOCK_NB`` instead of blocking (None: when on NFSv4).
        sleep: sleeps between polls.
        jitter: a number in [0.5, 1] for each poll (:func:`next_poll`).
    """

    kind = "flock"

    def __init__(self, lock_file: str, poll: bool | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = lambda: random.uniform(0.5, 1.0)) -> None:
        self.lock_file = lock_file
        self._fd: int | None = None
        self._depth = 0
        self._poll = poll
        self._sleep = sleep
        self._jitter = jitter

    def _descriptor(self) -> int:
        if self._fd is None:
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            try:
                self._fd = os.open(self.lock_file, flags, 0o644)
            except OSError as error:  # SCRATCH removed, full (ENOSPC, EDQUOT), read-only...
                raise FilesystemError.from_oserror(Path(self.lock_file), "open", error) \
                    from error
        return self._fd

    @property
    def is_locked(self) -> bool:
        """True while this object holds the lock."""
        return self._depth > 0

    def acquire(self) -> None:
        """Block until this process holds the lock (or count one more nested hold)."""
        if self._depth == 0:
            fd = self._descriptor()
            try:
                if self._polls():
                    self._poll_for(fd)
                else:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # PEP 475 retries on EINTR
            except OSError as error:  # ENOLCK: an NFS mount without a lock manager (nolock)
                raise FilesystemError.from_oserror(Path(self.lock_file), "lock", error) \
                    from error
        self._depth += 1

    def _polls(self) -> bool:
        if self._poll is None:
            self._poll = mount_type(Path(self.lock_file)) == "nfs4"
        return self._poll

    def _poll_for(self, fd: int) -> None:
        """Take the lock by trying ``LOCK_NB`` until it is free (see the class docstring)."""
        wait = 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                wait = next_poll(wait, self._jitter())
                self._sleep(wait)

    def release(self, force: bool = False) -> None:
        """Undo one :meth:`acquire` (all of them with ``force``); unlock after the last."""
        if self._depth == 0:
            return
        self._depth = 0 if force else self._depth - 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def __enter__(self) -> FlockLock:
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


#: How often a soft lock waiter tries again (seconds).
SOFT_POLL = 0.005


class SoftLock:
    """A lock file made with ``link(2)``, for filesystems where ``flock`` does not work; it
    waits without end, warns on stderr, naming the file, each time it has waited
    ``stall_warning`` seconds, and never removes another holder's lock file.

    Not ``O_CREAT|O_EXCL`` on the lock file (filelock's soft lock, used before): over NFS an
    exclusive create carries a verifier, which the Linux client makes of its ``jiffies`` and
    the caller's PID, and a server may take a create that finds the file existing *with that
    verifier* for a retransmission and report success, so two nodes booted together and
    running the same process tree could both hold the lock. (The NFS lab's server, ganesha
    4.3, answered EEXIST to such a create from the other node in 5 of 5 tries; yet with the
    exclusive create the holder check's "did not keep out another farmer" stopped a farmer in
    2 of 12 kill runs under ``--lock soft``, and in none of 38 soft-lock runs with
    ``link(2)``.) ``link(2)`` of a file of our own to the lock name has no verifier: the
    server refuses it while the name exists. A LINK whose reply was lost and resent reports
    EEXIST although it was made; then our file has two links (the method of open(2)'s manual
    page). A filesystem without hard links gets the exclusive create.
    """

    kind = "soft"

    def __init__(self, lock_file: str, stall_warning: float = STALL_WARNING_SECONDS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.lock_file = lock_file
        self.stall_warning = stall_warning
        self._sleep = sleep
        self._depth = 0

    @property
    def is_locked(self) -> bool:
        """True while this object holds the lock."""
        return self._depth > 0

    def acquire(self) -> None:
        """Wait until this object holds the lock (or count one more nested hold)."""
        if self._depth == 0:
            try:
                self._take()
            except OSError as error:  # SCRATCH full (ENOSPC, EDQUOT), removed, read-only...
                raise FilesystemError.from_oserror(Path(self.lock_file), "create", error) \
                    from error
        self._depth += 1

    def _take(self) -> None:
        record = f"{os.getpid()}\n{socket.gethostname()}\n".encode()
        claim = f"{self.lock_file}.claim.{socket.gethostname()}.{os.getpid()}." \
                f"{os.urandom(4).hex()}"
        fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # a name of our own
        try:
            os.write(fd, record)
        finally:
            os.close(fd)  # (on NFS: written to the server before it is linked)
        try:
            waited, warn_at = 0.0, self.stall_warning
            while not self._link(claim, record):
                self._sleep(SOFT_POLL)
                waited += SOFT_POLL
                if waited >= warn_at:
                    warn_at += self.stall_warning
                    print(f"taskfarmer: waited {waited:.0f} s for the soft lock "
                          f"{self.lock_file}; if no farmer is running on this workdir, remove "
                          "that file", file=sys.stderr)
        finally:
            os.unlink(claim)  # the lock name keeps the file while we hold it

    def _link(self, claim: str, record: bytes) -> bool:
        """One try: True if the lock name is now our claim file."""
        try:
            os.link(claim, self.lock_file)
            return True
        except FileExistsError:
            # Opened, then looked at: on NFS the open revalidates the link count.
            fd = os.open(claim, os.O_RDONLY)
            try:
                return os.fstat(fd).st_nlink == 2
            finally:
                os.close(fd)
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
        try:  # no hard links here: the exclusive create
            fd = os.open(self.lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, record)
        finally:
            os.close(fd)
        return True

    def release(self, force: bool = False) -> None:
        """Undo one :meth:`acquire` (all of them with ``force``); remove the lock file after
        the last."""
        if self._depth == 0:
            return
        self._depth = 0 if force else self._depth - 1
        if self._depth == 0:
            os.unlink(self.lock_file)

    def __enter__(self) -> SoftLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


#: The lock kinds (``--lock``, ``TASKFARMER_LOCK``) and how each is made from a lock file.
_KINDS: dict[str, Callable[[str], WorkdirLock]] = {"flock": FlockLock, "soft": SoftLock}
LOCK_KINDS = tuple(_KINDS)


def open_lock(kind: str, lock_file: str) -> WorkdirLock:
    """A new lock object of ``kind`` on ``lock_file``: the factory :class:`StateStore` calls
    once per process (a lock must not cross ``fork``).

    Raises:
        ConfigError: ``kind`` is unknown.
    """
    try:
        make = _KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown lock kind {kind!r} (choose from {', '.join(LOCK_KINDS)})",
                          option="--lock") from None
    return make(lock_file)


def make_lock(workdir: Path, kind: str, environ: Mapping[str, str]) -> WorkdirLock:
    """Create the lock for ``workdir`` (``kind`` is ``flock`` or ``soft``).

    Raises:
        ConfigError: ``kind`` is unknown, or ``SCRATCH`` is set but not a writable directory.
        FilesystemError: ``SCRATCH`` cannot be looked at.
    """
    check_scratch(environ)
    return open_lock(kind, str(lock_path(workdir, environ)))


@contextmanager
def shared_flock(path: Path | None) -> Iterator[bool]:
    """Hold ``flock`` on an existing lock file if possible; yields whether it is held.

    For readers that change nothing (``--status``): the lock file is never created (an
    absent one means no farmer), and failing to lock is not an error.
    """
    fd = -1
    # Read-write if we may (NFS emulates flock with POSIX locks, whose exclusive kind needs a
    # writable descriptor), else read-only.
    for mode in (os.O_RDWR, os.O_RDONLY):
        if path is None or fd >= 0:
            break
        try:
            fd = os.open(path, mode | getattr(os, "O_NOFOLLOW", 0))
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            if fd >= 0:
                os.close(fd)
            fd = -1
    try:
        yield fd >= 0
    finally:
        if fd >= 0:
            os.close(fd)  # releases the lock
