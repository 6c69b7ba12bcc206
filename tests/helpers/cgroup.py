"""A real memory cgroup for one test (cgroup v1 or v2), made as root and removed afterwards.

v1: a child of this process's own memory cgroup (whatever confines the test run confines it
too), else of the hierarchy's top; v2: a child of the hierarchy's top, with the memory
controller enabled for its children. Swap is kept out (v1 ``memory.swappiness`` 0 and
``memory.memsw.limit_in_bytes`` = the limit where swap is accounted, v2 ``memory.swap.max``
0), so that going over the limit calls the OOM killer. :meth:`MemoryCgroup.command` runs a
command inside: a shell writes its pid to ``cgroup.procs``, then ``exec``s the command. The
``memory_cgroup`` fixture (conftest.py) makes them and removes them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from taskfarmer.hpc.memory import Cgroup, NodeMemory, find_cgroup


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


class MemoryCgroup:
    """A memory cgroup of this test with a limit."""

    def __init__(self, cgroup: Cgroup) -> None:
        self.cgroup = cgroup
        self.path = cgroup.path

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the cgroup."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"),
                *argv]

    def oom_kills(self) -> int:
        """The OOM killer's kills in the cgroup so far."""
        kills = NodeMemory(self.cgroup).oom_kills()
        assert kills is not None, f"{self.path}: the kernel counts no OOM kills"
        return kills

    def remove(self) -> None:
        """Kill what still runs inside (a failed test's farmer), remove the directory."""
        deadline = time.monotonic() + 10
        while True:
            for pid in (self.path / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except OSError:  # EBUSY until the killed processes are gone
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def create(name: str, limit: int) -> tuple[MemoryCgroup | None, str]:
    """A new cgroup ``name`` limited to ``limit`` bytes, or (None, why it cannot be made)."""
    if os.geteuid() != 0:
        return None, "making a memory cgroup needs root"
    own = find_cgroup(Path("/proc/self/cgroup").read_text(),
                      Path("/proc/self/mountinfo").read_text())
    if own is None:
        return None, "no memory cgroup hierarchy is mounted"
    parents = [own.path, own.top] if own.version == 1 else [own.top]
    errors = []
    for parent in dict.fromkeys(parents):
        try:
            return _made(parent / name, own, limit), ""
        except OSError as error:
            errors.append(f"{parent}: {error}")
    return None, "cannot make a memory cgroup: " + "; ".join(errors)


def _made(path: Path, own: Cgroup, limit: int) -> MemoryCgroup:
    if own.version == 2:
        _write(path.parent / "cgroup.subtree_control", "+memory")
    path.mkdir()
    try:
        if own.version == 1:
            _write(path / "memory.limit_in_bytes", str(limit))
            _write(path / "memory.swappiness", "0")
            if (path / "memory.memsw.limit_in_bytes").exists():
                _write(path / "memory.memsw.limit_in_bytes", str(limit))
        else:
            _write(path / "memory.max", str(limit))
            if (path / "memory.swap.max").exists():
                _write(path / "memory.swap.max", "0")
    except OSError:
        path.rmdir()
        raise
    return MemoryCgroup(Cgroup(own.version, path, own.top))
