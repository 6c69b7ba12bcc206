"""The memory a farm's tasks may use: the memory cgroup that confines the farmer, or the node's.

On clusters a job is confined by a memory cgroup (SLURM's ``task/cgroup`` plugin); when its
processes together exceed the limit, the kernel's OOM killer kills one of them. This module
reads what the farm needs to avoid that and to notice it (cgroup v1 and v2):

========================  =================================  ================================
what                      v1 (``memory`` hierarchy)          v2 (unified hierarchy)
========================  =================================  ================================
the limit                 ``memory.limit_in_bytes``          ``memory.max``
the usage                 ``memory.usage_in_bytes``          ``memory.current``
file cache in the usage   ``memory.stat`` ``total_*_file``   ``memory.stat`` ``*_file``
OOM kills so far          ``memory.oom_control`` oom_kill    ``memory.events`` oom_kill
========================  =================================  ================================

The process's cgroup comes from ``/proc/self/cgroup`` (``N:memory:/path`` in v1, ``0::/path``
in v2), the directory from the hierarchy's mount in ``/proc/self/mountinfo`` (whose root, in a
container, may be the cgroup itself). The limit that binds is the least one on the way from
that directory up to the mount (SLURM sets it on the job's cgroup, the processes live in the
step's); the usage that counts is that cgroup's. File cache is left out of the usage: the
kernel reclaims it before it kills anything. The OOM kill counter is the process's own
cgroup's: v1 counts a kill in the victim's cgroup only, v2 in its ancestors too; both count
the kills of the global OOM killer as well. v1 before Linux 4.13 has no such counter: there
``memory.failcnt`` (how often a limit was hit) stands in for it.

Outside a limit (no cgroup, or no limit on the way up), the node's ``MemTotal`` and
``MemAvailable`` (``/proc/meminfo``) stand for the capacity and what is free of it.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

#: cgroup v1 writes "no limit" as the largest page multiple below 2**63; anything from here up
#: is no limit.
NO_LIMIT = 1 << 62
#: Units of a size (``--mem-per-task``): powers of 1024.
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?)(?:I?B)?\s*$",
                   re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes of a size such as ``500M``, ``2G``, ``1.5g``, ``2GiB`` or ``1048576`` (K, M, G,
    T: powers of 1024; a trailing ``B`` or ``iB`` is allowed).

    Raises:
        UsageError: not a size, or not a positive one (NaN, infinite, negative, zero).
    """
    match = _SIZE.match(text)
    if match is None:
        raise UsageError(text, "not a size (a number with K, M, G or T, e.g. 500M or 2G)")
    value = float(match.group(1)) * UNITS[match.group(2).upper()]
    if not math.isfinite(value):
        raise UsageError(text, "not a finite size")
    if value < 1:
        raise UsageError(text, "a size must be at least one byte")
    return int(value)


@dataclass(frozen=True)
class Room:
    """How much memory the farm's tasks have: all of it, and what is in use."""

    capacity: int  # bytes: the cgroup's limit, else the node's memory
    used: int  # bytes in use and not reclaimable (file cache left out)
    confined: bool  # a cgroup limit: near it, the OOM killer acts within the cgroup


@dataclass(frozen=True)
class Cgroup:
    """A process's memory cgroup: its directory, the mount above it and the version."""

    version: int  # 1 or 2
    path: Path  # the cgroup's directory
    top: Path  # the hierarchy's mount point (the highest directory we may read)

    def chain(self) -> list[Path]:
        """The cgroup's directory and its parents up to the mount point."""
        paths = [self.path]
        while paths[-1] != self.top and self.top in paths[-1].parents:
            paths.append(paths[-1].parent)
        return paths


def find_cgroup(proc_cgroup: str, mountinfo: str) -> Cgroup | None:
    """The memory cgroup that ``/proc/self/cgroup`` names, in the hierarchy that
    ``/proc/self/mountinfo`` mounts (v1's ``memory`` controller first, else v2's); None if
    neither is there."""
    mounts = _cgroup_mounts(mountinfo)
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number.isdigit() and "memory" in controllers.split(",") and 1 in mounts:
            return _located(1, path, *mounts[1])
    for line in proc_cgroup.splitlines():
        if line.startswith("0::") and 2 in mounts:
            return _located(2, line[3:], *mounts[2])
    return None


def _cgroup_mounts(mountinfo: str) -> dict[int, tuple[str, str]]:
    """Version -> (root within the hierarchy, mount point) of the memory hierarchies mounted:
    v1's with the ``memory`` option, v2's."""
    found: dict[int, tuple[str, str]] = {}
    for line in mountinfo.splitlines():
        head, separator, tail = line.partition(" - ")
        fields, after = head.split(), tail.split()
        if not separator or len(fields) < 5 or len(after) < 3:
            continue
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if after[0] == "cgroup" and "memory" in after[2].split(","):
            found.setdefault(1, (root, point))
        elif after[0] == "cgroup2":
            found.setdefault(2, (root, point))
    return found


def _unescape(field: str) -> str:
    """A mountinfo path field: spaces and such are written as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def _located(version: int, path: str, root: str, point: str) -> Cgroup:
    """The directory of cgroup ``path`` in a hierarchy mounted at ``point`` from ``root``."""
    relative = path
    if root != "/" and (path == root or path.startswith(root.rstrip("/") + "/")):
        relative = path[len(root):]
    top = Path(point)
    return Cgroup(version, top / relative.lstrip("/"), top)


def limit_value(text: str) -> int | None:
    """A limit file's value in bytes; None for no limit (v2's ``max``, v1's huge number)."""
    text = text.strip()
    if not text.isdigit():
        return None
    value = int(text)
    return value if value < NO_LIMIT else None


def counter(text: str, key: str) -> int | None:
    """The value of a ``key N`` line (``memory.stat``, ``memory.events``, ``oom_control``,
    ``/proc/meminfo`` without its ``:``); None if there is none."""
    match = _counter_line(key).search(text)
    return int(match.group(1)) if match else None


@functools.cache
def _counter_line(key: str) -> re.Pattern[str]:
    """The pattern of :func:`counter`'s line, compiled once per key (the OOM kill counter is
    read twice per task: re's own cache lookup cost more than the match)."""
    return re.compile(rf"^{re.escape(key)}:? +(\d+)", re.MULTILINE)


def node_room(meminfo: str) -> Room | None:
    """The node's memory from ``/proc/meminfo``: ``MemTotal``, of which ``MemAvailable`` is
    free; None if either is missing."""
    total, available = counter(meminfo, "MemTotal"), counter(meminfo, "MemAvailable")
    if total is None or available is None:
        return None
    return Room(total * 1024, max(0, total - available) * 1024, confined=False)


#: The files of each version: limit, usage, file cache keys in memory.stat, OOM kill counter.
_FILES = {
    1: ("memory.limit_in_bytes", "memory.usage_in_bytes",
        ("total_inactive_file", "total_active_file"), "memory.oom_control"),
    2: ("memory.max", "memory.current", ("inactive_file", "active_file"), "memory.events"),
}


class NodeMemory:
    """Reads the farmer's memory cgroup, else ``/proc/meminfo``.

    Args:
        cgroup: the farmer's memory cgroup; None if it has none.
        proc: where ``/proc`` is (tests give a fake one).
    """

    def __init__(self, cgroup: Cgroup | None, proc: Path = Path("/proc")) -> None:
        self.cgroup = cgroup
        self._proc = proc
        self._kills_fd: int | None = None  # the OOM kill counter's file, kept open

    @classmethod
    def current(cls, proc: Path = Path("/proc")) -> NodeMemory:
        """This process's memory cgroup (none if unreadable)."""
        cgroup = find_cgroup(_read(proc / "self" / "cgroup") or "",
                             _read(proc / "self" / "mountinfo") or "")
        return cls(cgroup, proc)

    def room(self) -> Room | None:
        """The memory the farm's tasks have now: the binding cgroup limit and that cgroup's
        usage, else the node's; None if nothing can be read."""
        if self.cgroup is not None:
            limit_file, usage_file, cache_keys, _ = _FILES[self.cgroup.version]
            limits = [(value, path) for path in self.cgroup.chain()
                      if (value := limit_value(_read(path / limit_file) or "")) is not None]
            if limits:
                limit, path = min(limits)
                usage = _read(path / usage_file)
                if usage is not None and usage.strip().isdigit():
                    stat = _read(path / "memory.stat") or ""
                    cache = sum(counter(stat, key) or 0 for key in cache_keys)
                    return Room(limit, max(0, int(usage) - cache), confined=True)
        return node_room(_read(self._proc / "meminfo") or "")

    def oom_kills(self) -> int | None:
        """How many processes the OOM killer has killed in the farmer's cgroup so far; in v1
        before Linux 4.13, which does not count them, how often a limit on the way up was hit
        (``memory.failcnt``, summed: it rises when the kernel had to reclaim or kill); None
        if neither can be read."""
        if self.cgroup is None:
            return None
        version = self.cgroup.version
        kills = counter(self._read_kills() or "", "oom_kill")
        if kills is None and version == 1:
            hits = [_read(path / "memory.failcnt") or "" for path in self.cgroup.chain()]
            counts = [int(text) for text in hits if text.strip().isdigit()]
            return sum(counts) if counts else None
        return kills

    def _read_kills(self) -> str | None:
        """The text of the cgroup's file with the OOM kill counter, read before and after
        every task: kept open (by each worker, which opens it at its first task) and read
        with ``pread`` at offset 0, which makes the kernel generate it afresh (an open and a
        close per task cost 3/4 of the read). The descriptor lives as long as the worker."""
        assert self.cgroup is not None
        if self._kills_fd is None:
            try:
                self._kills_fd = os.open(self.cgroup.path / _FILES[self.cgroup.version][3],
                                         os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        try:
            return os.pread(self._kills_fd, 4096, 0).decode("ascii", "replace")  # ~70 bytes
        except OSError:
            return None


def _read(path: Path) -> str | None:
    """A small file's text; None if it cannot be read (a file the kernel does not have)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
