"""Where a farm stands, read from its workdir without changing it (``farmer --status``).

Safe at any time from any node that sees the workdir. Nothing is written. The only lock taken
is the ``flock`` lock, shared, for as long as a few ``fstat`` calls and the read of the last
line of ``claims`` take (less than one claim holds it): that fixes the sizes of the state files
and the cursor, so the counts add up. Everything after reads those files *up to the sizes
seen*: they only grow (appends), and a compaction replaces ``toprocess`` by ``rename(2)``, so
descriptors opened under the lock keep reading the snapshot. Without a usable lock (a soft
lock, a lock file this node cannot open) the snapshot is taken without it and the counts can
be off by the few tasks that moved meanwhile.

What it reads, so that a 1,000,000-task workdir answers in well under 2 s:

* the counts: newlines of ``finished`` and ``failed``, and of ``toprocess`` after the cursor
  (``bytes.count`` over the files, no parsing);
* the number of running tasks: the tasks imported (``imported``, see
  :mod:`taskfarmer.store.listimport`) less the finished, failed and pending ones — exact; it
  includes tasks that ended less than a moment ago and wait to be recorded (workers record a
  result 0.1 s after it ends);
* the running tasks listed: for each live lease, its last line in ``claims``, found by
  searching backwards (a worker runs one task at a time); the task's line is the
  ``toprocess`` line ending at the claim's offset. It is not running if it was recorded or put
  back since: looked up in the last :data:`RECENT` bytes of ``finished``, ``failed`` and
  ``toprocess`` (a worker that recorded its last claim leaves within a lock hold or two, so
  the record is recent);
* the age of a running task: it started when its worker slot's previous execution ended (the
  job log, searched backwards) or when its lease was registered (``since`` in the lease file),
  whichever is later;
* the rate: the job log lines of the last :data:`RATE_WINDOW` seconds, found by a binary
  search on their times (lines are appended in about the order executions end);
* the failed tasks: the last lines of ``failed``, their exit codes in the job log's tail,
  ``attempts``, and the last line of each log.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import ExitCode, WorkdirError
from ..logs.joblog import FINAL, Entry, read_backward, recent_executions
from ..store import DEAD_SUFFIX, Imported, LeaseInfo, StateStore

#: Seconds of job log the rate is computed over.
RATE_WINDOW = 300.0
#: Bytes at the end of ``finished``/``failed``/``toprocess`` where a recent record is looked for.
RECENT = 1 << 20
#: Bytes of the job log searched backwards for a slot's previous execution or an exit code.
JOBLOG_SEARCH = 16 << 20
#: Block size of the counting reads.
BLOCK = 1 << 20


@dataclass(frozen=True)
class FarmerRow:
    """A live farmer, as its lease files and the job log show it."""

    farmer: str
    node: str
    pid: int
    workers: int
    heartbeat_age: float
    recent: int  # executions it recorded within the rate window
    rate: float | None  # per second, over the rate window


@dataclass(frozen=True)
class LeaseRow:
    """A lease that has missed its renewals: it is or will be taken over."""

    name: str
    node: str
    heartbeat_age: float
    takeover_in: float  # seconds; <= 0: expired, the next farmer to look takes it over
    dead: bool  # half taken over already (``NAME.dead``)


@dataclass(frozen=True)
class RunningTask:
    """A task some lease holds."""

    id: int
    node: str
    farmer: str
    age: float | None
    line: str


@dataclass(frozen=True)
class FailedTask:
    """A task recorded in ``failed``."""

    id: int
    exit: int | None
    signal: int | None
    attempts: int
    log: str
    last_line: str
    line: str


@dataclass(frozen=True)
class Status:
    """Everything ``--status`` shows."""

    workdir: str
    finished: int
    failed: int
    running: int
    pending: int
    total: int
    percent: float
    rate: float | None  # tasks/s over the rate window, all farmers
    eta: float | None  # seconds
    farmers: list[FarmerRow] = field(default_factory=list)
    stale_leases: list[LeaseRow] = field(default_factory=list)
    running_tasks: list[RunningTask] = field(default_factory=list)
    running_more: int = 0
    failed_tasks: list[FailedTask] = field(default_factory=list)
    failed_more: int = 0
    consistent: bool = True  # read under the lock
    now: float = 0.0
    unimported: int = 0  # complete lines appended to TASKLIST, not imported yet

    @property
    def done(self) -> bool:
        """Nothing pending, running or appended to the list (no lease left either)."""
        return self.pending == 0 and self.running == 0 and not self.farmers \
            and not self.stale_leases and self.unimported == 0

    @property
    def exit_code(self) -> ExitCode:
        """0 done without failures, 1 done with failures, 3 work left."""
        if not self.done:
            return ExitCode.STOPPED
        return ExitCode.FAILED if self.failed else ExitCode.OK


@dataclass
class _Snapshot:
    """Open descriptors and sizes fixed under the lock."""

    files: dict[str, tuple[BinaryIO, int]]
    cursor: int
    leases: list[str]
    imported: Imported | None


@contextmanager
def _shared_flock(path: Path | None) -> Iterator[bool]:
    """Hold ``flock`` on an existing lock file if possible; yields whether it is held."""
    fd = -1
    # Read-write if we may (NFS emulates flock with POSIX locks, whose exclusive kind needs a
    # writable descriptor), else read-only; never created: an absent lock file means no farmer.
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


def _count_lines(handle: BinaryIO, start: int, end: int) -> int:
    count = 0
    position = start
    while position < end:
        block = os.pread(handle.fileno(), min(BLOCK, end - position), position)
        if not block:
            break
        count += block.count(b"\n")
        position += len(block)
    return count


def _tail(handle: BinaryIO, start: int, end: int, size: int = RECENT) -> bytes:
    """Bytes of ``[max(start, end - size), end)`` from the start of a line (newline first)."""
    begin = max(start, end - size)
    data = os.pread(handle.fileno(), end - begin, begin)
    if begin > start:
        data = data[data.find(b"\n"):]  # keep the newline: every line follows one
    return b"\n" + data if begin == start else data


def _line_ending_at(handle: BinaryIO, end: int) -> str:
    """The line of ``toprocess`` that ends (newline included) at byte ``end``, without its ID."""
    start = max(0, end - 4096)
    data = os.pread(handle.fileno(), end - start, start)[:-1]
    line = data[data.rfind(b"\n") + 1:]
    return line.partition(b" ")[2].decode("utf-8", "replace")


class StatusReader:
    """Reads a :class:`Status` of one workdir (see the module docstring for what it reads)."""

    def __init__(self, store: StateStore, lock_file: Path | None, lease: float,
                 limit: int = 10, tasklist: Path | None = None) -> None:
        self.store = store
        self.tasklist = tasklist
        self.lock_file = lock_file
        self.lease = lease
        self.limit = limit
        self.joblog = store.workdir / "joblog"

    def read(self, now: float) -> Status:
        """The status at ``now`` (epoch seconds).

        Raises:
            WorkdirError: no workdir, or no farmer has read a tasklist into it yet.
        """
        if not self.store.toprocess.exists():
            if not self.store.workdir.is_dir():
                raise WorkdirError(self.store.workdir, "no such workdir")
            raise WorkdirError(self.store.workdir, "no toprocess: no farmer has started here")
        with _shared_flock(self.lock_file) as consistent:
            snapshot = self._snapshot()
        try:
            return self._read(snapshot, now, consistent)
        finally:
            for handle, _ in snapshot.files.values():
                handle.close()

    def _snapshot(self) -> _Snapshot:
        files = {}
        store = self.store
        for name, path in (("toprocess", store.toprocess), ("finished", store.finished),
                           ("failed", store.failed), ("claims", store.claims)):
            try:
                handle = open(path, "rb")
            except FileNotFoundError:
                continue
            files[name] = (handle, os.fstat(handle.fileno()).st_size)
        cursor = store.peek_cursor()
        if cursor is None:  # a compaction was left half done: its new list counts
            new = store.workdir / "toprocess.new"
            if new.exists():
                files["toprocess"][0].close()
                handle = open(new, "rb")
                files["toprocess"] = (handle, os.fstat(handle.fileno()).st_size)
            files.pop("claims", None)
            cursor = 0
        return _Snapshot(files, min(cursor, files["toprocess"][1]), store.lease_names(),
                         store.imported())

    def _read(self, snapshot: _Snapshot, now: float, consistent: bool) -> Status:
        files = snapshot.files
        counts = {}
        for name in ("finished", "failed"):
            handle, size = files.get(name, (None, 0))
            counts[name] = _count_lines(handle, 0, size) if handle else 0
        toprocess, size = files["toprocess"]
        pending = _count_lines(toprocess, snapshot.cursor, size)

        infos = [info for info in self.store.lease_infos()
                 if info.name in snapshot.leases
                 or info.name + DEAD_SUFFIX in snapshot.leases]
        running = self._running(snapshot, infos, now)
        # The tasks imported so far are the total: those neither recorded nor pending are
        # taken (running, or ended and about to be recorded). Without the import record (a
        # workdir of PyTaskFarmer's) the running tasks are those the leases show.
        imported = snapshot.imported
        done = counts["finished"] + counts["failed"]
        if imported is not None and imported.tasks > 0:
            total = max(imported.tasks, done + pending)
        else:
            total = done + len(running) + pending
        taken = total - done - pending
        recent = recent_executions(self.joblog, now, RATE_WINDOW)
        rate = recent.done / recent.span if recent.span > 0 else None
        farmers = self._farmers(infos, recent.per_farmer, recent.span, now)
        left = pending + taken
        running.sort(key=lambda task: -(task.age or 0.0))
        failed = self._failed(files.get("failed"), counts["failed"])
        return Status(
            workdir=str(self.store.workdir),
            finished=counts["finished"], failed=counts["failed"], running=taken,
            pending=pending, total=total,
            percent=100.0 * (total - left) / total if total else 100.0,
            rate=rate, eta=left / rate if rate and left else None,
            farmers=farmers, stale_leases=self._stale(infos, now),
            running_tasks=running[: self.limit],
            running_more=max(0, taken - min(len(running), self.limit)),
            failed_tasks=failed, failed_more=max(0, counts["failed"] - len(failed)),
            consistent=consistent, now=now, unimported=self._unimported(imported))

    def _unimported(self, imported: Imported | None) -> int:
        """Complete lines of TASKLIST after its imported part (reads only those)."""
        if self.tasklist is None or imported is None or imported.fixed:
            return 0
        try:
            with open(self.tasklist, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                return _count_lines(handle, min(imported.bytes, size), size)
        except OSError:
            return 0

    # -- running tasks -----------------------------------------------------------------------

    def _last_claims(self, snapshot: _Snapshot, names: list[str]) -> dict[str, tuple[int, int]]:
        """``lease -> (task ID, END)`` of each lease's last line in ``claims``."""
        found: dict[str, tuple[int, int]] = {}
        if "claims" not in snapshot.files or not names:
            return found
        handle, position = snapshot.files["claims"]
        wanted = {name.encode() for name in names}
        pattern = re.compile(rb"(?m)^(\d+) (%s) (\d+)$" % b"|".join(
            re.escape(name) for name in sorted(wanted, key=len, reverse=True)))
        carry = b""
        while position > 0 and len(found) < len(wanted):
            start = max(0, position - BLOCK)
            block = os.pread(handle.fileno(), position - start, start) + carry
            position = start
            if start > 0:
                first = block.find(b"\n") + 1
                carry, block = block[:first], block[first:]
            for match in reversed(list(pattern.finditer(block))):
                name = match.group(2).decode()
                if name not in found:
                    found[name] = (int(match.group(1)), int(match.group(3)))
        return found

    def _running(self, snapshot: _Snapshot, infos: list[LeaseInfo], now: float
                 ) -> list[RunningTask]:
        claims = self._last_claims(snapshot, [info.name for info in infos])
        if not claims:
            return []
        recent = b"".join(
            _tail(handle, snapshot.cursor if name == "toprocess" else 0, size)
            for name, (handle, size) in snapshot.files.items() if name != "claims")
        toprocess = snapshot.files["toprocess"][0]
        by_name = {info.name: info for info in infos}
        tasks = []
        starts = self._slot_starts(
            {name: by_name[name] for name in claims})
        for name, (task_id, end) in claims.items():
            if b"\n%d " % task_id in recent:
                continue  # recorded, or put back, since
            info = by_name[name]
            start = starts.get(name)
            tasks.append(RunningTask(
                task_id, info.owner.node, info.owner.extra.get("farmer", ""),
                now - start if start is not None else None, _line_ending_at(toprocess, end)))
        return tasks

    def _slot_starts(self, leases: dict[str, LeaseInfo]) -> dict[str, float]:
        """When each lease's current task started: its slot's last job log line, or the lease's
        registration, whichever is later."""
        starts: dict[str, float] = {}
        wanted: dict[tuple[str, int], str] = {}
        for name, info in leases.items():
            try:
                starts[name] = float(info.owner.extra["since"])
            except (KeyError, ValueError):
                pass
            try:
                wanted[(info.owner.extra["farmer"], int(info.owner.extra["worker"]))] = name
            except (KeyError, ValueError):
                continue
        oldest = min(starts.values(), default=0.0)
        for entry in read_backward(self.joblog, JOBLOG_SEARCH):
            if not wanted or entry.end < oldest:
                break
            name = wanted.pop((entry.farmer, entry.slot), None)
            if name is not None:
                starts[name] = max(starts.get(name, 0.0), entry.end)
        return starts

    # -- rates -------------------------------------------------------------------------------

    def _farmers(self, infos: list[LeaseInfo], recent: dict[str, int], span: float,
                 now: float) -> list[FarmerRow]:
        groups: dict[str, list[LeaseInfo]] = {}
        for info in infos:
            if not info.dead:
                groups.setdefault(info.owner.extra.get("farmer", info.name), []).append(info)
        rows = []
        for farmer, leases in sorted(groups.items()):
            owner = leases[0].owner
            count = recent.get(farmer, 0)
            pid = farmer.rsplit(".", 1)[-1].split("-", 1)[0]
            rows.append(FarmerRow(
                farmer, owner.node, int(pid) if pid.isdigit() else owner.pid, len(leases),
                now - max(info.heartbeat for info in leases), count,
                count / span if count and span > 0 else None))
        return rows

    def _stale(self, infos: list[LeaseInfo], now: float) -> list[LeaseRow]:
        """Leases that missed two renewals (a farmer renews every ``min(lease/4, 30)`` s)."""
        period = min(self.lease / 4, 30.0)
        return [LeaseRow(info.name, info.owner.node, now - info.heartbeat,
                         info.heartbeat + self.lease - now, info.dead)
                for info in infos if info.dead or now - info.heartbeat > 2 * period]

    # -- failed tasks ------------------------------------------------------------------------

    def _failed(self, failed: tuple[BinaryIO, int] | None, count: int) -> list[FailedTask]:
        if failed is None or count == 0:
            return []
        handle, size = failed
        lines = _tail(handle, 0, size, 64 * 1024).split(b"\n")[1:-1][-self.limit:]
        tasks = []
        for raw in reversed(lines):
            head, _, text = raw.partition(b" ")
            if head.isdigit():
                tasks.append((int(head), text.decode("utf-8", "replace")))
        attempts = self._attempts({task_id for task_id, _ in tasks})
        exits: dict[int, Entry] = {}
        for entry in read_backward(self.joblog, JOBLOG_SEARCH):
            if entry.id in attempts and entry.id not in exits and entry.outcome in FINAL:
                exits[entry.id] = entry
                if len(exits) == len(tasks):
                    break
        result = []
        for task_id, text in tasks:
            entry = exits.get(task_id)
            log = self.store.logs / f"log_{task_id}"
            result.append(FailedTask(task_id, entry.exit if entry else None,
                                     entry.signal if entry else None, attempts[task_id],
                                     str(log), _last_log_line(log), text))
        return result

    def _attempts(self, ids: set[int]) -> dict[int, int]:
        """Failed attempts of ``ids`` (the last ``attempts`` line of each counts)."""
        counts = dict.fromkeys(ids, 1)
        try:
            with open(self.store.attempts, "rb") as handle:
                for line in handle:
                    head, _, number = line.strip().partition(b" ")
                    if head.isdigit() and number.isdigit() and int(head) in counts:
                        counts[int(head)] = max(1, int(number))
        except FileNotFoundError:
            pass
        return counts


def _last_log_line(path: Path) -> str:
    """The last non-empty line of a task's log ('' if none)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = os.pread(handle.fileno(), min(size, 4096), max(0, size - 4096))
    except OSError:
        return ""
    lines = [line for line in data.splitlines() if line.strip()]
    return lines[-1].decode("utf-8", "replace")[:200] if lines else ""
