"""Helpers for tests that run the real ``farmer`` command and read its workdir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable

FARMER = [sys.executable, "-m", "taskfarmer"]


def write_tasklist(path: Path, lines: Sequence[str]) -> Path:
    """Write one task per line."""
    path.write_text("".join(line + "\n" for line in lines))
    return path


def farmer_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without SLURM/SCRATCH influence, plus ``extra``.

    A ``PYTHONPATH`` in ``extra`` goes before ours: tests run with ``PYTHONPATH`` = the
    checkout under test, which the farmer must keep importing.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLURM")
           and k not in ("SCRATCH", "TASKFARMER_LOCK", "TASKFARMER_IO")}
    extra = dict(extra or {})
    if "PYTHONPATH" in extra and env.get("PYTHONPATH"):
        extra["PYTHONPATH"] += os.pathsep + env["PYTHONPATH"]
    env.update(extra)
    return env


def run_farmer(args: Sequence[str], env: Mapping[str, str] | None = None,
               timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``farmer ARGS`` (in ``cwd``) to completion, capturing its output."""
    return subprocess.run([*FARMER, *args], capture_output=True, text=True, timeout=timeout,
                          env=farmer_env(env), stdin=subprocess.DEVNULL, cwd=cwd)


def start_farmer(args: Sequence[str], env: Mapping[str, str] | None = None,
                 **kwargs: object) -> subprocess.Popen:
    """Start ``farmer ARGS`` in the background (its own process group)."""
    return subprocess.Popen([*FARMER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=farmer_env(env), stdin=subprocess.DEVNULL,
                            start_new_session=True, **kwargs)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition"
             ) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def ids(path: Path) -> list[int]:
    """Task IDs of an ``ID task`` state file, in file order."""
    if not path.exists():
        return []
    return [int(line.split(" ", 1)[0]) for line in path.read_text().splitlines() if line]


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pids_in(directory: Path) -> list[int]:
    """PIDs that tasks wrote into ``directory/*.pid``."""
    return [int(p.read_text().split()[0]) for p in directory.glob("*.pid")
            if p.read_text().strip()]


def signal_tree(root: int, sig: int) -> None:
    """Send ``sig`` to ``root`` and all its descendants, like SLURM signalling a job step."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        stack.extend(children.get(pid, []))


def stop(process: subprocess.Popen, sig: int = signal.SIGUSR1, timeout: float = 30
         ) -> subprocess.CompletedProcess:
    """Signal a background farmer and collect how it ended."""
    process.send_signal(sig)
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def no_traceback(*texts: str) -> None:
    """Neither output holds a Python traceback or interpreter noise."""
    for text in texts:
        assert "Traceback" not in text, text
        assert "Exception ignored" not in text, text


def error_lines(stderr: str) -> list[str]:
    """The ``farmer: error:`` lines of ``stderr``."""
    return [line for line in stderr.splitlines() if line.startswith("farmer: error:")]


def verify_problems(workdir: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """What ``farmer -w WORKDIR --verify`` finds wrong: [] when it says consistent (exit 0),
    else its output (each line names the tasks and the file)."""
    done = run_farmer(["-w", str(workdir), "--verify"], env)
    if done.returncode == 0 and "Traceback" not in done.stderr:
        return []
    return [f"--verify exit {done.returncode}: {done.stdout}{done.stderr}"]
