"""Exactly once when a farmer's main process stalls (issue 21): it stops heartbeating while its
workers go on, as a main process blocked in an NFS or Lustre call, swapped out or paused does.

- Seen from another node (here: a farmer in its own PID namespace, whose processes the other
  farmer cannot see), the stalled farmer's leases expire and are taken over; its workers'
  late results, and the task each was running, are discarded, never recorded a second time.
- On its own node, a farmer whose workers live is never taken over, however late its
  heartbeats.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.farmer import farmer_env, ids, run_farmer, start_farmer, wait_for, write_tasklist

TASKS = 200
LEASE = "2"


def tasklist(tmp_path: Path) -> Path:
    return write_tasklist(tmp_path / "t", [f"sleep 0.2; echo {n}" for n in range(TASKS)])


def finished(workdir: Path) -> int:
    path = workdir / "finished"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def assert_exactly_once(workdir: Path) -> None:
    done = ids(workdir / "finished")
    assert sorted(done) == list(range(TASKS)), f"{len(done)} lines for {len(set(done))} IDs"
    assert ids(workdir / "failed") == [] and ids(workdir / "toprocess") == []
    assert os.listdir(workdir / "leases") == []


def start_in_own_pid_namespace(args: list[str], log: Path) -> subprocess.Popen:
    """A farmer that no other farmer here can see the processes of: another node, to them."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
             sys.executable, "-m", "taskfarmer", *args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=farmer_env(),
            start_new_session=True)


def child_of(pid: int) -> int:
    """The one child of ``pid`` (the farmer ``unshare --fork`` started)."""
    children: list[str] = []

    def found() -> bool:
        children[:] = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return len(children) == 1
    wait_for(found, what="the namespace's first process")
    return int(children[0])


def test_a_stalled_farmers_late_results_are_discarded_not_recorded_twice(tmp_path: Path
                                                                          ) -> None:
    tasks = tasklist(tmp_path)
    workdir = tmp_path / "t_workdir"
    remote = start_in_own_pid_namespace([str(tasks), "-n", "4", "--lease", LEASE],
                                        tmp_path / "remote.log")
    main = child_of(remote.pid)
    wait_for(lambda: finished(workdir) >= 10, what="the remote farmer working")
    local = start_farmer([str(tasks), "-n", "2", "--lease", LEASE])
    os.kill(main, signal.SIGSTOP)  # its heartbeats stop, its workers go on
    try:
        assert local.stdout is not None
        seen: list[str] = []
        wait_for(lambda: seen.append(local.stdout.readline()) or "took over lease" in seen[-1]
                 or local.poll() is not None, timeout=120, what="a takeover")
        assert "took over lease" in seen[-1], "".join(seen)
    finally:
        os.kill(main, signal.SIGCONT)
    out, _ = local.communicate(timeout=300)
    assert remote.wait(timeout=300) == 0, (tmp_path / "remote.log").read_text()
    assert local.returncode == 0, "".join(seen) + out
    assert_exactly_once(workdir)
    joblog = (workdir / "joblog").read_text()
    assert "\tdiscarded\t" in joblog  # the stalled farmer's late results, logged


def test_a_live_farmer_on_this_node_is_never_taken_over(tmp_path: Path) -> None:
    tasks = tasklist(tmp_path)
    workdir = tmp_path / "t_workdir"
    stalled = start_farmer([str(tasks), "-n", "2", "--lease", LEASE])
    wait_for(lambda: finished(workdir) >= 10, what="the first farmer working")
    other = start_farmer([str(tasks), "-n", "2", "--lease", LEASE])
    os.kill(stalled.pid, signal.SIGSTOP)  # the main process only: its workers go on
    try:
        # Three leases' worth of silence while the other farmer works on: time enough for it
        # to look at the stalled farmer's leases six times (every lease / 4 s).
        until = time.monotonic() + 3 * float(LEASE)
        wait_for(lambda: time.monotonic() > until or other.poll() is not None, timeout=60,
                 what="three leases of silence")
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    out, _ = other.communicate(timeout=300)
    first, _ = stalled.communicate(timeout=300)
    assert other.returncode == 0 and stalled.returncode == 0, out + first
    assert "took over lease" not in out
    assert_exactly_once(workdir)


def test_a_lease_shorter_than_the_heartbeats_allow_is_refused(tmp_path: Path) -> None:
    tasks = tasklist(tmp_path)
    done = run_farmer([str(tasks), "--lease", "1.5"])
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "farmer: error: Invalid value for '--lease': 1.5 must be at least 2"]
    assert not (tmp_path / "t_workdir").exists()


HOLD = 3 * float(LEASE)  # how long the lock is held from outside


def test_leases_stay_fresh_while_the_main_loop_waits_for_the_lock(tmp_path: Path) -> None:
    """A contended lock (here: another process holds it three leases long) blocks each
    farmer's main loop, not its heartbeats: they come from a thread. Every lease stays
    fresh, and the farmer of "another node" (its own PID namespace, so it judges the
    other's leases by their heartbeats) takes nothing over."""
    tasks = write_tasklist(tmp_path / "t", [f"sleep 0.3; echo {n}" for n in range(40)])
    workdir = tmp_path / "t_workdir"
    remote = start_in_own_pid_namespace([str(tasks), "-n", "2", "--lease", LEASE],
                                        tmp_path / "remote.log")
    wait_for(lambda: finished(workdir) >= 2, what="the remote farmer working")
    local = start_farmer([str(tasks), "-n", "2", "--lease", LEASE])
    leases = workdir / "leases"
    wait_for(lambda: len(os.listdir(leases)) >= 4, what="both farmers' workers")
    held = tmp_path / "held"
    blocker = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); open(sys.argv[2], 'w').close(); "
        f"time.sleep({HOLD})"), str(workdir / "lock"), str(held)])
    wait_for(held.exists, what="the lock held from outside")
    since = time.monotonic()
    ages: list[float] = []
    while time.monotonic() - since < HOLD - 0.5:
        if time.monotonic() - since > float(LEASE) / 2:  # the main loops are blocked by now
            now = time.time()
            ages += [now - (leases / name).stat().st_mtime for name in os.listdir(leases)]
        time.sleep(0.1)
    assert blocker.wait(timeout=30) == 0
    out, _ = local.communicate(timeout=300)
    assert remote.wait(timeout=300) == 0, (tmp_path / "remote.log").read_text()
    assert local.returncode == 0, out
    assert ages and max(ages) < 0.75 * float(LEASE), f"a lease went {max(ages):.1f} s unrenewed"
    assert "took over lease" not in out + (tmp_path / "remote.log").read_text()
    done = ids(workdir / "finished")
    assert sorted(done) == list(range(40))
    assert "\tdiscarded\t" not in (workdir / "joblog").read_text()
