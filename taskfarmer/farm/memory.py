"""Memory: no task lost to the OOM killer.

Inside a memory cgroup (SLURM's ``task/cgroup``), tasks that together exceed the limit get one
of them killed by the kernel. The farm's rules (``docs/usage.md#memory``), decided by the pure
functions here and applied by the :class:`MemoryBoard` that the farmer and its workers share:

* **Admission** (:func:`admissible`): a task's expected memory is ``--mem-per-task``, else the
  largest peak (``ru_maxrss``) of the farmer's tasks so far. A worker (one task at a time) is
  started only while the farm's memory at rest (measured when it starts) plus the expected
  memory of every worker, this one too, stays under the line (:data:`MARGIN` below the
  cgroup's limit, or below the node's memory outside one), and the memory in use now plus one
  task's stays under it too. One worker is always allowed.
* **Eviction** (:func:`victim`): when the memory in use (file cache left out) reaches the line
  anyway, the most recently started task is killed before the OOM killer picks one, and put
  back: ``evicted``. A task running alone is never evicted (the kernel decides for it).
* **OOM kills** (:func:`verdict`): a task that died of SIGKILL while the cgroup's OOM kill
  counter went up was killed by the OOM killer. If another task of the farmer ran at some
  time during it, the task goes back into ``toprocess`` (``oom``, not an attempt); if it ran
  alone, it alone exceeds the limit: a failed attempt, ``out of memory``.
* **The cap** (:func:`cap_now`): after an eviction or an OOM kill with N other tasks running,
  the farmer runs at most ``max(1, N)`` tasks at once; the cap rises by one after every
  :data:`BACKOFF` seconds without another such event, back to ``--proc``.

A worker whose task was put back for memory leaves (its lease released); the farmer starts a
worker again when the cap and the admission allow.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.sharedctypes import RawArray, RawValue
from typing import Callable

from ..hpc.identity import parent_pid
from ..hpc.memory import NodeMemory, Room
from .signals import start_thread

#: The line the tasks' memory stays under: this fraction of the capacity below it.
MARGIN = 0.05
#: Seconds between two looks at the memory in use (a cgroup's usage and memory.stat).
GUARD_POLL = 0.1
#: After a memory event the cap rises by one task per this many seconds without another.
BACKOFF = 30.0
#: Verdicts: back into ``toprocess`` (killed by the OOM killer with other tasks running;
#: stopped by us as memory ran short), or failed (killed by the OOM killer while alone).
OOM, EVICTED, OUT_OF_MEMORY = "oom", "evicted", "out of memory"
PUT_BACK = (OOM, EVICTED)
#: How a task killed by SIGKILL ends: the leader killed, or its shell reporting 128 + 9.
KILLED = (-signal.SIGKILL, 128 + signal.SIGKILL)


def line(room: Room) -> float:
    """The bytes the tasks' memory stays under (:data:`MARGIN` below the capacity)."""
    return room.capacity * (1 - MARGIN)


def admissible(workers: int, wanted: int, cap: int, expected: int | None, room: Room | None,
               base: int) -> int:
    """How many of ``wanted`` more workers may start now, ``workers`` running.

    Args:
        workers: workers running (each runs a task, or is about to).
        wanted: workers that could start (free slots).
        cap: the most tasks at once for now (:func:`cap_now`).
        expected: a task's expected memory in bytes; None: not known yet.
        room: the memory now; None: unknown.
        base: the memory in use when the farm started (the farmer itself and what else
            runs in its cgroup).
    """
    allowed = max(0, min(wanted, cap - workers))
    if allowed and expected and room is not None:
        top = line(room)
        by_model = math.floor((top - base) / expected) - workers
        by_now = math.floor((top - room.used) / expected)
        allowed = max(0, min(allowed, by_model, by_now))
        if workers == 0:
            allowed = max(allowed, 1)
    return allowed


def victim(since: Mapping[int, float]) -> int | None:
    """The slot to evict when memory runs short: the most recently started of the running
    tasks (slot -> when it started); None unless two or more run."""
    if len(since) < 2:
        return None
    return max(since, key=lambda slot: since[slot])


def verdict(returncode: int, before: int | None, after: int | None, evicted: bool,
            crowded: bool) -> str | None:
    """What memory had to do with a task's end; None: nothing.

    Args:
        returncode: how the task ended (``Popen``'s: negative for a signal).
        before, after: the cgroup's OOM kill counter when it started and ended (None:
            unknown).
        evicted: we killed it because memory ran short.
        crowded: another task of the farmer ran at some time during it.
    """
    if returncode not in KILLED:
        return None
    if evicted:
        return EVICTED
    if before is not None and after is not None and after > before:
        return OOM if crowded else OUT_OF_MEMORY
    return None


def cap_now(cap: int, lowered_at: float, now: float, proc: int) -> int:
    """The most tasks at once now: ``cap`` set at ``lowered_at``, one more for every
    :data:`BACKOFF` seconds since, at most ``proc``."""
    if now <= lowered_at:
        return min(cap, proc)
    return int(min(proc, cap + (now - lowered_at) // BACKOFF))


class MemoryBoard:
    """What a farmer and its workers share about memory, in shared memory the forked workers
    inherit: each slot's task (starting or running, its pid), whether it ran crowded, whether
    it was evicted, its peak; the cap.

    A task runs crowded if another task ran when it started, or another started before it
    ended: the board counts the tasks that run and the starts (O(1) per task under the lock,
    whatever the number of slots), and a task notes both when it starts and the starts again
    when it exits.

    Args:
        proc: the number of worker slots.
        memory: the farmer's memory cgroup (or the node's memory).
        per_task: ``--mem-per-task`` in bytes; None: learned from the peaks.
        seed: what the peaks are before any task ran (bytes; from the job log's last lines).
        monotonic: the monotonic clock (the same in every process).
    """

    def __init__(self, proc: int, memory: NodeMemory, per_task: int | None = None,
                 seed: int = 0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.memory = memory
        self._proc = proc
        self._per_task = per_task
        self._monotonic = monotonic
        self._lock = multiprocessing.get_context("fork").Lock()
        self._active = RawArray("b", proc)  # a task starts or runs
        self._pids = RawArray("i", proc)  # it runs as this process (0: not yet, or no more)
        self._owners = RawArray("i", proc)  # its parent, the worker: against pid reuse
        self._since = RawArray("d", proc)  # when it started (monotonic)
        self._crowded = RawArray("b", proc)  # another task ran when it started
        self._starts_then = RawArray("q", proc)  # the starts counted when it started ...
        self._starts_after = RawArray("q", proc)  # ... and when it exited
        self._starts = RawValue("q", 0)  # tasks started, all slots
        self._running = RawValue("i", 0)  # tasks starting or running, all slots
        self._evicted = RawArray("b", proc)
        self._peaks = RawArray("q", [seed] * proc)  # each slot's last peak (bytes)
        self._cap = RawValue("i", proc)
        self._lowered_at = RawValue("d", -math.inf)
        room = memory.room()
        self._base = room.used if room is not None else 0

    @property
    def watching(self) -> bool:
        """Whether the farm runs in a memory cgroup (OOM kills can be told, tasks evicted)."""
        return self.memory.cgroup is not None

    def cap(self) -> int:
        """The most tasks at once now (:func:`cap_now`)."""
        return cap_now(self._cap.value, self._lowered_at.value, self._monotonic(), self._proc)

    def expected(self) -> int | None:
        """A task's expected memory: ``--mem-per-task``, else the largest of the slots' last
        peaks (None: no task has run yet)."""
        return self._per_task or max(self._peaks) or None

    # -- the main process --------------------------------------------------------------------

    def admissible(self, workers: int, wanted: int) -> int:
        """How many of ``wanted`` more workers may start now (:func:`admissible`)."""
        expected = self.expected()
        room = self.memory.room() if expected and wanted else None
        return admissible(workers, wanted, self.cap(), expected, room, self._base)

    def relieve(self) -> int | None:
        """If the memory in use has reached the line inside a cgroup, evict the most recently
        started task (SIGKILL its group; its worker puts it back). The slot evicted, if any."""
        room = self.memory.room()
        if room is None or not room.confined or room.used < line(room):
            return None
        with self._lock:
            slot = victim({slot: self._since[slot] for slot in range(self._proc)
                           if self._pids[slot]})
            if slot is None:
                return None
            pid = self._pids[slot]
            if parent_pid(pid) != self._owners[slot]:
                return None  # it has just ended (a zombie), or its worker died
            self._evicted[slot] = 1
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return slot

    # -- a worker ----------------------------------------------------------------------------

    def starting(self, slot: int) -> int | None:
        """The task of ``slot`` is about to start. The OOM kill counter now (for
        :meth:`judge`; None: no cgroup, nothing to watch)."""
        if not self.watching:
            return None
        with self._lock:
            self._starts.value += 1
            self._starts_then[slot] = self._starts.value
            # A slot still active is one whose worker died with its task: counted already.
            self._crowded[slot] = self._running.value - self._active[slot] > 0
            if not self._active[slot]:
                self._running.value += 1
            self._active[slot] = 1
            self._evicted[slot] = 0
        return self.memory.oom_kills()

    def running(self, slot: int, pid: int) -> None:
        """The task of ``slot`` runs as ``pid`` (the leader of its process group, a child of
        this worker): it may be evicted from now on."""
        if not self.watching:
            return
        with self._lock:
            self._since[slot] = self._monotonic()
            self._owners[slot] = os.getpid()
            self._pids[slot] = pid

    def exited(self, slot: int) -> bool:
        """The task of ``slot`` exited, or never started (a leader is told before it is
        reaped: its pid cannot be reused meanwhile). Whether we evicted it."""
        if not self.watching:
            return False
        with self._lock:  # relieve() kills the pid it read under the lock: not once reaped
            self._pids[slot] = 0
            if self._active[slot]:
                self._active[slot] = 0
                self._running.value -= 1
                self._starts_after[slot] = self._starts.value
            return bool(self._evicted[slot])

    def crowded(self, slot: int) -> bool:
        """Whether another task ran at some time while the last task of ``slot`` did (asked
        after :meth:`exited`): one ran when it started, or one started before it exited."""
        return bool(self._crowded[slot]) or self._starts_after[slot] != self._starts_then[slot]

    def judge(self, slot: int, returncode: int, before: int | None, evicted: bool,
              peak: int) -> Judgement | None:
        """Learn the task's ``peak`` (a killed task's only if larger: it did not get to its
        own); what memory had to do with its end (:func:`verdict`), the cap lowered if it goes
        back."""
        killed = returncode in KILLED
        self._peaks[slot] = max(self._peaks[slot], peak) if killed else peak
        if not killed:
            return None
        after = self.memory.oom_kills() if before is not None else None
        word = verdict(returncode, before, after, evicted, self.crowded(slot))
        if word is None:
            return None
        with self._lock:
            others = self._running.value
            if word in PUT_BACK:
                self._cap.value = max(1, min(self.cap(), others))
                self._lowered_at.value = self._monotonic()
            return Judgement(word, others, self.cap())


@dataclass(frozen=True)
class Judgement:
    """What memory did to a task: its :func:`verdict`, how many other tasks ran when it was
    judged, and the cap since."""

    word: str
    others: int
    cap: int

    def describe(self, task_id: int) -> str:
        """The line the worker says."""
        if self.word == OUT_OF_MEMORY:
            return (f"task {task_id} was killed by the OOM killer while it ran alone: out of "
                    "memory (a failed attempt)")
        why = ("memory ran short: stopped task {id}, the most recently started"
               if self.word == EVICTED else "task {id} was killed by the OOM killer")
        return (why.format(id=task_id) + f" ({self.others} other task(s) running); back to "
                f"toprocess, at most {self.cap} task(s) at once for now")


class MemoryGuard:
    """A daemon thread of the farmer's main process that looks at the memory in use every
    :data:`GUARD_POLL` seconds and evicts a task when it runs short (:meth:`MemoryBoard.relieve`);
    only inside a cgroup with a limit."""

    def __init__(self, board: MemoryBoard, poll: float = GUARD_POLL) -> None:
        self._board = board
        self._poll = poll
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start looking, if there is a cgroup limit to look at."""
        room = self._board.memory.room()
        if room is not None and room.confined:
            self._thread = start_thread(self._run, "memory guard")

    def stop(self) -> None:
        """Stop looking; no task is evicted once this returns."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._poll):
            self._board.relieve()
