"""Noticing a lock that does not exclude, before it does harm.

A lock can fail to exclude without any error: farmers of one workdir with different
``SCRATCH`` lock different files; an NFS mount with ``nolock`` or Lustre with ``localflock``
keeps locks local to each node. Then two farmers change the state at once and tasks run and are
recorded twice. So every lock holder says so in ``WORKDIR/holder``, one line::

    open HOST:PID:NONCE SEQ LOCKFILE     (while it holds the lock)
    closed HOST:PID:NONCE SEQ LOCKFILE   (after)

On taking the lock, a farmer reads the line. ``closed`` (or nothing): all is well; it writes
its own ``open`` line and goes on. ``open`` by another process: either that one was killed in
the middle of a hold (a lock that works let us in after its death) or it is inside right now
(the lock did not exclude); we watch the line for :data:`CRASH_WAIT` seconds, and if it changes,
someone was in: :class:`~taskfarmer.errors.LockError`, before we changed anything. On leaving,
the holder reads the line again: if it is not its own ``open`` line, another farmer came in
during the hold (in the instant between our reading and writing the line at the start, or
without looking): :class:`~taskfarmer.errors.LockError` again. Either way one of two
overlapping holders notices, nearly always the second one on arrival, before any harm.

From then on the farmer — every process of it, they share one flag — takes the lock no more
and writes no state file: under a lock that does not exclude any write could collide with
another farmer's (on NFS, two clients' appends overwrite each other). It does one thing on its
way out, once its workers and their tasks are gone: it renames its lease files to
``NAME.dead`` (:meth:`~.leases.Leases.abandon`). That is the commit point of a takeover
(:meth:`~.leases.Leases.revoke`): one atomic ``rename(2)`` — a single RENAME on the NFS server,
no file content, nothing cached to write back — that no lock holder can be harmed by, and the
next farmer whose lock does hold finishes the takeover under it at once (a ``.dead`` lease is
expired by definition) instead of waiting ``--lease`` seconds for the heartbeat to age.

The error names our lock file and the other's: different files mean different ``SCRATCH``,
the same file a filesystem whose locks are local. Cost: two reads and two writes of one short
line per lock hold (in the coherent mode, with an open and a close around each read-write pair).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import socket
import time
from typing import Callable

from ..errors import LockError, operation
from .files import StateFiles

#: How long a leftover ``open`` line of another process is watched before it counts as the
#: trace of a holder that was killed (a hold takes milliseconds; a change means two holders).
CRASH_WAIT = 1.0
#: How often it is looked at meanwhile.
CRASH_POLL = 0.02


class ExclusionCheck:
    """Writes and checks this process's line in ``WORKDIR/holder`` around each lock hold."""

    def __init__(self, files: StateFiles, lock_file: str,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 hostname: Callable[[], str] = socket.gethostname) -> None:
        self.files = files
        self.path = files.holder
        self.lock_file = lock_file
        self.monotonic = monotonic
        self.sleep = sleep
        self._pid = -1
        self._fd = -1
        self._me = b""
        self._seq = 0
        self._line = b""
        self.hostname = hostname
        # The holder line that showed the lock does not exclude; shared with forked workers.
        self._seen = multiprocessing.RawArray(ctypes.c_char, 1024)
        # Lock holds of this farmer (all its processes) and how many of them took the lock
        # over from another node: changed only inside a hold, so never by two at once.
        self._counts = multiprocessing.RawArray(ctypes.c_longlong, 2)

    # -- the file: kept open in the fast mode, opened per use in the coherent mode ----------

    def _open(self) -> int:
        if self._pid != os.getpid():  # first use in this process (or after fork)
            self._pid = os.getpid()
            self._fd = -1
            self._me = f"{self.hostname()}:{self._pid}:{os.urandom(3).hex()}".encode()
        if self._fd < 0:
            # Not O_APPEND: the line is rewritten in place at offset 0.
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    def close(self) -> None:
        """Close this process's descriptor of ``holder`` (fast mode keeps one)."""
        if self._pid == os.getpid() and self._fd >= 0:
            os.close(self._fd)
        self._fd = -1

    def _done(self) -> None:
        if self.files.coherent and self._fd >= 0:  # close-to-open, as for every state file
            os.close(self._fd)
            self._fd = -1

    @operation("read", lambda self, *_, **__: self.path)
    def _read(self, keep: bool = False) -> bytes:
        """The line; ``keep``: leave the file open for the :meth:`_write` that follows (one
        open and close per check instead of two: on NFS each is a round trip under the lock)."""
        line = os.pread(self._open(), 4096, 0).partition(b"\n")[0]
        if not keep:
            self._done()
        return line

    @operation("write", lambda self, *_: self.path)
    def _write(self, line: bytes) -> None:
        os.pwrite(self._open(), line + b"\n", 0)  # a shorter line leaves bytes after the \n
        self._done()

    @property
    def holds(self) -> tuple[int, int]:
        """(lock holds, hand-overs from another node) of this farmer so far."""
        return int(self._counts[0]), int(self._counts[1])

    @property
    def failed(self) -> bool:
        """True once this farmer (any of its processes) saw the lock fail to exclude."""
        return bool(self._seen.value)

    # -- around a lock hold -----------------------------------------------------------------

    def begin(self) -> None:
        """*locked* Check that nobody else is inside, then say that we are."""
        if self._seen.value:
            raise _error(self.lock_file, self._seen.value)
        line = self._read(keep=True)
        state, who, _ = _fields(line)
        self._counts[0] += 1
        if who and _host(who) != _host(self._me):
            self._counts[1] += 1  # the last holder was on another node
        if state == b"open" and who != self._me:
            self._done()  # each look below opens the file anew: the server's line
            deadline = self.monotonic() + CRASH_WAIT
            while self.monotonic() < deadline:
                self.sleep(CRASH_POLL)
                if self._read() != line:
                    raise self._detected(line)
        self._seq += 1
        self._line = b"%s %d %s" % (self._me, self._seq, os.fsencode(self.lock_file))
        self._write(b"open " + self._line)

    def end(self) -> None:
        """*locked* Check that nobody came in during our hold, then say that we left."""
        line = self._read(keep=True)
        if line != b"open " + self._line:
            self._done()
            raise self._detected(line)
        self._write(b"closed " + self._line)

    def _detected(self, line: bytes) -> LockError:
        """Remember (for every process of this farmer) that the lock does not exclude."""
        self._seen.value = line.replace(b"\0", b"?")[:1000] or b"?"
        return _error(self.lock_file, line)


def _fields(line: bytes) -> tuple[bytes, bytes, bytes]:
    """(state, HOST:PID:NONCE, lock file) of a ``holder`` line."""
    state, _, rest = line.partition(b" ")
    who, _, rest = rest.partition(b" ")
    return state, who, rest.partition(b" ")[2]


def _host(who: bytes) -> bytes:
    """The host of ``HOST:PID:NONCE``."""
    return who.rsplit(b":", 2)[0]


def _error(lock_file: str, line: bytes) -> LockError:
    _, who, other_lock = _fields(line)
    host_pid = who.rsplit(b":", 1)[0].decode(errors="replace") or "unknown"
    return LockError(lock_file, host_pid, os.fsdecode(other_lock))
