"""Task process groups: naming the one a worker runs, so that after the worker's death another
process of the same machine can kill it, and never anything else.

Each task leads a session, hence a process group whose id is the leader's pid (see
:mod:`taskfarmer.runners.base`). A worker writes what names its running task's group next to
its lease (:class:`TaskGroup`: the task ID, the leader's pid and start time, in a task record:
:mod:`taskfarmer.store.records`); whoever takes the lease over on the same machine (boot and
PID namespace, :meth:`Identity.same_machine`) kills that group first (:func:`killable`), so
that the task does not run on beside its re-run.

Why the leader's start time: a pid is reused once its process is gone and reaped, and a
reused pid has another start time. While any member of a group lives, Linux allocates neither
its id nor its session's id to a new process, so a leader found with the recorded start time
leads the recorded group, and the group holds only the task's processes (a process can join a
group only within its own session, and the task made that session). The worker does not read
the start time (``/proc/PID/stat`` of a process in the middle of ``exec`` waits for its memory
map: about 0.8 ms per task, measured); it notes the boot clock in ticks, as the kernel counts
the start time, before it forks the leader and after: the leader started in that window, and a
process that reuses its pid starts after the leader is reaped, which is later. A group whose
leader is gone is not killed: its id can no longer be told from a reused one; what lives on in
it are the task's background processes (``docs/failures.md``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from .identity import Identity

#: Clock ticks per second, the unit of a process's start time in ``/proc/PID/stat``.
_HZ = os.sysconf("SC_CLK_TCK")

#: How a task record's line starts (``task=ID PID FIRST LAST BEGAN``, see :class:`TaskGroup`).
RECORD_KEY = "task"
#: Bytes of a task record (its line padded with spaces, then a newline): every record has the
#: same length, so each overwrites the last in place.
RECORD_SIZE = 96
#: Seconds to wait for a SIGKILLed group's members to be gone (a process in uninterruptible
#: sleep, a stuck NFS call, dies only once the call returns; it never runs its code again).
KILL_WAIT = 5.0
_KILL_POLL = 0.01


def boot_ticks() -> int:
    """The boot clock in the unit of a process's start time (field 22 of ``/proc/PID/stat``:
    clock ticks since boot, suspend included)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) * _HZ // 1_000_000_000


@dataclass(frozen=True)
class TaskGroup:
    """The task a worker runs, and how to find its process group: the leader's pid (= the
    group id), and when it started: between ``first`` and ``last`` (:func:`boot_ticks`, read
    before the fork and after)."""

    task: int
    pid: int
    first: int
    last: int
    began: float  # when the task started, seconds since the epoch (for the job log)

    def record(self) -> bytes:
        """The task record of this group (:data:`RECORD_SIZE` bytes)."""
        return blank_record(f"{self.task} {self.pid} {self.first} {self.last} {self.began:.3f}")

    @classmethod
    def parse(cls, text: str) -> TaskGroup | None:
        """The group a task record names; None for a blank, torn or malformed one (which
        names nothing to kill)."""
        key, _, value = text.partition("=")
        fields = value.split() if key == RECORD_KEY else []
        if len(fields) != 5 or not all(field.isdigit() for field in fields[:4]):
            return None
        try:
            began = float(fields[4])
        except ValueError:
            return None
        return cls(int(fields[0]), int(fields[1]), int(fields[2]), int(fields[3]), began)


def blank_record(value: str = "") -> bytes:
    """A record line holding ``value`` (blank: no task runs), :data:`RECORD_SIZE` bytes."""
    line = f"{RECORD_KEY}={value}".ljust(RECORD_SIZE - 1) + "\n"
    return line.encode()[:RECORD_SIZE - 1] + b"\n"


def killable(group: TaskGroup | None, owner: Identity, observer: Identity,
             leader_start: str | None) -> bool:
    """Whether ``observer``, taking over the lease of ``owner`` that records ``group``, must
    kill that group: only on the owner's machine (elsewhere its pids mean nothing), and only
    while the recorded leader runs, known by its start time (``leader_start``: the start time
    of the process now holding the recorded pid, None if there is none), which must lie in the
    recorded window."""
    return (group is not None and group.pid > 1 and owner.same_machine(observer)
            and leader_start is not None and leader_start.isdigit()
            and group.first <= int(leader_start) <= group.last)


def group_has_live_members(pgid: int) -> bool:
    """True if some process of process group ``pgid`` is still running (zombies do not count:
    a zombie has closed its files, its locks are released).

    Scans ``/proc``: used only while stopping a task or taking a lease over, never per task.
    """
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def kill_group(pgid: int, wait: float = KILL_WAIT,
               monotonic: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> bool:
    """SIGKILL process group ``pgid`` and wait up to ``wait`` seconds until no member runs.
    True if none does (then no process of it executes again, and its locks are released)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = monotonic() + wait
    while group_has_live_members(pgid):
        if monotonic() >= deadline:
            return False
        sleep(_KILL_POLL)
    return True
