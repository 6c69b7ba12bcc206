"""Chaos: simulated nodes sharing one workdir are SIGKILLed at random and replaced.

Each node is a farmer in its own UTS and PID namespace (``unshare --uts --pid --fork
--mount-proc``) with its own hostname; several nodes reuse a hostname, and inside every
namespace the farmer is pid 1, so hostname + pid never identify a farmer. Killing the
namespace's first process kills the whole node: farmer, workers and tasks, at whatever
instant, including in the middle of a state update. The dead nodes' leases expire and the
survivors (or the replacements) take their tasks over.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.farmer import farmer_env, ids, verify_problems, wait_for, write_tasklist

pytestmark = pytest.mark.chaos

TASKS = 150
LEASE = "2"


def _can_unshare() -> str:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--uts", "--pid", "--fork", "--mount-proc",
                            "--kill-child", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create UTS+PID namespaces here: {probe.stderr.strip()}"
    return ""


def start_node(name: str, tasks: Path, log: Path) -> subprocess.Popen:
    """A simulated node: a farmer as pid 1 of fresh UTS+PID namespaces, hostname ``name``."""
    command = [
        "unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child",
        "sh", "-c", f'hostname {name} && exec "$@"', "node",
        sys.executable, "-m", "taskfarmer", str(tasks), "-n", "2", "--lease", LEASE,
    ]
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=farmer_env(),
                                start_new_session=True)


def test_nodes_killed_at_random_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    reason = _can_unshare()
    if reason:
        pytest.skip(reason)
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "20261121")))
    runs = tmp_path / "runs"
    tasks = write_tasklist(tmp_path / "tasks.txt", [
        f"sleep 0.{rng.randint(1, 4)}; echo {i} >> {runs}" for i in range(TASKS)])
    workdir = tmp_path / "tasks.txt_workdir"
    log = tmp_path / "nodes.log"
    nodes: list[subprocess.Popen] = [start_node(f"node{k}", tasks, log) for k in range(3)]
    kills = 0
    try:
        for round_ in range(12):
            done = len(ids(workdir / "finished"))
            if done >= TASKS - 10:
                break
            # Let some work happen between kills (a condition, not a sleep).
            wait_for(lambda d=done: len(ids(workdir / "finished")) >= d + 4
                     or all(n.poll() is not None for n in nodes), timeout=120,
                     what="progress between kills")
            live = [n for n in nodes if n.poll() is None]
            if not live:
                break
            victim = rng.choice(live)
            os.kill(victim.pid, signal.SIGKILL)  # --kill-child takes the namespace down
            victim.wait()
            kills += 1
            nodes.append(start_node(f"node{round_ % 3}", tasks, log))  # names repeat
        for node in nodes:
            node.wait(timeout=300)
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
    logtext = log.read_text(errors="replace")
    assert kills >= 3, logtext
    assert "took over lease" in logtext
    assert sorted(ids(workdir / "finished")) == list(range(TASKS)), logtext
    assert ids(workdir / "failed") == []
    assert ids(workdir / "toprocess") == []
    assert os.listdir(workdir / "leases") == []
    ran = [int(x) for x in runs.read_text().split()]
    assert set(ran) == set(range(TASKS))  # some ran twice (killed mid-way), none recorded twice
    json.loads((workdir / "timeline.json").read_text())
    assert verify_problems(workdir) == []
    # the job log never shows an outcome that was not recorded: at most one "finished" line
    # per task (a farmer killed between the record and the log line leaves none)
    logged = [line.split("\t") for line in (workdir / "joblog").read_text().splitlines()[1:]]
    finished = [int(fields[0]) for fields in logged if fields[9] == "finished"]
    assert len(finished) == len(set(finished)) and set(finished) <= set(range(TASKS))
    assert len(finished) >= TASKS - 3 * kills
