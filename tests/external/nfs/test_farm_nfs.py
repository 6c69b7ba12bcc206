"""Farmers on two NFS client nodes sharing one workdir: exactly-once, takeover, bad locks.

Each scenario runs the real farmer on the lab's nodes (see README.md here) against a workdir
on the export, and checks the files on the server's disk.  Task counts stay small: a node has
one vCPU and forks slowly.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable

import pytest

from .farmers import (
    assert_exactly_once,
    farmer_command,
    ids,
    no_nul,
    start_farmers,
    wait_all,
    write_tasks,
)
from .lab import NODE_LOCAL, MountOptions, NfsLab, Result

V42 = MountOptions()
V3 = MountOptions(vers="3")
V3_NOLOCK = MountOptions(vers="3", lock=False)

TASKS = 48


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` (reading the server's disk) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def tasks(count: int, failing: int = -1) -> list:
    """``true`` tasks (task ``failing`` fails)."""
    return ["false" if i == failing else "true" for i in range(count)]


@pytest.mark.parametrize("lock", ["flock", "soft"])
@pytest.mark.parametrize("nfs", [V42, V3], indirect=True, ids=str)
def test_two_farmers_on_each_of_two_nodes_run_each_task_exactly_once(
        nfs: NfsLab, nfs_dir: Path, lock: str) -> None:
    tasklist = write_tasks(nfs_dir / "t", tasks(TASKS, failing=7))
    farmers = start_farmers(nfs, tasklist, ["-n", "2", "--lock", lock])
    results = wait_all(farmers)
    for result in results:
        assert result.rc == 1, result  # all done, one failed
        assert "Traceback" not in result.err
    assert_exactly_once(nfs_dir / "t_workdir", TASKS, failed=[7])


def test_a_node_killed_is_taken_over_by_the_other(nfs: NfsLab, nfs_dir: Path) -> None:
    """Node A's farmer (its process group) is SIGKILLed in the middle of the list; the farmer
    on node B takes A's tasks over once A's lease expires and finishes every task once."""
    count = 40
    tasklist = write_tasks(nfs_dir / "t", ["sleep 0.2"] * count)
    workdir = nfs_dir / "t_workdir"
    args = ["-n", "2", "--lease", "3"]
    victim, survivor = start_farmers(nfs, tasklist, args, per_node=1)
    wait_until(lambda: len(ids(workdir / "finished")) >= 6, 120, "some tasks to finish")
    victim.job.kill()
    assert victim.wait(60).rc == -9
    result = survivor.wait(240)
    assert result.rc == 0, result
    # Killed between the state append and the timeline append of a hold: see the test below.
    assert_exactly_once(workdir, count, every_outcome_in_timeline=False)
    assert "took over lease" in result.out, result  # A's workers held leases when killed


def one_line_lock_error(result: Result) -> None:
    """Exit 2 with one line on stderr naming the lock problem, no traceback."""
    assert result.rc == 2, result
    lines = [line for line in result.err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("farmer: error: the lock "), result
    assert "did not keep out another farmer" in lines[0], result


def stopped_on_lock_errors(results: list[Result]) -> list[Result]:
    """The farmers that stopped on the lock error (at least one; the others ended done, 0);
    none with a traceback."""
    for result in results:
        assert "Traceback" not in result.err, result
        if result.rc != 0:
            one_line_lock_error(result)
    stopped = [result for result in results if result.rc == 2]
    assert stopped, results
    return stopped


def assert_nothing_twice(workdir: Path) -> None:
    no_nul(workdir)
    recorded = ids(workdir / "finished") + ids(workdir / "failed")
    assert len(recorded) == len(set(recorded)), "a task recorded twice"


def finish_alone(nfs: NfsLab, tasklist: Path, count: int) -> None:
    """One farmer on node A (a lock that works, as only one takes it) finishes the list.

    Farmers that stopped on a lock error handed their leases over (``.dead``): it need not
    wait for them to expire (``--lease 600`` would outlast the test)."""
    leases = list((tasklist.parent / (tasklist.name + "_workdir") / "leases").iterdir())
    assert all(lease.name.endswith(".dead") for lease in leases), leases
    [alone] = start_farmers(nfs, tasklist, ["-n", "2", "--lease", "600"], per_node=1,
                            nodes=[nfs.a])
    result = alone.wait(240)
    assert result.rc == 0, result
    assert_exactly_once(tasklist.parent / (tasklist.name + "_workdir"), count)


@pytest.mark.parametrize("where", ["node-local", "shared"])
def test_scratch_differing_between_nodes_is_detected(nfs: NfsLab, nfs_dir: Path, where: str
                                                     ) -> None:
    """Each node locks its own file: SCRATCH on a node-local disk (same path on both), or
    another directory of the export per node. A farmer notices another holder, stops with
    exit 2 and one line naming the likely cause; nothing is recorded twice."""
    count = 60
    tasklist = write_tasks(nfs_dir / "t", ["sleep 0.05"] * count)
    scratch = {"A": NODE_LOCAL, "B": NODE_LOCAL}
    if where == "shared":
        for name in scratch:
            (nfs_dir / f"scratch{name}").mkdir()
            scratch[name] = nfs.node_path(nfs_dir / f"scratch{name}")
    farmers = start_farmers(nfs, tasklist, ["-n", "2", "--lease", "3"], per_node=1,
                            node_env={name: {"SCRATCH": path} for name, path in scratch.items()})
    for result in stopped_on_lock_errors(wait_all(farmers)):
        assert f"{scratch[result.node]}/taskfarmer_" in result.err
        cause = "SCRATCH node-local?" if where == "node-local" else "SCRATCH differs"
        assert cause in result.err, result
    assert_nothing_twice(nfs_dir / "t_workdir")
    finish_alone(nfs, tasklist, count)


@pytest.mark.parametrize("nfs", [V3_NOLOCK], indirect=True, ids=str)
def test_nolock_mount_is_detected(nfs: NfsLab, nfs_dir: Path) -> None:
    """NFSv3 mounted ``nolock``: flock is local to each node. Detected as above."""
    count = 60
    tasklist = write_tasks(nfs_dir / "t", ["sleep 0.05"] * count)
    farmers = start_farmers(nfs, tasklist, ["-n", "2", "--lease", "3"], per_node=1)
    for result in stopped_on_lock_errors(wait_all(farmers)):
        assert "nolock" in result.err, result
    assert_nothing_twice(nfs_dir / "t_workdir")
    finish_alone(nfs, tasklist, count)


@pytest.mark.parametrize("nfs", [V3_NOLOCK], indirect=True, ids=str)
def test_concurrent_initialization_without_a_working_lock(nfs: NfsLab, nfs_dir: Path) -> None:
    """Three farmers per node start at the same instant on a fresh workdir, and their lock
    does not exclude (``nolock``): none crashes; one task list is created, whole."""
    count = 30
    tasklist = write_tasks(nfs_dir / "t", ["true"] * count)
    go = {node.name: node.dir / "go" for node in (nfs.a, nfs.b)}
    for flag in go.values():
        flag.unlink(missing_ok=True)
    farmers = []
    for node in (nfs.a, nfs.b) * 3:  # each waits for its node's go flag, then starts
        command = (f"while [ ! -e {go[node.name]} ]; do sleep 0.01; done; "
                   + farmer_command(nfs, tasklist, ["-n", "1", "--lease", "3"]))
        farmers.append(node.spawn(command))
    for flag in go.values():
        flag.touch()
    results = [farmer.wait(240) for farmer in farmers]
    for result in results:
        assert result.rc in (0, 2), result
        assert "Traceback" not in result.err, result
        if result.rc == 2:
            one_line_lock_error(result)
    workdir = nfs_dir / "t_workdir"
    assert not list(workdir.glob("*.tmp*"))  # private temporary files, all renamed
    assert_nothing_twice(workdir)
    finish_alone(nfs, tasklist, count)


def varied_sleeps(count: int) -> list:
    """Tasks of 0.05 to 0.3 s, so that results end while heartbeats are due."""
    return [f"sleep 0.{(5 + 7 * i) % 26 + 5:02d}" for i in range(count)]


#: Every mount x lock x load of the kill scenario with TASKFARMER_NFS_FULL=1 (the repeat
#: script, benchmarks/repeat.py); CI runs three of them (each costs a minute or more here).
FULL = os.environ.get("TASKFARMER_NFS_FULL", "") == "1"
KILL_CASES = ([(mount, lock, load) for mount in (V42, V3) for lock in ("flock", "soft")
               for load in (False, True)] if FULL else
              [(V42, "flock", False), (V3, "flock", False), (V42, "soft", True)])


@contextmanager
def cpu_hogs(nfs: NfsLab) -> Iterator[None]:
    """A busy loop on each node while the block runs: every heartbeat and lock hold is late."""
    hogs = [node.spawn("exec sh -c 'while :; do :; done'") for node in (nfs.a, nfs.b)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()


def remove_dead_soft_lock(workdir: Path, node: str) -> None:
    """Act as the user whom a soft lock's waiters tell to remove a lock file no farmer holds:
    remove ``WORKDIR/lock`` if it names a process of ``node`` (all dead by now), or if it
    stays empty, the same file, for 5 s (``node`` was killed between creating and writing it;
    a live holder writes it at once)."""
    lock = workdir / "lock"
    try:
        marker, inode = lock.read_text(errors="replace"), lock.stat().st_ino
    except FileNotFoundError:
        return
    if marker.split("\n")[1:2] != [f"node{node}"]:  # the lock file: PID, host
        if marker:
            return
        time.sleep(5)
        try:
            if lock.read_text() or lock.stat().st_ino != inode:
                return
        except FileNotFoundError:
            return
    lock.unlink(missing_ok=True)


def kill_case_id(case: tuple) -> str:
    mount, lock, load = case
    return f"{mount}-{lock}" + ("-loaded" if load else "")


@pytest.mark.parametrize(("nfs", "lock", "load"), KILL_CASES, indirect=["nfs"],
                         ids=[kill_case_id(case) for case in KILL_CASES])
def test_two_farmers_per_node_killed_on_one_node_are_taken_over_once(
        nfs: NfsLab, nfs_dir: Path, lock: str, load: bool) -> None:
    """Issue 21's lab run: 2 nodes x 2 farmers, ``--lease 5``; every farmer of node A is
    SIGKILLed mid-run; node B's farmers take A's leases over and finish every task once.

    ``load``: a CPU hog on each node, so that heartbeats and lock holds are late. ``soft``: a
    farmer killed inside a lock hold leaves the lock file, which the farmers waiting for it
    ask the user to remove; the test does, once node A's farmers are dead."""
    count = 120 if FULL or not load else 60  # (a loaded run takes twice as long: CI's time)
    tasklist = write_tasks(nfs_dir / "t", varied_sleeps(count))
    workdir = nfs_dir / "t_workdir"
    with cpu_hogs(nfs) if load else nullcontext():
        farmers = start_farmers(nfs, tasklist, ["-n", "2", "--lease", "5", "--lock", lock])
        on_a = [farmer for farmer in farmers if farmer.node is nfs.a]
        wait_until(lambda: len(ids(workdir / "finished")) >= count // 3, 240, "a third done")
        for farmer in on_a:
            farmer.job.kill()
        for farmer in on_a:
            killed = farmer.wait(60)
            assert killed.rc == -9, killed
        nfs.a.killall()  # the workers and tasks of A's farmers too: nothing of A writes now
        if lock == "soft":
            remove_dead_soft_lock(workdir, nfs.a.name)
        for farmer in farmers:
            if farmer not in on_a:
                result = farmer.wait(300)
                assert result.rc == 0, result
                assert "Traceback" not in result.err, result
                assert "warning: --lease 5 is shorter than 6.7 s" in result.out, result
    # A farmer SIGKILLed between the state append and the timeline append of one lock hold
    # leaves its task recorded once and its outcome missing from the timeline (which stays
    # valid); seen once in six runs.
    assert_exactly_once(workdir, count, every_outcome_in_timeline=False)


#: How many times node A is stopped at most, waiting for node B's takeover.
STALL_TRIES = 5


def stalled_until_taken_over(farmers: list, stalled: list, timeout: float) -> bool:
    """Whether a farmer not in ``stalled`` took a lease over within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any("took over lease" in farmer.job.output()
               for farmer in farmers if farmer not in stalled):
            return True
        time.sleep(0.2)
    return False


#: The stall scenario on both mounts with TASKFARMER_NFS_FULL=1; CI runs NFSv3 (v4.2's polled
#: lock makes each stall inside a lock hold cost a minute or more, and CI has 30 minutes).
STALL_MOUNTS = [V42, V3] if FULL else [V3]


@pytest.mark.parametrize("nfs", STALL_MOUNTS, indirect=True, ids=str)
def test_a_node_stalled_past_its_lease_records_nothing_twice(nfs: NfsLab, nfs_dir: Path
                                                             ) -> None:
    """Node A's farmers (their process groups) are stopped until node B has taken their
    leases over, then continued: A discards its late results and both finish, each task
    recorded once. A CPU hog on each node makes every heartbeat late as well.

    A farmer stopped inside a lock hold (or, on NFSv3, granted the lock while stopped) keeps
    the workdir's lock: nobody can take anything over until it continues. Then A is continued
    and stopped again, a few times at most, until B's takeover is seen."""
    count = 120
    tasklist = write_tasks(nfs_dir / "t", varied_sleeps(count))
    workdir = nfs_dir / "t_workdir"
    with cpu_hogs(nfs):
        farmers = start_farmers(nfs, tasklist, ["-n", "2", "--lease", "3"])
        on_a = [farmer for farmer in farmers if farmer.node is nfs.a]
        wait_until(lambda: len(ids(workdir / "finished")) >= count // 4, 180, "a quarter done")
        for _ in range(STALL_TRIES):
            for farmer in on_a:
                farmer.job.kill(signal.SIGSTOP)
            try:
                if stalled_until_taken_over(farmers, on_a, 30):
                    break
            finally:
                for farmer in on_a:
                    farmer.job.kill(signal.SIGCONT)
            time.sleep(0.5)  # let a stopped lock holder finish its hold
        else:
            pytest.fail(f"node B took nothing over in {STALL_TRIES} stalls of node A")
        results = wait_all(farmers, 300)
    for result in results:
        assert result.rc == 0, result
        assert "Traceback" not in result.err
    assert_exactly_once(workdir, count)
    assert "\tdiscarded\t" in (workdir / "joblog").read_text()


@pytest.mark.parametrize("nfs", [V42], indirect=True, ids=str)
def test_node_clocks_an_hour_apart_take_no_live_lease_over(nfs: NfsLab, nfs_dir: Path) -> None:
    """Node A's clock runs an hour ahead, far more than ``--lease``: no farmer takes a live
    farmer's lease over (a lease's silence is measured on the observer's own clock, not by
    comparing the server's mtimes with it), and every task is recorded once. (``--lease 60``:
    on these one-CPU nodes four farmers contending for an NFSv4 lock can keep a main process
    from heartbeating for longer than a few seconds, a real silence.)"""
    count = 80
    tasklist = write_tasks(nfs_dir / "t", varied_sleeps(count))
    nfs.a.run("date -s @$(( $(date +%s) + 3600 ))", check=True)
    try:
        results = wait_all(start_farmers(nfs, tasklist, ["-n", "2", "--lease", "60"]), 300)
    finally:
        nfs.a.run("date -s @$(( $(date +%s) - 3600 ))", check=True)
    for result in results:
        assert result.rc == 0, result
        assert "took over lease" not in result.out, result
    assert_exactly_once(nfs_dir / "t_workdir", count)
