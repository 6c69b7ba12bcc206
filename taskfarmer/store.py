"""The state of a farm, kept in plain files in the workdir and changed under one lock.

Files (all UTF-8 text, one record per line, every line ends with a newline):

``toprocess``
    ``ID task`` lines: the tasks to run, in order. Tasks are taken from the front by moving a
    cursor; put-back tasks (stop, expired lease, retry) are appended at the end. While farmers
    run, the lines before the cursor are taken; when the last farmer leaves, the file is
    compacted so that at rest it holds exactly the tasks left to do.
``claims``
    ``ID LEASE END`` lines, one per task taken: which lease took it and the byte offset in
    ``toprocess`` just after its line. The last line's ``END`` is the cursor. A line
    ``- compact`` marks a compaction in progress (see :meth:`StateStore._compact`).
``finished`` / ``failed``
    ``ID task`` lines, PyTaskFarmer's format: exit code 0, and anything else.
``attempts``
    ``ID N`` lines: task ID has failed N times so far (``--retries``); the last line of an ID
    counts, ``ID 0`` resets it (``--requeue-failed``).
``leases/NAME``
    One file per live worker: its identity (``key=value`` lines, see
    :mod:`taskfarmer.identity`); its mtime is the heartbeat. A task is running if its last
    claim names a lease whose file exists and it is neither finished, failed nor back in
    ``toprocess``.

Why this is crash-safe (SIGKILL at any instant): every transition is one ``write(2)`` of whole
lines to a file opened ``O_APPEND`` — which a signal cannot tear — or an atomic ``rename(2)``;
the few two-step transitions are ordered so that a crash between the steps leaves a state that
the next lock holder completes (see :meth:`StateStore.revoke`, :meth:`StateStore._compact`).
A short write (disk full) is truncated away before the error is raised. Lines that a crashed
node did leave half-written (no final newline) are moved to ``torn`` by :meth:`repair`.

Why it is O(1) per task: taking a task reads the last line of ``claims`` (the cursor) and a
chunk of ``toprocess`` at the cursor, and appends to ``claims``; recording appends one line.
No whole file is read or rewritten on the hot path; only recovering a dead lease scans files.
"""

from __future__ import annotations

import enum
import errno
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from filelock import BaseFileLock

from .errors import StateError, WorkdirError
from .identity import Identity
from .tasks import Task

#: How much of ``toprocess`` one claim reads at the cursor (grown for longer lines).
CLAIM_READ = 4096
#: Block size of scans and copies.
READ_CHUNK = 64 * 1024
COMPACT_MARK = b"- compact"
DEAD_SUFFIX = ".dead"


class Outcome(enum.Enum):
    """What recording an execution did."""

    FINISHED = "finished"
    FAILED = "failed"
    RETRY = "retry"
    DISCARDED = "discarded"


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


def farmer_name(node: str, pid: int, token: str) -> str:
    """A farmer's name, the prefix of its workers' lease files: readable, unique (``token``),
    safe as a path component whatever the node is called."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", node)[:48] or "node"
    return f"{safe}.{pid}-{token}"


def _append(fd: int, path: Path, data: bytes) -> None:
    """Append whole lines with one ``write(2)``; undo a short write (e.g. disk full).

    The descriptor is ``O_APPEND`` and the caller holds the lock, so the bytes land at the end
    in one piece; a short write is truncated back so no half line is ever left behind.
    """
    before = os.fstat(fd).st_size
    try:
        written = os.write(fd, data)
    except OSError as error:
        os.ftruncate(fd, before)
        raise StateError(path, f"cannot append: {error.strerror}") from None
    if written != len(data):
        os.ftruncate(fd, before)
        raise StateError(path, "short write (filesystem full?)")


_LINE_ID = re.compile(rb"^(\d+) ", re.MULTILINE)


def _copy(source: BinaryIO, out: BinaryIO, start: int, end: int) -> None:
    """Copy bytes ``[start, end)`` of ``source`` to ``out``."""
    source.seek(start)
    remaining = end - start
    while remaining > 0:
        block = source.read(min(remaining, READ_CHUNK * 16))
        if not block:
            break
        out.write(block)
        remaining -= len(block)


def _last_line(fd: int, size: int) -> bytes:
    """The last complete line (without its newline) of a file of ``size`` bytes ending in one."""
    window = 256
    while True:
        start = max(0, size - window)
        tail = os.pread(fd, size - start, start)
        newline = tail.rfind(b"\n", 0, len(tail) - 1)
        if newline >= 0 or start == 0:
            return tail[newline + 1 : -1]
        window *= 4


def _parse_task_line(line: bytes, path: Path, offset: int) -> Task:
    """Parse an ``ID task`` line of toprocess/finished/failed."""
    head, _, text = line.partition(b" ")
    try:
        return Task(int(head), text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        shown = line[:60].decode("utf-8", "replace")
        raise StateError(path, f"malformed line {shown!r} (expected 'ID task')", offset) from None


def _lines(path: Path, start: int = 0, end: Optional[int] = None) -> Iterator[Tuple[int, bytes]]:
    """Yield ``(offset, line)`` for the complete lines of ``path`` in ``[start, end)``."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        handle.seek(start)
        offset = start
        for line in handle:
            if end is not None and offset >= end:
                return
            if not line.endswith(b"\n"):
                return
            yield offset, line[:-1]
            offset += len(line)


class StateStore:
    """The state files of one workdir. Methods marked *locked* need :meth:`locked` held.

    Each process opens its own descriptors (lazily, so a store survives ``fork``).
    """

    def __init__(self, workdir: Path, lock: BaseFileLock) -> None:
        self.workdir = workdir
        self.lock = lock
        self._lock_pid = os.getpid()
        self.toprocess = workdir / "toprocess"
        self.claims = workdir / "claims"
        self.finished = workdir / "finished"
        self.failed = workdir / "failed"
        self.torn = workdir / "torn"
        self.attempts = workdir / "attempts"
        self.failed_requeue = workdir / "failed.requeue"
        self.leases = workdir / "leases"
        self.logs = workdir / "logs"
        self._fds: Dict[Path, Tuple[int, int]] = {}  # path -> (fd, pid that opened it)
        self._toprocess_ino = -1
        self._attempts: Dict[int, int] = {}
        self._attempts_read = 0
        self._held: Set[str] = set()  # leases found alive during the current lock hold

    # -- descriptors -----------------------------------------------------------------------

    def _fd(self, path: Path) -> int:
        entry = self._fds.get(path)
        if entry is not None and entry[1] == os.getpid():
            return entry[0]
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise StateError(path, f"cannot open: {error.strerror}") from None
        self._fds[path] = (fd, os.getpid())
        return fd

    def _forget(self, path: Path) -> None:
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

    def _process_lock(self) -> BaseFileLock:
        """The lock object for this process.

        A lock object must not cross ``fork``: ``flock`` locks belong to the open file
        description, which a child shares with its parent, and filelock 4 refuses inherited
        objects outright. Each worker therefore builds its own, of the same kind and file.
        """
        if self._lock_pid != os.getpid():
            self.lock = type(self.lock)(self.lock.lock_file, timeout=self.lock.timeout)
            self._lock_pid = os.getpid()
        return self.lock

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the workdir lock; every state change happens inside this block."""
        with self._process_lock():
            # toprocess is replaced by rename when compacted: drop a descriptor of the old file.
            try:
                ino = os.stat(self.toprocess).st_ino
            except FileNotFoundError:
                ino = -1
            if ino != self._toprocess_ino:
                self._forget(self.toprocess)
                self._toprocess_ino = ino
            self._held.clear()
            try:
                yield
            finally:
                self._held.clear()

    # -- set-up ----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the workdir and its sub-directories (safe to race with other farmers)."""
        for directory in (self.workdir, self.logs, self.leases):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                reason = f"cannot create directory: {error.strerror}"
                raise WorkdirError(directory, reason) from None
            if not os.access(directory, os.W_OK | os.X_OK):
                raise WorkdirError(directory, "directory is not writable")

    def initialized(self) -> bool:
        """True once ``toprocess`` exists (some farmer has read the tasklist)."""
        return self.toprocess.exists()

    def initialize(self, lines: Iterable[str]) -> bool:
        """*locked* Create ``toprocess`` from the task lines unless it exists already.

        The list is written to ``toprocess.tmp`` and renamed into place: ``rename(2)`` is
        atomic, so other farmers (and a restart after a crash) see either no ``toprocess`` or
        the whole list. Returns True if this call created it.
        """
        if self.toprocess.exists():
            return False
        for path in (self.finished, self.failed, self.claims):
            os.close(self._open_new(path))
        tmp = self.workdir / "toprocess.tmp"
        try:
            with open(tmp, "wb") as out:
                buffer: List[bytes] = []
                for task_id, text in enumerate(lines):
                    buffer.append(b"%d %s\n" % (task_id, text.encode("utf-8")))
                    if len(buffer) >= 4096:
                        out.write(b"".join(buffer))
                        buffer.clear()
                out.write(b"".join(buffer))
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.rename(tmp, self.toprocess)
        return True

    def _open_new(self, path: Path) -> int:
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as error:
            raise WorkdirError(path, f"cannot create: {error.strerror}") from None

    def repair(self) -> List[Tuple[Path, bytes]]:
        """*locked* Move half-written last lines (left by a crashed node) to ``torn``.

        Every writer appends whole lines in one ``write(2)``, so a last line without its
        newline can only come from a crash in the middle of a write (or a hand edit). It is
        cut off and kept, with the file it came from, in ``WORKDIR/torn``. Returns what was cut.
        """
        cut = []
        for path in (self.toprocess, self.claims, self.finished, self.failed, self.attempts,
                     self.failed_requeue):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size == 0:
                continue
            with open(path, "rb+") as handle:
                start = max(0, size - READ_CHUNK)
                handle.seek(start)
                tail = handle.read()
                if tail.endswith(b"\n"):
                    continue
                newline = tail.rfind(b"\n")
                keep = start + newline + 1 if newline >= 0 else 0
                handle.seek(keep)
                fragment = handle.read()
                handle.truncate(keep)
            with open(self.torn, "ab") as torn:
                torn.write(b"%s: %s\n" % (path.name.encode(), fragment))
            cut.append((path, fragment))
        if self.failed_requeue.exists():
            self._finish_requeue_failed()
        return cut

    # -- the cursor ------------------------------------------------------------------------

    def cursor(self) -> int:
        """*locked* Byte offset in ``toprocess`` of the first task not yet taken."""
        fd = self._fd(self.claims)
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        last = _last_line(fd, size)
        if last == COMPACT_MARK:
            self._finish_compaction()
            return 0
        try:
            return int(last.rsplit(b" ", 1)[1])
        except (IndexError, ValueError):
            raise StateError(self.claims, f"malformed last line {last[:60]!r}", size) from None

    def peek_cursor(self) -> Optional[int]:
        """The cursor read without the lock, for displays; None during a compaction."""
        try:
            with open(self.claims, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                last = _last_line(handle.fileno(), size) if size else b"0"
            return int(last.rsplit(b" ", 1)[-1])
        except (OSError, IndexError, ValueError):
            return None

    def pending_count(self, limit: int) -> int:
        """*locked* How many tasks wait in ``toprocess``, counting no further than ``limit``."""
        fd = self._fd(self.toprocess)
        cursor = self.cursor()
        size = os.fstat(fd).st_size
        count = 0
        while cursor < size and count < limit:
            block = os.pread(fd, min(READ_CHUNK, size - cursor), cursor)
            count += block.count(b"\n")
            cursor += len(block)
        return min(count, limit)

    def pending(self) -> bool:
        """*locked* True if some task is waiting in ``toprocess``."""
        return os.fstat(self._fd(self.toprocess)).st_size > self.cursor()

    # -- leases ----------------------------------------------------------------------------

    def register(self, name: str, owner: Identity) -> Lease:
        """*locked* Create the lease file ``attempts``
    ``ID N`` lines: task ID has failed N times so far (``--retries``); the last line of an ID
    counts, ``ID 0`` resets it (``--requeue-failed``).
``leases/NAME`` (``O_EXCL``: names never collide)."""
        path = self.leases / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as error:
            raise StateError(path, f"cannot create lease: {error.strerror}") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(owner.to_text())
        return Lease(name, path)

    def holds(self, lease: Lease) -> bool:
        """*locked* True while nobody has revoked ``lease`` (checked once per lock hold)."""
        if lease.name in self._held:
            return True
        if lease.path.exists():
            self._held.add(lease.name)
            return True
        return False

    def renew(self, name: str) -> bool:
        """Heartbeat: touch lease ``name``. False if it was revoked (the file is gone).

        Needs no lock: a revocation renames the file away first, so a late touch fails.
        """
        try:
            os.utime(self.leases / name)
        except FileNotFoundError:
            return False
        return True

    def release(self, lease: Lease) -> None:
        """*locked* Remove our lease: we hold no tasks any more."""
        self._held.discard(lease.name)
        lease.path.unlink(missing_ok=True)

    def lease_names(self) -> List[str]:
        """The names of the lease files, live or half-revoked (``NAME.dead``): one listing,
        no file read (heartbeats run on parallel filesystems, where each read costs)."""
        try:
            return sorted(os.listdir(self.leases))
        except FileNotFoundError:
            return []

    def lease_infos(self) -> List[LeaseInfo]:
        """Every lease file, live or half-revoked (``.dead``), with heartbeat and owner."""
        infos = []
        for name in self.lease_names():
            path = self.leases / name
            try:
                heartbeat = path.stat().st_mtime
                owner = Identity.from_text(path.read_text(errors="replace"))
            except FileNotFoundError:
                continue
            dead = name.endswith(DEAD_SUFFIX)
            infos.append(LeaseInfo(name[: -len(DEAD_SUFFIX)] if dead else name, heartbeat,
                                   owner, dead))
        return infos

    def any_leases(self) -> bool:
        """*locked* True if any lease file (live or half-revoked) exists."""
        return bool(self.lease_names())

    def revoke(self, name: str) -> List[Task]:
        """*locked* Take over lease ``name``: put its running tasks back into ``toprocess``.

        First the lease file is renamed to ``NAME.dead`` — atomic, and the commit point: from
        then on the owner, if it is in fact alive, can neither record a result nor take a task
        (it checks its file under this lock). Then its tasks are appended to ``toprocess`` and
        the ``.dead`` file is removed. A crash in between leaves the ``.dead`` file, and the
        next revoke finishes the job; it recomputes which tasks are still running, so tasks
        already put back are not put back twice.
        """
        live = self.leases / name
        dead = self.leases / (name + DEAD_SUFFIX)
        self._held.discard(name)
        try:
            os.rename(live, dead)
        except FileNotFoundError:
            if not dead.exists():
                return []
        tasks = self.running_tasks(name)
        if tasks:
            self.requeue(tasks)
        dead.unlink(missing_ok=True)
        return tasks

    def running_tasks(self, name: str) -> List[Task]:
        """*locked* Tasks whose last claim is by lease ``name`` and which are not done/queued.

        Scans ``claims``, ``finished``, ``failed`` and ``toprocess``: O(size of the state), done
        only when recovering a lease, never per task.
        """
        owned: Set[int] = set()
        wanted = name.encode()
        for offset, line in _lines(self.claims):
            if line == COMPACT_MARK:
                continue
            fields = line.split(b" ")
            if len(fields) != 3 or not fields[0].isdigit():
                raise StateError(self.claims, f"malformed line {line[:60]!r}", offset)
            if fields[1] == wanted:
                owned.add(int(fields[0]))
            else:
                owned.discard(int(fields[0]))
        if not owned:
            return []
        for path in (self.finished, self.failed):
            for _, line in _lines(path):
                head = line.partition(b" ")[0]
                if head.isdigit():
                    owned.discard(int(head))
        cursor = self.cursor()
        for _, line in _lines(self.toprocess, start=cursor):
            head = line.partition(b" ")[0]
            if head.isdigit():
                owned.discard(int(head))
        found: Dict[int, Task] = {}
        for offset, line in _lines(self.toprocess, end=cursor):
            head = line.partition(b" ")[0]
            if head.isdigit() and int(head) in owned:
                found[int(head)] = _parse_task_line(line, self.toprocess, offset)
        return [found[task_id] for task_id in sorted(found)]

    # -- taking and recording tasks ---------------------------------------------------------

    def claim(self, lease: Lease, count: int) -> List[Task]:
        """*locked* Take up to ``count`` tasks from the front of ``toprocess`` for ``lease``.

        Raises:
            LeaseRevoked: the lease was taken over; register a new one.
        """
        if not self.holds(lease):
            raise LeaseRevoked(lease.name)
        fd = self._fd(self.toprocess)
        size = os.fstat(fd).st_size
        cursor = self.cursor()
        tasks: List[Task] = []
        records: List[bytes] = []
        name = lease.name.encode()
        chunk = CLAIM_READ
        while cursor < size and len(tasks) < count:
            data = os.pread(fd, min(chunk, size - cursor), cursor)
            start = 0
            while len(tasks) < count:
                end = data.find(b"\n", start)
                if end < 0:
                    break
                task = _parse_task_line(data[start:end], self.toprocess, cursor + start)
                tasks.append(task)
                records.append(b"%d %s %d\n" % (task.id, name, cursor + end + 1))
                start = end + 1
            if start == 0:  # no complete line in the chunk
                if cursor + len(data) >= size:
                    break  # a line still being appended by hand: not a task yet
                chunk = min(chunk * 2, READ_CHUNK * 64)
            cursor += start
        if records:
            _append(self._fd(self.claims), self.claims, b"".join(records))
        return tasks

    def record(self, lease: Lease, task: Task, succeeded: bool, retries: int = 0) -> Outcome:
        """*locked* Record how an execution of ``task`` ended.

        Success goes to ``finished``. A failure goes to ``failed`` once the task has failed
        ``retries + 1`` times; before that, the attempt is counted in ``attempts`` and the task
        goes back to the end of ``toprocess``. Records nothing (``Outcome.DISCARDED``) if
        ``lease`` was revoked meanwhile: then the task is back in ``toprocess`` (or already ran
        again elsewhere) and recording it here would count it twice.
        """
        if not self.holds(lease):
            return Outcome.DISCARDED
        line = b"%d %s\n" % (task.id, task.text.encode("utf-8"))
        if succeeded:
            _append(self._fd(self.finished), self.finished, line)
            return Outcome.FINISHED
        attempt = self.attempt_count(task.id) + 1
        _append(self._fd(self.attempts), self.attempts, b"%d %d\n" % (task.id, attempt))
        self._attempts[task.id] = attempt
        self._attempts_read = os.fstat(self._fd(self.attempts)).st_size
        if attempt <= retries:
            _append(self._fd(self.toprocess), self.toprocess, line)
            return Outcome.RETRY
        _append(self._fd(self.failed), self.failed, line)
        return Outcome.FAILED

    def attempt_count(self, task_id: int) -> int:
        """*locked* How many times ``task_id`` has failed (reads only new ``attempts`` lines)."""
        fd = self._fd(self.attempts)
        size = os.fstat(fd).st_size
        if size < self._attempts_read:  # replaced: read again from the start
            self._attempts.clear()
            self._attempts_read = 0
        if size > self._attempts_read:
            data = os.pread(fd, size - self._attempts_read, self._attempts_read)
            complete = data[: data.rfind(b"\n") + 1]
            for line in complete.splitlines():
                head, _, count = line.partition(b" ")
                if head.isdigit() and count.isdigit():
                    self._attempts[int(head)] = int(count)
            self._attempts_read += len(complete)
        return self._attempts.get(task_id, 0)

    def requeue_failed(self) -> int:
        """*locked* Put every ``failed`` task back into ``toprocess`` with fresh retries.

        (1) ``failed`` is renamed to ``failed.requeue`` — atomic, the commit point; (2) an empty
        ``failed`` is created; (3) the tasks are appended to ``toprocess`` and their attempt
        counts reset; (4) ``failed.requeue`` is removed. After a crash, :meth:`repair` finds
        ``failed.requeue`` and redoes (2)-(4), skipping tasks already back in ``toprocess``.
        Returns the number of tasks put back.
        """
        if not self.failed.exists():
            return 0
        os.rename(self.failed, self.failed_requeue)
        return self._finish_requeue_failed()

    def _finish_requeue_failed(self) -> int:
        self._forget(self.failed)  # ours, if any, is open on failed.requeue now
        os.close(self._open_new(self.failed))
        pending: Set[int] = set()
        for _, line in _lines(self.toprocess, start=self.cursor()):
            head = line.partition(b" ")[0]
            if head.isdigit():
                pending.add(int(head))
        tasks = [_parse_task_line(line, self.failed_requeue, offset)
                 for offset, line in _lines(self.failed_requeue)]
        tasks = [task for task in tasks if task.id not in pending]
        self.requeue(tasks)
        resets = b"".join(b"%d 0\n" % task.id for task in tasks)
        if resets:
            _append(self._fd(self.attempts), self.attempts, resets)
        self.failed_requeue.unlink()
        return len(tasks)

    def requeue(self, tasks: Iterable[Task]) -> None:
        """*locked* Append tasks to ``toprocess`` to be taken again."""
        data = b"".join(b"%d %s\n" % (t.id, t.text.encode("utf-8")) for t in tasks)
        if data:
            _append(self._fd(self.toprocess), self.toprocess, data)

    # -- at rest ---------------------------------------------------------------------------

    def tidy(self) -> bool:
        """*locked* Compact ``toprocess`` when no lease is left. Returns True if it did.

        With no lease file no task is running, so the claims carry no information beyond the
        cursor, and ``toprocess`` can be cut down to the tasks after it.
        """
        if self.any_leases() or os.fstat(self._fd(self.claims)).st_size == 0:
            return False
        self._compact()
        return True

    def _compact(self) -> None:
        """Replace ``toprocess`` by its untaken tail, in task-ID order, and empty ``claims``.

        Put-back tasks were appended at the end; sorting them back among the others restores
        the tasklist's order (users put long tasks first). The untaken part is a sorted run
        followed by an appended tail: only the tail is sorted in memory, and it is merged into
        the run by binary search and byte copies, so compacting a million lines takes a
        fraction of a second (it runs when a farmer stops).

        Two files change, so the order matters: (1) write ``toprocess.new`` and fsync it;
        (2) append ``- compact`` to ``claims`` — the commit point; (3) rename ``toprocess.new``
        over ``toprocess`` (atomic); (4) truncate ``claims``. A crash before (2) leaves an
        unused ``toprocess.new``; after it, whoever reads the cursor next sees the mark and
        finishes (3) and (4) (:meth:`_finish_compaction`).
        """
        cursor = self.cursor()
        size = self.toprocess.stat().st_size
        run_end = self._sorted_run_end(cursor, size)
        tail = sorted((_parse_task_line(line, self.toprocess, offset).id, line)
                      for offset, line in _lines(self.toprocess, start=run_end))
        new = self.workdir / "toprocess.new"
        with open(self.toprocess, "rb") as source, open(new, "wb") as out:
            position = cursor
            for task_id, line in tail:
                insert = self._insertion_point(source, position, run_end, task_id)
                _copy(source, out, position, insert)
                out.write(line + b"\n")
                position = insert
            _copy(source, out, position, run_end)
            out.flush()
            os.fsync(out.fileno())
        _append(self._fd(self.claims), self.claims, COMPACT_MARK + b"\n")
        self._finish_compaction()

    def _sorted_run_end(self, start: int, size: int) -> int:
        """End of the run of lines from ``start`` whose IDs strictly increase."""
        previous = -1
        offset = start
        with open(self.toprocess, "rb") as source:
            source.seek(start)
            carry = b""
            while offset < size:
                block = carry + source.read(min(READ_CHUNK * 16, size - offset - len(carry)))
                cut = block.rfind(b"\n") + 1
                if cut == 0:
                    return size  # no complete line left
                lines, carry = block[:cut], block[cut:]
                found = [int(x) for x in _LINE_ID.findall(lines)]
                if (len(found) != lines.count(b"\n") or (found and found[0] <= previous)
                        or found != sorted(set(found))):
                    return offset + self._first_disorder(lines, previous)
                if found:
                    previous = found[-1]
                offset += cut
        return offset

    @staticmethod
    def _first_disorder(lines: bytes, previous: int) -> int:
        """Offset in ``lines`` of the first line that is malformed or not above ``previous``."""
        position = 0
        for line in lines.split(b"\n")[:-1]:
            head = line.partition(b" ")[0]
            if not head.isdigit() or int(head) <= previous:
                return position
            previous = int(head)
            position += len(line) + 1
        return position

    @staticmethod
    def _insertion_point(source: BinaryIO, low: int, high: int, task_id: int) -> int:
        """Byte offset of the first line in ``[low, high)`` (a sorted run) with ID > task_id."""
        while low < high:
            middle = (low + high) // 2
            source.seek(middle)
            if middle > low:
                source.readline()  # to the start of the next line
            line_start = source.tell()
            if line_start >= high:
                high = middle
                continue
            head = source.readline().partition(b" ")[0]
            if int(head) > task_id:
                high = line_start
            else:
                low = source.tell()
        return low

    def _finish_compaction(self) -> None:
        new = self.workdir / "toprocess.new"
        try:
            os.rename(new, self.toprocess)
        except OSError as error:
            if error.errno != errno.ENOENT:
                raise
        self._forget(self.toprocess)
        os.truncate(self.claims, 0)


class LineCounter:
    """Counts the lines of a file that only grows (or is emptied), reading only new bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.count = 0

    def update(self, end: Optional[int] = None) -> int:
        """Count complete lines up to ``end`` (default: the end of the file)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        limit = size if end is None else min(end, size)
        if limit < self.offset:  # compacted or truncated: start over
            self.offset = 0
            self.count = 0
        if limit > self.offset:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                remaining = limit - self.offset
                while remaining > 0:
                    block = handle.read(min(remaining, 1 << 20))
                    if not block:
                        break
                    remaining -= len(block)
                    self.count += block.count(b"\n")
                    self.offset += len(block)
        return self.count


@dataclass(frozen=True)
class Counts:
    """Numbers of tasks per state, as far as a look without the lock can tell."""

    pending: int
    finished: int
    failed: int


class StateCounter:
    """Incremental counts of pending/finished/failed tasks for progress displays (no lock)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._toprocess = LineCounter(store.toprocess)
        self._taken = LineCounter(store.toprocess)
        self._finished = LineCounter(store.finished)
        self._failed = LineCounter(store.failed)

    def counts(self) -> Counts:
        """Current counts; ``pending`` counts the lines of ``toprocess`` after the cursor."""
        cursor = self.store.peek_cursor()
        total = self._toprocess.update()
        taken = self._taken.update(cursor) if cursor is not None else self._taken.count
        return Counts(max(0, total - taken), self._finished.update(), self._failed.update())
