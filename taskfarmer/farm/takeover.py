"""Leases from the main process's side: renewing ours, taking over those of the dead.

Each worker holds a lease (see :mod:`taskfarmer.store.leases`); the farmer's main process
renews them (a heartbeat), takes over the leases of other farmers that expired, and those of
its own workers that are gone, putting their tasks back into ``toprocess``.
"""

from __future__ import annotations

from typing import Any, Callable

from ..hpc.identity import Identity
from ..store import LeaseInfo, LeaseName, StateStore, live_name
from ..timeline.events import instant
from ..timeline.file import Timeline
from .recording import counter_events


def expired(info: LeaseInfo, now: float, lease: float, observer: Identity) -> bool:
    """Whether another farmer's lease may be taken over.

    Half-revoked leases always; provably dead owners (same boot and PID namespace, pid gone)
    at once; anyone else once the heartbeat is older than ``lease`` seconds.
    """
    return info.dead or info.owner.provably_dead(observer) or now - info.heartbeat > lease


class Takeover:
    """The leases of one farmer's workers, and taking over the leases of others.

    Args:
        store: the state files.
        timeline: the timeline the takeovers are marked on.
        farmer: our farmer's name (the first part of our workers' lease names).
        identity: our farmer's process (who looks at other leases' owners).
        lease: ``--lease``: seconds without a heartbeat after which a lease expires.
        clock: the wall clock (seconds since the epoch).
        say: shows a farmer line.
    """

    def __init__(self, store: StateStore, timeline: Timeline, farmer: str, identity: Identity,
                 lease: float, clock: Callable[[], float], say: Callable[[str], None]) -> None:
        self._store = store
        self._timeline = timeline
        self._farmer = farmer
        self._identity = identity
        self._lease = lease
        self._clock = clock
        self._say = say

    def heartbeat(self) -> None:
        """Renew the leases of our workers (one ``utime`` each, per period, not per task)."""
        for name in self._store.lease_names():
            lease = LeaseName.parse(name)
            if lease is not None and not lease.dead and lease.owned_by(self._farmer):
                self._store.renew(name)

    def take_over_expired(self, track: int) -> None:
        """Take over every expired lease of another farmer (marked on our ``track``)."""
        now = self._clock()
        with self._store.locked():
            for info in self._store.lease_infos():
                lease = LeaseName.parse(info.name)
                if lease is not None and lease.owned_by(self._farmer):
                    continue
                if expired(info, now, self._lease, self._identity):
                    count = self._revoke(info.name, {"node": info.owner.node,
                                                     "pid": info.owner.pid}, track)
                    self._say(f"took over lease {info.name} of {info.owner.node} "
                              f"pid {info.owner.pid}: {count} task(s) back in toprocess")

    def revoke_worker(self, slot: int, pid: int | None, track: int) -> None:
        """Put back the tasks of our worker ``pid`` of ``slot``, which is gone (after a lock
        failure: handed over by :meth:`StateStore.abandon` instead)."""
        if self._store.lock_failed:
            return
        with self._store.locked():
            for name in self._store.lease_names():
                lease = LeaseName.parse(name)
                if lease is not None and lease.owned_by(self._farmer, slot, pid):
                    self._revoke(live_name(name),
                                 {"node": self._identity.node, "worker": slot + 1}, track)

    def _revoke(self, name: str, owner: dict[str, Any], track: int) -> int:
        """*locked* Take over lease ``name`` and mark it on ``track``; how many tasks came
        back."""
        tasks = self._store.revoke(name)
        now = self._clock()
        events = [instant("lease taken over", now, track,
                          {"lease": name, **owner, "tasks": len(tasks),
                           "ids": [task.id for task in tasks[:20]]})]
        if tasks:
            events += counter_events(self._timeline, now, running=-len(tasks),
                                     pending=len(tasks))
        self._timeline.append(events)
        return len(tasks)
