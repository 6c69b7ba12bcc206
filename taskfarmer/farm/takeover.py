"""Leases from the main process's side: taking over those of the dead.

Each worker holds a lease (see :mod:`taskfarmer.store.leases`), which a thread of the farmer's
main process renews (:mod:`.heartbeat`); the main loop takes over the leases of other farmers
that expired, and those of its own workers that are gone, putting their tasks back into
``toprocess``. On the lease owner's machine, the task its worker was running is killed first
if it still runs (:mod:`taskfarmer.hpc.groups`): it must not run on beside its re-run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

from ..hpc.groups import KILL_WAIT, TaskGroup, kill_group, killable
from ..hpc.identity import Identity, is_stopped, process_start_time
from ..store import LeaseInfo, Outcome, Revocation, StateStore, owns
from ..timeline.events import instant
from ..timeline.file import Timeline
from .recording import counter_events


def expired(info: LeaseInfo, silent: float, lease: float, observer: Identity,
            stopped: Callable[[int], bool] = is_stopped) -> bool:
    """Whether another farmer's lease may be taken over.

    Half-revoked leases always. On the observer's own machine (same boot and PID namespace)
    the owner's process is looked at, not its heartbeat: a dead owner (pid gone or reused) is
    taken over at once, a live one never, unless it is stopped (SIGSTOP) and its heartbeat
    has been ``silent`` for longer than ``lease``. Elsewhere, only the heartbeat tells: the
    lease expires once it has been ``silent`` for longer than ``lease`` seconds of the
    observer's own clock (see :class:`Silence`; no other node's clock is trusted).

    Args:
        info: the lease as read under the lock.
        silent: seconds, on the observer's monotonic clock, since its heartbeat last changed.
        lease: ``--lease``.
        observer: our farmer's process.
        stopped: whether a pid of this machine is stopped (injectable for tests).
    """
    if info.dead:
        return True
    owner = info.owner
    if owner.same_machine(observer):
        return owner.provably_dead(observer) or (stopped(owner.pid) and silent > lease)
    return silent > lease


class Silence:
    """How long each lease's heartbeat has not changed, on the observer's monotonic clock.

    The heartbeat is the lease file's mtime, set by the owner's node (on NFS: by the server's
    clock). Comparing it with our own wall clock would trust two clocks to agree; instead we
    note when we first saw each value of the lease's :attr:`~LeaseInfo.token` and measure
    from there. A lease first seen now has been silent for 0 s: a farmer that has just
    started waits a whole ``--lease`` before it takes over a lease of another node.
    """

    def __init__(self) -> None:
        self._since: dict[str, tuple[tuple[int, int, int], float]] = {}

    def observe(self, infos: Sequence[LeaseInfo], now: float) -> dict[str, float]:
        """Note the leases seen at monotonic time ``now``; seconds each has been silent
        (leases no longer there are forgotten)."""
        since = {}
        for info in infos:
            seen = self._since.get(info.name)
            since[info.name] = seen if seen is not None and seen[0] == info.token \
                else (info.token, now)
        self._since = since
        return {name: now - first for name, (_, first) in since.items()}


class Takeover:
    """The leases of one farmer's workers, and taking over the leases of others.

    Args:
        store: the state files.
        timeline: the timeline the takeovers are marked on.
        farmer: our farmer's name (the first part of our workers' lease names).
        identity: our farmer's process (who looks at other leases' owners).
        lease: ``--lease``: seconds without a heartbeat after which a lease expires.
        clock: the wall clock (seconds since the epoch).
        monotonic: the monotonic clock (how long a lease has been silent).
        say: shows a farmer line.
    """

    def __init__(self, store: StateStore, timeline: Timeline, farmer: str, identity: Identity,
                 lease: float, clock: Callable[[], float], monotonic: Callable[[], float],
                 say: Callable[[str], None]) -> None:
        self._store = store
        self._monotonic = monotonic
        self._silence = Silence()
        self._timeline = timeline
        self._farmer = farmer
        self._identity = identity
        self._lease = lease
        self._clock = clock
        self._say = say

    def take_over_expired(self, track: int) -> None:
        """Take over every expired lease of another farmer, and finish every half-revoked
        one (``NAME.dead``), ours included (marked on our ``track``)."""
        with self._store.locked():
            infos = self._store.lease_infos()
            silent = self._silence.observe(infos, self._monotonic())  # read under the lock
            for info in infos:
                # Our own live leases are our workers' business (revoke_worker); a half-
                # revoked one (its taker died after the commit point) is finished by whoever
                # holds the lock next, us too: else we would wait for it for ever.
                if owns(self._farmer, info.name) and not info.dead:
                    continue
                if expired(info, silent[info.name], self._lease, self._identity):
                    revocation, _ = self._revoke(info, {"node": info.owner.node,
                                                        "pid": info.owner.pid}, track)
                    count = len(revocation.back)
                    self._say(f"took over lease {info.name} of {info.owner.node} "
                              f"pid {info.owner.pid}: {count} task(s) back in toprocess")

    def revoke_worker(self, slot: int, pid: int | None, track: int, blame: int | None = None,
                      retries: int = 0) -> list[tuple[Revocation, TaskGroup | None]]:
        """Put back the tasks of our worker ``pid`` of ``slot``, which is gone (after a lock
        failure: handed over by :meth:`StateStore.abandon` instead), except task ``blame``,
        which counts a failed attempt (``--retries``). For each lease taken over, what became
        of its tasks, and the task its record named."""
        if self._store.lock_failed:
            return []
        done = []
        with self._store.locked():
            names = [name for name in self._store.lease_names()
                     if owns(self._farmer, name, slot, pid)]
            for info in self._store.lease_infos(names):
                done.append(self._revoke(info, {"node": self._identity.node,
                                                "worker": slot + 1}, track, blame, retries))
        return done

    def _revoke(self, info: LeaseInfo, owner: dict[str, Any], track: int,
                blame: int | None = None, retries: int = 0
                ) -> tuple[Revocation, TaskGroup | None]:
        """*locked* Take over lease ``info`` (killing its running task first, on its
        machine) and mark it on ``track``; what became of its tasks, and its task record."""
        group = self._kill_task(info)
        revocation = self._store.revoke(info.name, blame, retries)
        now = self._clock()
        tasks = revocation.back
        events = [instant("lease taken over", now, track,
                          {"lease": info.name, **owner, "tasks": len(tasks),
                           "ids": [task.id for task in tasks[:20]]})]
        settled = len(tasks) + (revocation.blamed is not None)
        if settled:
            failed = int(revocation.outcome is Outcome.FAILED)
            events += counter_events(self._timeline, now, running=-settled,
                                     pending=settled - failed, failed=failed)
        self._timeline.append(events)
        return revocation, group

    def _kill_task(self, info: LeaseInfo) -> TaskGroup | None:
        """Kill the process group of the task the worker of lease ``info`` ran, if that worker
        ran on our machine and the group's leader still runs (see :func:`killable`). The task
        record, if read (elsewhere its pids mean nothing: it is not even read)."""
        if not info.owner.same_machine(self._identity):
            return None
        group = self._store.task_records.read(info.name)
        if group is None or not killable(group, info.owner, self._identity,
                                         process_start_time(group.pid)):
            return group
        gone = kill_group(group.pid, monotonic=self._monotonic)
        self._say(f"killed task {group.task} (process group {group.pid}), still running under "
                  f"lease {info.name}" + ("" if gone else f"; some of its processes are "
                                          f"still there {KILL_WAIT:.0f} s after SIGKILL"))
        return group
