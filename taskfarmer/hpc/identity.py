"""Who a farmer process is, and whether a process named in a lease is provably dead.

Hostnames repeat across containers, SLURM's simulated nodes and PID namespaces, and a pid is
only meaningful inside its own PID namespace on one boot of one kernel. A lease therefore
records the boot id, the PID-namespace inode, the pid and the process start time; another
process can prove the owner dead only when it shares the boot and the namespace and finds the
pid gone or reused (different start time). Anything else must wait for the lease to expire.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def boot_id() -> str:
    """The kernel's boot id (changes at every reboot)."""
    return _read("/proc/sys/kernel/random/boot_id")


def pid_namespace() -> str:
    """The inode of this process's PID namespace, e.g. ``pid:[4026531836]``."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3 and on of /proc/PID/stat (state first), None unless ``pid`` runs in this PID
    namespace: absent, or a zombie (it has exited; an orphaned zombie can linger where nobody
    reaps it)."""
    stat = _read(f"/proc/{pid}/stat")
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields


def process_start_time(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat); None when
    no such process runs in this PID namespace."""
    fields = _stat_fields(pid)
    return fields[19] if fields is not None else None


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` (field 4 of /proc/PID/stat); None when no such process runs in
    this PID namespace (absent, or a zombie)."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def is_stopped(pid: int) -> bool:
    """True if ``pid`` is stopped (SIGSTOP, a debugger: state ``T`` or ``t``)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] in ("T", "t")


def node_name(environ: Mapping[str, str], hostname: str) -> str:
    """The name of the node we run on: SLURM's node name where set, else the hostname."""
    return environ.get("SLURMD_NODENAME") or hostname


@dataclass(frozen=True)
class Identity:
    """Everything needed to name a process in logs and to prove it dead later."""

    host: str
    node: str
    pid: int
    boot: str
    pidns: str
    start: str
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def current(
        cls,
        environ: Mapping[str, str] | None = None,
        hostname: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> Identity:
        """Identity of the calling process; hostname and environment can be injected."""
        environ = os.environ if environ is None else environ
        host = hostname if hostname is not None else socket.gethostname()
        pid = os.getpid()
        return cls(
            host=host,
            node=node_name(environ, host),
            pid=pid,
            boot=boot_id(),
            pidns=pid_namespace(),
            start=process_start_time(pid) or "",
            extra=dict(extra or {}),
        )

    def to_text(self) -> str:
        """Plain ``key=value`` lines, as stored in a lease file."""
        items = {
            "host": self.host,
            "node": self.node,
            "pid": str(self.pid),
            "boot": self.boot,
            "pidns": self.pidns,
            "start": self.start,
            **self.extra,
        }
        return "".join(f"{key}={value}\n" for key, value in items.items())

    @classmethod
    def from_text(cls, text: str) -> Identity:
        """Parse :meth:`to_text` output; missing keys become empty (never provable)."""
        items = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        known = ("host", "node", "pid", "boot", "pidns", "start")
        try:
            pid = int(items.get("pid", "0"))
        except ValueError:
            pid = 0
        return cls(
            host=items.get("host", ""),
            node=items.get("node", ""),
            pid=pid,
            boot=items.get("boot", ""),
            pidns=items.get("pidns", ""),
            start=items.get("start", ""),
            extra={k: v for k, v in items.items() if k not in known},
        )

    def provably_dead(self, observer: Identity) -> bool:
        """True only if ``observer`` can prove this process no longer exists.

        Proof needs the same boot and PID namespace; then the pid must be gone or belong to
        a process started at another time (pid reuse).
        """
        if not self.same_machine(observer):
            return False
        return process_start_time(self.pid) != self.start

    def same_machine(self, observer: Identity) -> bool:
        """True if ``observer`` sees this process's pid as its own: the same boot and PID
        namespace (then whether it lives is a fact, not a guess from heartbeats)."""
        return (bool(self.boot) and bool(self.pidns) and self.pid > 0
                and (self.boot, self.pidns) == (observer.boot, observer.pidns))
