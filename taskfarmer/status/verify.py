"""``farmer --verify``: is every task of the list in exactly one place? The pure checks.

Input is a :class:`WorkdirView`, the bytes of the state files as one snapshot fixed them
(:mod:`.verify_read` takes it); output a :class:`Verdict`. Nothing here does I/O, so every
rule is unit-tested on bytes alone. The rules, from ``docs/workdir.md``:

* every task ``0 .. total-1`` is in exactly one of ``finished``, ``failed``, ``toprocess``
  after the cursor (pending), or taken: its last ``claims`` line names a lease file that
  exists (running, or being taken over: ``NAME.dead``). A task in none of them is lost; in two,
  recorded twice (or recorded and still pending: it would run again);
* no ID is unknown (``>= total``) or malformed, in any file; no state file ends in a torn
  (newline-less) line;
* ``claims``: ``ID LEASE OFFSET`` lines, their offsets increasing, each the end of the
  ``toprocess`` line of that ID before the cursor, one per such line;
* the job log never shows an outcome the state does not have: a ``finished`` line only for a
  task in ``finished`` (and one at most), a ``failed``/``timed out``/``out of memory`` line
  only for a task in ``failed`` or put back by ``--requeue-failed`` (an ``ID 0`` line in
  ``attempts``). A recorded task without its line is not a problem: a farmer killed between
  the two writes leaves that;
* lease files have a lease's name and its owner's ``key=value`` lines. A lease silent for
  longer than ``--lease`` is a warning, not a problem: its tasks are accounted for, and the next
  farmer takes them over.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from typing import Any

from ..hpc.identity import Identity
from ..store import LeaseName, live_name

#: Levels of a finding: only problems make a workdir inconsistent.
PROBLEM, WARNING, NOTE = "problem", "warning", "note"
#: Task IDs shown per finding line; the rest are counted.
SHOWN_IDS = 20
#: Outcomes of the job log that put a task into ``failed``.
FAILED_OUTCOMES = (b"failed", b"timed out", b"out of memory")
#: An ``ID task`` line (toprocess, finished, failed); a ``claims`` line; a job log line (its ID
#: and outcome, the 10th column); an ``attempts`` line.
_ID_LINE = re.compile(rb"^(\d+) [^\n]*\n", re.MULTILINE)
_CLAIM_LINE = re.compile(rb"^(\d+) ([^ \n]+) (\d+)\n", re.MULTILINE)
_JOBLOG_LINE = re.compile(rb"^(\d+)\t(?:[^\t\n]*\t){8}([^\t\n]*)\t[^\n]*\n", re.MULTILINE)
_ATTEMPTS_LINE = re.compile(rb"^(\d+) (\d+)\n", re.MULTILINE)


@dataclass(frozen=True)
class LeaseView:
    """A file of ``leases/`` as the snapshot saw it."""

    name: str  # the file's name (``NAME.dead`` while being taken over)
    age: float | None  # seconds since its heartbeat; None if it vanished before it was read
    text: str = ""


@dataclass(frozen=True)
class WorkdirView:
    """The bytes :func:`check` judges, fixed at one moment (see the module docstring)."""

    total: int | None  # tasks imported (None: unknown, a PyTaskFarmer workdir without list)
    toprocess: bytes
    cursor: int
    finished: bytes = b""
    failed: bytes = b""
    claims: bytes | None = b""  # None: no claims file (PyTaskFarmer's, or mid-compaction)
    joblog: bytes | None = None  # None: no job log (PyTaskFarmer's workdir)
    attempts: bytes = b""
    requeue: bytes | None = None  # failed.requeue: a --requeue-failed left half done
    leases: tuple[LeaseView, ...] = ()
    lease_time: float = 300.0


@dataclass(frozen=True)
class Finding:
    """One line of the report: what is wrong (or worth knowing), where, for which tasks."""

    level: str
    file: str
    what: str
    ids: tuple[int, ...] = ()

    def line(self) -> str:
        """``LEVEL: FILE: WHAT: task(s) IDS``."""
        count = len(self.ids)
        tasks = f": task {self.ids[0]}" if count == 1 else \
            f": {count} tasks {format_ids(self.ids)}" if count else ""
        return f"{self.level}: {self.file}: {self.what}{tasks}"


@dataclass
class Verdict:
    """What :func:`check` found."""

    total: int
    finished: int = 0
    failed: int = 0
    pending: int = 0
    taken: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """No finding is a problem."""
        return not any(finding.level == PROBLEM for finding in self.findings)

    def lines(self) -> list[str]:
        """The summary line, then one line per finding (problems first)."""
        problems = sum(finding.level == PROBLEM for finding in self.findings)
        head = "consistent" if not problems else \
            f"INCONSISTENT ({_plural(problems, 'problem')})"
        summary = (f"{head}: {_plural(self.total, 'task')}: {self.finished} finished, "
                   f"{self.failed} failed, {self.pending} pending, {self.taken} running")
        order = {PROBLEM: 0, WARNING: 1, NOTE: 2}
        return [summary] + [finding.line() for finding in
                            sorted(self.findings, key=lambda finding: order[finding.level])]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def format_ids(ids: Sequence[int], limit: int = SHOWN_IDS) -> str:
    """``3-7, 12, 40`` for sorted ``ids``: runs as ranges, at most ``limit`` items, then
    ``(+N more)``."""
    items: list[str] = []
    shown = 0
    index = 0
    while index < len(ids) and len(items) < limit:
        end = index
        while end + 1 < len(ids) and ids[end + 1] == ids[end] + 1:
            end += 1
        items.append(str(ids[index]) if end == index else f"{ids[index]}-{ids[end]}")
        shown = end + 1
        index = end + 1
    more = len(ids) - shown
    return ", ".join(items) + (f" (+{more} more)" if more else "")


class _Findings:
    """Collects findings, one per (level, file, what), their IDs merged."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str, str], set[int]] = {}

    def add(self, level: str, file: str, what: str, ids: Iterable[int] = ()) -> None:
        self._ids.setdefault((level, file, what), set()).update(ids)

    def result(self) -> list[Finding]:
        return [Finding(level, file, what, tuple(sorted(ids)))
                for (level, file, what), ids in self._ids.items()]


def _complete(data: bytes, name: str, found: _Findings) -> bytes:
    """The complete lines of ``data``; a torn last line is a problem."""
    keep = data.rfind(b"\n") + 1
    tail = data[keep:]
    if tail:
        found.add(PROBLEM, name, f"torn last line {tail[:40]!r} (no newline: a writer died "
                  f"mid-write at byte {keep}; the next farmer moves it to torn)")
    return data[:keep]


def _line_numbers(what: str, numbers: list[int]) -> str:
    shown = ", ".join(str(number) for number in numbers[:SHOWN_IDS])
    more = f" (+{len(numbers) - SHOWN_IDS} more)" if len(numbers) > SHOWN_IDS else ""
    return f"{what} on line{'s' if len(numbers) > 1 else ''} {shown}{more}"


def _matches(pattern: re.Pattern[bytes], data: bytes, name: str, what: str, found: _Findings,
             first: int = 1) -> list[Any]:
    """``pattern.findall`` over the lines of ``data`` (complete lines), one item per line,
    None for a line it does not match (a problem naming the line numbers). The common case,
    every line well-formed, is one ``findall`` in C."""
    items: list[Any] = pattern.findall(data)
    if len(items) == data.count(b"\n"):
        return items
    items, bad = [], []
    for number, line in enumerate(data.split(b"\n")[:-1], start=first):
        match = pattern.match(line + b"\n")
        items.append(match.group(*range(1, pattern.groups + 1)) if match else None)
        if match is None:
            bad.append(number)
    found.add(PROBLEM, name, _line_numbers(f"malformed line (not {what!r})", bad))
    return items


def _ids(data: bytes, name: str, found: _Findings) -> list[int]:
    """The ID of each ``ID task`` line (-1 for a malformed line)."""
    return [int(head) if head is not None else -1
            for head in _matches(_ID_LINE, data, name, "ID task", found)]


def _counts(ids: list[int], total: int, name: str, found: _Findings) -> bytearray:
    """How often each task ID is listed (capped at 2); unknown IDs are problems."""
    counts = bytearray(total)
    if ids and min(ids) >= 0 and max(ids) < total and len(set(ids)) == len(ids):
        # Each ID once (the common case): set them in C (a loop of map, drained by a deque).
        deque(map(counts.__setitem__, ids, repeat(1)), maxlen=0)
        return counts
    unknown = []
    for task_id in ids:
        if task_id >= total:
            unknown.append(task_id)
        elif task_id >= 0 and counts[task_id] < 2:
            counts[task_id] += 1
    if unknown:
        found.add(PROBLEM, name, f"unknown task ID (only {total} imported)", unknown)
    return counts


@dataclass
class _Claims:
    """``claims`` parsed: each task's last lease, and the claims' IDs and offsets in order."""

    last: dict[int, str] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


def _parse_claims(data: bytes | None, found: _Findings) -> _Claims:
    claims = _Claims()
    if data is None:
        return claims
    items = [item for item in _matches(_CLAIM_LINE, _complete(data, "claims", found),
                                       "claims", "ID LEASE OFFSET", found) if item is not None]
    names = {name: name.decode("utf-8", "replace") for _, name, _ in items}
    for name in names.values():
        if LeaseName.parse(name) is None:
            found.add(PROBLEM, "claims", f"lease name {name!r} is not FARMER.wSLOT.PID.N")
    claims.ids = [int(task_id) for task_id, _, _ in items]
    claims.offsets = [int(offset) for _, _, offset in items]
    claims.last = dict(zip(claims.ids, (names[name] for _, name, _ in items)))
    return claims


def _check_offsets(claims: _Claims, ids: list[int], ends: list[int], cursor: int,
                   found: _Findings) -> None:
    """Each claim's offset ends the ``toprocess`` line of its ID; one claim per line taken."""
    taken = bisect_right(ends, cursor)
    if claims.offsets == ends[:taken] and claims.ids == ids[:taken]:
        return  # the common case, compared in C
    position = 0
    previous = -1
    wrong: list[int] = []
    for offset, task_id in zip(claims.offsets, claims.ids):
        if offset <= previous:
            wrong.append(task_id)
            continue
        previous = offset
        while position < taken and ends[position] < offset:
            position += 1
        if position >= taken or ends[position] != offset or ids[position] != task_id:
            wrong.append(task_id)
    if wrong:
        found.add(PROBLEM, "claims", "offset is not the end of the task's toprocess line "
                  "before the cursor (or not after the previous claim's)", wrong)
    if len(claims.offsets) - len(wrong) != taken:
        found.add(PROBLEM, "claims", f"{len(claims.offsets)} claim(s) for {taken} toprocess "
                  "line(s) before the cursor: every task taken has exactly one")


def _check_leases(view: WorkdirView, found: _Findings) -> tuple[dict[str, LeaseView], set[str]]:
    """Lease files well-formed; silent ones are warnings. Returns ``live name -> view`` and
    the live names of the stale ones."""
    leases: dict[str, LeaseView] = {}
    stale: set[str] = set()
    for lease in view.leases:
        if lease.name.startswith(".nfs"):  # NFS's silly rename of a removed open file
            continue
        leases[live_name(lease.name)] = lease
        where = f"leases/{lease.name}"
        if LeaseName.parse(lease.name) is None:
            found.add(PROBLEM, where, "not a lease name (FARMER.wSLOT.PID.N)")
        elif lease.age is not None:
            owner = Identity.from_text(lease.text)
            if not owner.node or owner.pid <= 0 or "farmer" not in owner.extra:
                found.add(PROBLEM, where, "malformed lease (no node, pid or farmer line)")
            elif lease.age > view.lease_time:
                stale.add(live_name(lease.name))
                found.add(WARNING, where, f"stale: no heartbeat for {lease.age:.0f} s "
                          f"(> --lease {view.lease_time:g} s); the next farmer takes its "
                          "task(s) over")
    return leases, stale


def _requeued(attempts: bytes, found: _Findings) -> set[int]:
    """Tasks put back by ``--requeue-failed`` (an ``ID 0`` line in ``attempts``)."""
    items = _matches(_ATTEMPTS_LINE, _complete(attempts, "attempts", found), "attempts",
                     "ID N", found)
    return {int(task_id) for task_id, count in filter(None, items) if count == b"0"}


def _check_joblog(view: WorkdirView, total: int, finished: bytearray, failed: bytearray,
                  found: _Findings) -> None:
    """The job log shows no outcome the state does not have (see the module docstring)."""
    if view.joblog is None:
        found.add(NOTE, "joblog", "absent (PyTaskFarmer's workdir?): not compared")
        return
    data = _complete(view.joblog, "joblog", found)
    first = 1
    if data.startswith(b"id\t"):
        data, first = data[data.find(b"\n") + 1:], 2
    items = [item for item in _matches(_JOBLOG_LINE, data, "joblog", "the job log's columns",
                                       found, first) if item is not None]
    unknown = [int(task_id) for task_id, _ in items if int(task_id) >= total]
    if unknown:
        found.add(PROBLEM, "joblog", f"unknown task ID (only {total} imported)", unknown)
    done = [int(task_id) for task_id, outcome in items
            if outcome == b"finished" and int(task_id) < total]
    bad = {int(task_id) for task_id, outcome in items
           if outcome in FAILED_OUTCOMES and int(task_id) < total}
    requeued = _requeued(view.attempts, found)
    done_once = set(done)
    for ids, what in (
            ([task_id for task_id, count in Counter(done).items() if count > 1]
             if len(done_once) < len(done) else [], "finished twice"),
            ([task_id for task_id in done_once if not finished[task_id]],
             "says finished, but the task is not in finished"),
            ([task_id for task_id in bad if not failed[task_id] and task_id not in requeued],
             "says failed, but the task is neither in failed nor put back by "
             "--requeue-failed")):
        if ids:
            found.add(PROBLEM, "joblog", what, ids)
    unlogged = (total - finished.count(0) - sum(1 for task_id in done_once if finished[task_id])
                + total - failed.count(0) - sum(1 for task_id in bad if failed[task_id]))
    if unlogged:
        found.add(NOTE, "joblog", f"{unlogged} recorded task(s) without their line (a farmer "
                  "killed between recording and logging leaves that)")


def _universe(view: WorkdirView, *id_lists: list[int]) -> int:
    """How many tasks there are: the imported count, else the highest ID seen + 1."""
    if view.total is not None:
        return view.total
    return max((max(ids, default=-1) for ids in id_lists), default=-1) + 1


def check(view: WorkdirView) -> Verdict:
    """Judge ``view`` (see the module docstring for the rules)."""
    found = _Findings()
    finished_ids = _ids(_complete(view.finished, "finished", found), "finished", found)
    failed_ids = _ids(_complete(view.failed, "failed", found), "failed", found)
    todo = _complete(view.toprocess, "toprocess", found)
    todo_ids = _ids(todo, "toprocess", found)
    ends = list(accumulate(len(line) + 1 for line in todo.split(b"\n")[:-1]))
    pending_ids = todo_ids[bisect_right(ends, view.cursor):]
    requeue_ids = [] if view.requeue is None else \
        _ids(_complete(view.requeue, "failed.requeue", found), "failed.requeue", found)
    total = _universe(view, finished_ids, failed_ids, todo_ids, requeue_ids)
    counts = tuple(_counts(ids, total, name, found) for ids, name in (
        (finished_ids, "finished"), (failed_ids, "failed"), (pending_ids, "toprocess"),
        (requeue_ids, "failed.requeue")))
    claims = _parse_claims(view.claims, found)
    if view.claims is not None:
        _check_offsets(claims, todo_ids, ends, view.cursor, found)
    verdict = Verdict(total)
    _place_tasks(verdict, counts, claims, _check_leases(view, found), found)
    _check_joblog(view, total, counts[0], counts[1], found)
    if view.requeue is not None:
        found.add(NOTE, "failed.requeue", "a --requeue-failed was left half done: the next "
                  "farmer completes it (its tasks count as failed until then)")
    verdict.findings = found.result()
    return verdict


#: Codes of :func:`_places`: a task listed once in exactly one of the four.
_ONCE = {1: "finished", 3: "failed", 9: "pending", 27: "failed.requeue"}
_UNUSUAL = re.compile(rb"[^\x01\x03\x09\x1b]")


def _places(counts: tuple[bytearray, ...]) -> bytes:
    """Per task, ``finished + 3 * failed + 9 * pending + 27 * requeue`` (each count 0-2):
    one byte, computed for all tasks at once as big integers (no byte exceeds 80, so no carry
    crosses into the next task's byte)."""
    total = len(counts[0])
    value = sum(weight * int.from_bytes(count, "little")
                for weight, count in zip((1, 3, 9, 27), counts))
    return value.to_bytes(total, "little") if total else b""


def _place_tasks(verdict: Verdict, counts: tuple[bytearray, ...], claims: _Claims,
                 lease_files: tuple[dict[str, LeaseView], set[str]], found: _Findings) -> None:
    """Every task in exactly one place; counts into ``verdict``. Only tasks not listed once
    in one place (few: running, lost, duplicated) are looked at one by one."""
    finished, failed, pending, requeue = counts
    leases, stale_names = lease_files
    places = _places(counts)
    verdict.finished = places.count(1)
    verdict.failed = places.count(3) + places.count(27)
    verdict.pending = places.count(9)
    problems: dict[tuple[str, str], list[int]] = {}
    stale: dict[str, list[int]] = {}
    for match in _UNUSUAL.finditer(places):
        task_id = match.start()
        done, bad, todo = finished[task_id], failed[task_id], pending[task_id]
        if done or bad or todo or requeue[task_id]:
            verdict.finished += done == 1 and not bad
            verdict.failed += bad == 1 and not done
            verdict.pending += todo == 1 and not (done or bad)
            for kind in _misplaced(done, bad, todo):
                problems.setdefault(kind, []).append(task_id)
            continue
        lease = claims.last.get(task_id)
        if lease is None:
            problems.setdefault(("all state files", "lost: in no file (neither finished, "
                                 "failed, pending nor claimed)"), []).append(task_id)
        elif lease not in leases:
            problems.setdefault(("claims", "lost: last claimed by a lease that does not "
                                 "exist, and neither finished, failed nor pending"),
                                []).append(task_id)
        else:
            verdict.taken += 1
            if lease in stale_names:
                stale.setdefault(lease, []).append(task_id)
    for (file, what), ids in problems.items():
        found.add(PROBLEM, file, what, ids)
    for lease, ids in stale.items():
        found.add(WARNING, f"leases/{leases[lease].name}", "held by this stale lease", ids)


def _misplaced(done: int, bad: int, todo: int) -> list[tuple[str, str]]:
    """``(file, what)`` of each way a task listed ``done``/``bad``/``todo`` times in
    finished/failed/pending is wrong."""
    kinds = []
    if done and bad:
        kinds.append(("finished, failed", "recorded in both"))
    elif done > 1 or bad > 1:
        kinds.append(("finished" if done else "failed", "recorded twice"))
    if todo > 1:
        kinds.append(("toprocess", "pending twice after the cursor (would run twice)"))
    if todo and (done or bad):
        kinds.append(("toprocess", "recorded, and still pending after the cursor (would run "
                      "again)"))
    return kinds
