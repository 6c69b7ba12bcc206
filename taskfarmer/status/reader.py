"""Where a farm stands, read from its workdir without changing it (``farmer --status``).

Safe at any time from any node that sees the workdir. Nothing is written. The state files are
read through a :class:`~taskfarmer.store.Snapshot` (sizes and cursor fixed under the lock for
a moment, so the counts add up). On top of it:

* the number of tasks taken: the tasks imported (``imported``, see
  :mod:`taskfarmer.store.listimport`) less the finished, failed and pending ones — exact;
* the running tasks: for each live lease, the first task of its last claim (a worker
  claims a chunk of short tasks at once and runs them in order) that was not recorded or put
  back since (:meth:`~taskfarmer.store.Snapshot.settled_recently`), so at most one per worker;
  the other tasks taken are *claimed*: the rest of a chunk, or ended a moment ago and about to
  be recorded (a worker records its results in batches, within about a second of their end);
  the task's line is the ``toprocess`` line ending at the claim's offset;
* the age of a running task: it started when its worker slot's previous execution ended (the
  job log, searched backwards) or when its lease was registered (``since`` in the lease file),
  whichever is later;
* the rate: the job log lines of the last :data:`RATE_WINDOW` seconds, found by a binary
  search on their times (lines are appended in about the order executions end); an ETA only
  while a farmer's heartbeat is live;
* the failed tasks: the last lines of ``failed``, their exit codes in the job log's tail,
  ``attempts``, and the last line of each log (:func:`~taskfarmer.logs.reading.task_pieces`:
  whatever ``--logs`` wrote it);
* the quarantined nodes: the records in ``quarantine/`` (:mod:`taskfarmer.store.quarantine`);
* the metadata cost: the files the workdir holds, and those in ``logs/`` per finished or
  failed task (``--logs packed``: near 0; ``flat``: 1). Counted by listing every directory
  (``os.scandir``, no ``stat`` per file): a second or so per million files on a local disk;
  and the state-file opens per recorded result, from the counts each farmer in the coherent
  mode (NFS and the like) leaves in ``farmers/`` (:mod:`taskfarmer.store.opencount`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..logs.joblog import FINAL, Entry, read_backward, recent_executions
from ..logs.reading import Piece, task_pieces
from ..store import (
    LeaseInfo,
    Snapshot,
    StateStore,
    farmer_pid,
    heartbeat_period,
    opens_per_result,
    read_halt,
    read_records,
    unimported_lines,
)
from .model import FailedTask, FarmerRow, LeaseRow, QuarantinedNode, RunningTask, Status

#: Seconds of job log the rate is computed over.
RATE_WINDOW = 300.0
#: Bytes of the job log searched backwards for a slot's previous execution or an exit code.
JOBLOG_SEARCH = 16 << 20


class StatusReader:
    """Reads a :class:`Status` of one workdir (see the module docstring for what it reads)."""

    def __init__(self, store: StateStore, lock_file: Path | None, lease: float,
                 limit: int = 10, tasklist: Path | None = None) -> None:
        self.store = store
        self.tasklist = tasklist
        self.lock_file = lock_file
        self.lease = lease
        self.limit = limit
        self.joblog = store.files.joblog

    def read(self, now: float) -> Status:
        """The status at ``now`` (epoch seconds).

        Raises:
            WorkdirError: no workdir, or no farmer has read a tasklist into it yet.
        """
        with Snapshot.take(self.store, self.lock_file) as snapshot:
            return self._read(snapshot, now)

    def _read(self, snapshot: Snapshot, now: float) -> Status:
        finished, failed = snapshot.count("finished"), snapshot.count("failed")
        pending = snapshot.pending()
        infos = snapshot.lease_infos()
        running, claimed = self._running(snapshot, infos, now)
        # The tasks imported so far are the total: those neither recorded nor pending are
        # taken (running, or ended and about to be recorded). Without the import record (a
        # workdir of PyTaskFarmer's) the running and claimed tasks are those the leases show.
        imported = snapshot.imported
        done = finished + failed
        if imported is not None and imported.tasks > 0:
            total = max(imported.tasks, done + pending)
        else:
            total = done + len(running) + claimed + pending
        taken = total - done - pending
        # One running task per worker lease at most; the rest of what is taken waits in a
        # chunk or ended a moment ago (a worker holds results up to a second, see
        # taskfarmer.farm.chunking.record_due): claimed, not running.
        busy = min(len(running), max(0, taken))
        recent = recent_executions(self.joblog, now, RATE_WINDOW)
        rate = recent.done / recent.span if recent.span > 0 else None
        farmers = self._farmers(infos, recent.per_farmer, recent.span, now)
        left = pending + taken
        # Without a live farmer the rate of the window's past executions (shrinking as the
        # window's span grows) foretells nothing: no ETA.
        running_farm = any(farmer.live for farmer in farmers)
        running.sort(key=lambda task: -(task.age or 0.0))
        failed_tasks = self._failed(snapshot, failed)
        log_files = count_files(self.store.logs)
        halted = read_halt(self.store.files, locked=False)
        files = log_files + count_files(self.store.workdir, skip=self.store.logs)
        return Status(
            workdir=str(self.store.workdir),
            finished=finished, failed=failed, running=busy, claimed=max(0, taken) - busy,
            pending=pending, total=total,
            percent=100.0 * (total - left) / total if total else 100.0,
            rate=rate, eta=left / rate if rate and left and running_farm else None,
            farmers=farmers, stale_leases=self._stale(infos, now),
            running_tasks=running[: self.limit],
            running_more=max(0, busy - self.limit),
            failed_tasks=failed_tasks, failed_more=max(0, failed - len(failed_tasks)),
            consistent=snapshot.consistent, now=now,
            unimported=unimported_lines(self.tasklist, imported),
            files=files, log_files=log_files, files_per_task=log_files / done if done else None,
            opens_per_task=opens_per_result(read_records(self.store.files.farmers)),
            halted=halted.describe() if halted is not None else None,
            quarantined=[QuarantinedNode(r.node, r.since, r.until, r.active(now),
                                         len(r.attempts), r.reason)
                         for r in self.store.quarantines.all()])

    # -- running tasks -----------------------------------------------------------------------

    def _running(self, snapshot: Snapshot, infos: list[LeaseInfo], now: float
                 ) -> tuple[list[RunningTask], int]:
        """The running tasks, and how many more the leases' last claims hold: a worker runs
        the tasks of its last claim in order, so the first one not settled is running."""
        chunks = snapshot.last_chunks([info.name for info in infos])
        if not chunks:
            return [], 0
        by_name = {info.name: info for info in infos}
        starts = self._slot_starts({name: by_name[name] for name in chunks})
        tasks = []
        claimed = 0
        for name, chunk in chunks.items():
            unsettled = [(task_id, end) for task_id, end in chunk
                         if not snapshot.settled_recently(task_id)]
            if not unsettled:
                continue
            claimed += len(unsettled) - 1
            task_id, end = unsettled[0]
            info = by_name[name]
            start = starts.get(name)
            tasks.append(RunningTask(
                task_id, info.owner.node, info.owner.extra.get("farmer", ""),
                now - start if start is not None else None, snapshot.task_text(end)))
        return tasks, claimed

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
            lease = wanted.pop((entry.farmer, entry.slot), None)
            if lease is not None:
                starts[lease] = max(starts.get(lease, 0.0), entry.end)
        return starts

    # -- rates -------------------------------------------------------------------------------

    def _farmers(self, infos: list[LeaseInfo], recent: dict[str, int], span: float,
                 now: float) -> list[FarmerRow]:
        groups: dict[str, list[LeaseInfo]] = {}
        for info in infos:
            if not info.dead:
                groups.setdefault(info.owner.extra.get("farmer", info.name), []).append(info)
        rows = []
        silent = 2 * heartbeat_period(self.lease)  # as for the stale leases
        for farmer, leases in sorted(groups.items()):
            owner = leases[0].owner
            count = recent.get(farmer, 0)
            pid = farmer_pid(farmer)
            age = now - max(info.heartbeat for info in leases)
            rows.append(FarmerRow(
                farmer, owner.node, owner.pid if pid is None else pid, len(leases), age, count,
                count / span if count and span > 0 else None, live=age <= silent))
        return rows

    def _stale(self, infos: list[LeaseInfo], now: float) -> list[LeaseRow]:
        """Leases that missed two renewals (:func:`~taskfarmer.store.heartbeat_period`)."""
        period = heartbeat_period(self.lease)
        return [LeaseRow(info.name, info.owner.node, now - info.heartbeat,
                         info.heartbeat + self.lease - now, info.dead)
                for info in infos if info.dead or now - info.heartbeat > 2 * period]

    # -- failed tasks ------------------------------------------------------------------------

    def _failed(self, snapshot: Snapshot, count: int) -> list[FailedTask]:
        if count == 0:
            return []
        tasks = snapshot.latest_failed(self.limit)
        attempts = snapshot.attempts({task_id for task_id, _ in tasks})
        exits: dict[int, Entry] = {}
        for entry in read_backward(self.joblog, JOBLOG_SEARCH):
            if entry.id in attempts and entry.id not in exits and entry.outcome in FINAL:
                exits[entry.id] = entry
                if len(exits) == len(tasks):
                    break
        logs = task_pieces(self.store.logs, None, snapshot.leases, attempts)
        result = []
        for task_id, text in tasks:
            found = exits.get(task_id)
            pieces = logs.get(task_id, [])
            log = (str(pieces[-1].path) if pieces and pieces[-1].path.name == f"log_{task_id}"
                   else f"--task-log {task_id}")
            result.append(FailedTask(task_id, found.exit if found else None,
                                     found.signal if found else None, attempts[task_id],
                                     log, _last_log_line(pieces[-1]) if pieces else "", text))
        return result


def _last_log_line(piece: Piece) -> str:
    """The last non-empty line of an execution's output ('' if none)."""
    try:
        with open(piece.path, "rb") as handle:
            end = (os.fstat(handle.fileno()).st_size if piece.length is None
                   else piece.offset + piece.length)
            start = max(piece.offset, end - 4096)
            data = os.pread(handle.fileno(), end - start, start)
    except OSError:
        return ""
    lines = [line for line in data.splitlines() if line.strip()]
    return lines[-1].decode("utf-8", "replace")[:200] if lines else ""


def count_files(directory: Path, skip: Path | None = None) -> int:
    """The files (not directories) under ``directory``, without ``skip``'s; 0 if it is gone."""
    count, pending = 0, [str(directory)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                count += 1
            elif skip is None or entry.path != str(skip):
                pending.append(entry.path)
    return count
