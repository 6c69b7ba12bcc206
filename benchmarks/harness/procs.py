"""The tools' processes: started in their own session, waited for, killed with their tree.

:class:`LineCounter` and :class:`TreeSampler` watch a run: the lines of a growing file, and the
memory of the farmer's process tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# Every process started here, so that an interrupted run leaves nothing behind.
_LIVE: list[subprocess.Popen[bytes]] = []


def launch(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    stdin_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start *argv* in its own session (so the whole tree can be signalled)."""
    with log_path.open("ab") as out:
        stdin = stdin_path.open("rb") if stdin_path else None
        try:
            p = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=stdin if stdin else subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if stdin:
                stdin.close()
    _LIVE.append(p)
    return p


def kill_tree(p: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL, the session started by :func:`launch`."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, sig)
        try:
            p.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue
    # Task processes may still linger in the group after the leader exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)


def reap(p: subprocess.Popen[bytes]) -> None:
    """Forget *p*, which has exited or been killed."""
    with contextlib.suppress(ValueError):
        _LIVE.remove(p)


def wait_all(
    procs: Sequence[subprocess.Popen[bytes]], timeout: float
) -> tuple[list[int | None], bool]:
    """Wait for all *procs* until *timeout* s from now; kill the rest. -> (rcs, killed)."""
    deadline = time.monotonic() + timeout
    killed = False
    rcs: list[int | None] = []
    for p in procs:
        try:
            rcs.append(p.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            kill_tree(p)
            rcs.append(None)
            killed = True
        reap(p)
    return rcs, killed


def cleanup_live() -> None:
    """Kill every process tree still running, at the end of the harness or on interrupt."""
    for p in list(_LIVE):
        if p.poll() is None:
            kill_tree(p)
        reap(p)


class LineCounter:
    """Lines of a growing (append-only) file, reading only what was added since last time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        """Complete lines in the file now (the count so far if it cannot be read)."""
        try:
            with self.path.open("rb") as f:
                if os.fstat(f.fileno()).st_size < self.offset:  # rewritten: start over
                    self.offset = self.lines = 0
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return self.lines
        end = data.rfind(b"\n") + 1  # count complete lines only
        self.lines += data.count(b"\n", 0, end)
        self.offset += end
        return self.lines


class TreeSampler:
    """Peak memory of the farmer's process tree, from /proc/<pid>/status.

    The tree is found through the ppid of every process (``/proc/*/task/*/children`` is often
    compiled out).  A process counts as *farmer* if its cmdline equals the root's (forked
    workers), or its argv[0] is a Python interpreter or the farmer executable (spawned
    workers); everything else (``sh`` running tasks, ``true``, ...) is ignored, and so is a
    child caught between fork() and exec() (seen in one sample only).  VmHWM is the
    kernel's per-process high-water mark, so a 50 ms sampling period only limits which
    short-lived processes are seen, not the peak of those that are.
    """

    def __init__(self, root: int, farmer_argv0: str) -> None:
        self.root = root
        self.farmer_base = os.path.basename(farmer_argv0)
        self.root_cmdline = self._cmdline(root)
        self.not_farmer: set[int] = set()
        self.previous: set[int] = set()
        self.peak_hwm_kb = 0
        self.peak_hwm_role = ""
        self.peak_total_rss_kb = 0
        self.max_farmer_procs = 0
        self.samples = 0

    @staticmethod
    def _cmdline(pid: int) -> list[str]:
        """The argv of *pid*, empty if it is gone (or a zombie)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            return []
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]

    @staticmethod
    def _status(pid: int) -> tuple[int, int]:
        """(VmHWM, VmRSS) of *pid* in KiB, zeros if it is gone."""
        hwm = rss = 0
        try:
            with open(f"/proc/{pid}/status") as f:
                for ln in f:
                    if ln.startswith("VmHWM:"):
                        hwm = int(ln.split()[1])
                    elif ln.startswith("VmRSS:"):
                        rss = int(ln.split()[1])
                        break
        except (OSError, ValueError):
            pass
        return hwm, rss

    def _tree(self) -> list[int]:
        """The root and all its descendants, from the ppid field of every /proc/PID/stat."""
        children: dict[int, list[int]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if len(fields) > 1:
                children.setdefault(int(fields[1]), []).append(int(name))
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, ()))
        return tree

    def _farmer_now(self, pid: int) -> bool:
        """Classify *pid* by its current cmdline; remember only 'not a farmer' (final)."""
        if pid == self.root:
            return True
        cmd = self._cmdline(pid)
        if not cmd:
            return False  # gone, or a zombie
        base = os.path.basename(cmd[0])
        farmer = cmd == self.root_cmdline or base.startswith("python") or base == self.farmer_base
        if not farmer:
            self.not_farmer.add(pid)
        return farmer

    def sample(self) -> None:
        """Walk the tree once and update the peaks."""
        self.samples += 1
        # The root may have exec'd since (wrapper scripts, pyenv shims): refresh its cmdline.
        self.root_cmdline = self._cmdline(self.root) or self.root_cmdline
        total = nprocs = 0
        current: set[int] = set()
        for pid in self._tree():
            if pid in self.not_farmer or not self._farmer_now(pid):
                continue
            current.add(pid)
            # A child between fork() and exec() of a task looks like the farmer (same cmdline,
            # parent's pages): count non-root processes only once seen in two samples in a row.
            if pid != self.root and pid not in self.previous:
                continue
            hwm, rss = self._status(pid)
            if hwm == 0 and rss == 0:
                continue
            nprocs += 1
            total += rss
            if hwm > self.peak_hwm_kb:
                self.peak_hwm_kb = hwm
                self.peak_hwm_role = "main" if pid == self.root else "worker"
        self.previous = current
        self.peak_total_rss_kb = max(self.peak_total_rss_kb, total)
        self.max_farmer_procs = max(self.max_farmer_procs, nprocs)
