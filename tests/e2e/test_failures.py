"""Failure semantics: retries, task timeouts, requeue-failed, leases and dead farmers, workers
that cannot start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.farmer import (
    alive,
    error_lines,
    ids,
    no_traceback,
    run_farmer,
    start_farmer,
    verify_problems,
    wait_for,
    write_tasklist,
)

from taskfarmer.farm.takeover import expired
from taskfarmer.hpc.identity import Identity, process_start_time
from taskfarmer.store import LeaseInfo


def children(pid: int) -> list[int]:
    """The pids of the children of ``pid``."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def counting_task(counter: Path, script: str) -> str:
    """A task that increments ``counter`` and then runs ``script`` (which may use ``$n``)."""
    return (f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
            f"{script}")


def test_retries_until_success(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    tasks = write_tasklist(tmp_path / "t", [counting_task(counter, "echo try $n; [ $n -ge 3 ]"),
                                            "true"])
    result = run_farmer([str(tasks), "-n", "1", "--retries", "2"])
    assert result.returncode == 0, result.stdout + result.stderr
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == [0, 1]
    assert counter.read_text().strip() == "3"
    assert (workdir / "attempts").read_text() == "0 1\n0 2\n"
    log = (workdir / "logs" / "log_0").read_text()
    assert log.count("try ") == 3 and log.count("runs again") == 2
    events = json.loads((workdir / "timeline.json").read_text())
    outcomes = [e["args"]["outcome"] for e in events if e["ph"] == "X" and e["args"]["id"] == 0]
    assert outcomes == ["retry", "retry", "finished"]


def test_retries_exhausted_records_failed(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    tasks = write_tasklist(tmp_path / "t", [counting_task(counter, "false")])
    result = run_farmer([str(tasks), "--retries", "1"])
    assert result.returncode == 1
    assert counter.read_text().strip() == "2"
    assert ids(tmp_path / "t_workdir" / "failed") == [0]
    assert ids(tmp_path / "t_workdir" / "toprocess") == []


def test_attempt_count_survives_a_restart_and_stops_are_not_attempts(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    # 1st run: fails; 2nd run: hangs until stopped (not an attempt); 3rd run: fails.
    script = '[ $n -eq 2 ] && exec sleep 300; exit 1'
    tasks = write_tasklist(tmp_path / "t", [counting_task(counter, script)])
    farmer = start_farmer([str(tasks), "--retries", "1"])
    wait_for(lambda: counter.exists() and counter.read_text().strip() == "2",
             what="second execution")
    farmer.send_signal(signal.SIGUSR1)
    assert farmer.wait(timeout=30) == 3
    workdir = tmp_path / "t_workdir"
    assert ids(workdir / "toprocess") == [0] and ids(workdir / "failed") == []
    result = run_farmer([str(tasks), "--retries", "1"])
    assert result.returncode == 1
    assert counter.read_text().strip() == "3"  # one more execution only: 2 failed attempts
    assert ids(workdir / "failed") == [0]


def test_task_timeout_kills_the_group_and_counts_as_an_attempt(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    tasks = write_tasklist(tmp_path / "t", [
        f"sleep 300 & echo $! >> {pids}; trap '' TERM; echo $$ >> {pids}; sleep 300"])
    result = run_farmer([str(tasks), "--task-timeout", "1", "--retries", "1"])
    assert result.returncode == 1, result.stderr
    workdir = tmp_path / "t_workdir"
    assert ids(workdir / "failed") == [0]
    task_pids = [int(p) for p in pids.read_text().split()]
    assert len(task_pids) == 4  # two attempts, two processes each
    assert not any(alive(pid) for pid in task_pids)
    events = [e for e in json.loads((workdir / "timeline.json").read_text()) if e["ph"] == "X"]
    assert [e["args"].get("timed_out") for e in events] == [True, True]
    assert [e["args"]["outcome"] for e in events] == ["retry", "failed"]


def test_requeue_failed(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    tasks = write_tasklist(tmp_path / "t", ["true", counting_task(counter, "[ $n -ge 2 ]")])
    assert run_farmer([str(tasks)]).returncode == 1
    workdir = tmp_path / "t_workdir"
    assert ids(workdir / "failed") == [1]
    assert run_farmer([str(tasks)]).returncode == 1  # plain rerun: nothing to do
    assert counter.read_text().strip() == "1"
    result = run_farmer([str(tasks), "--requeue-failed"])
    assert result.returncode == 0, result.stdout
    assert "put 1 failed task(s) back" in result.stdout
    assert sorted(ids(workdir / "finished")) == [0, 1]
    assert ids(workdir / "failed") == []


def test_requeue_failed_interrupted_is_completed_without_duplicates(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    tasks = write_tasklist(tmp_path / "t", [f"echo {i} >> {runs}" for i in range(3)])
    workdir = tmp_path / "t_workdir"
    workdir.mkdir()
    # As left by a farmer killed in the middle of --requeue-failed: failed renamed, one task
    # already appended to toprocess, the other not yet.
    (workdir / "finished").write_text(f"0 echo 0 >> {runs}\n")
    (workdir / "failed.requeue").write_text(f"1 echo 1 >> {runs}\n2 echo 2 >> {runs}\n")
    (workdir / "toprocess").write_text(f"1 echo 1 >> {runs}\n")
    assert run_farmer([str(tasks)]).returncode == 0
    assert sorted(runs.read_text().split()) == ["1", "2"]
    assert sorted(ids(workdir / "finished")) == [0, 1, 2]
    assert not (workdir / "failed.requeue").exists()


def test_lease_expiry_elsewhere_is_a_silence_longer_than_the_lease() -> None:
    observer = Identity("h", "n", os.getpid(), "boot-a", "pidns-a", "1")
    elsewhere = Identity("h", "n", 12345, "boot-b", "pidns-b", "1")
    fresh = LeaseInfo("x", heartbeat=1000.0, owner=elsewhere, dead=False)
    assert not expired(fresh, silent=299, lease=300, observer=observer)
    assert expired(fresh, silent=301, lease=300, observer=observer)
    half_revoked = LeaseInfo("x", heartbeat=1000.0, owner=elsewhere, dead=True)
    assert expired(half_revoked, silent=0, lease=300, observer=observer)


def test_death_is_proved_only_on_the_same_boot_and_pid_namespace() -> None:
    me = Identity.current(environ={})
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    start = process_start_time(child.pid)
    assert start is not None
    living = Identity("other-host", "n", child.pid, me.boot, me.pidns, start)
    assert not living.provably_dead(me)
    child.kill()
    child.wait()
    assert living.provably_dead(me)  # pid gone
    reused = Identity("h", "n", os.getpid(), me.boot, me.pidns, "1")
    assert reused.provably_dead(me)  # pid alive but started at another time
    other_namespace = Identity("h", "n", child.pid, me.boot, "pid:[1]", start)
    assert not other_namespace.provably_dead(me)
    other_boot = Identity("h", "n", child.pid, "another-boot", me.pidns, start)
    assert not other_boot.provably_dead(me)


def flock_task(root: Path, task: int) -> str:
    """Task ``task``, run under ``flock -n`` on a lock file of its own, so that a second
    execution at the same time fails loudly: it leaves ``twiceN`` and exits 42. Its first
    execution (``startedN`` holds its pid) runs until it is killed; a later one notes that it
    ran in ``ranN``. It starts once its worker's task record names it (the task a worker that
    dies just then might leave unnamed is not what this test is about)."""
    first = (f"if [ -e {root}/started{task} ]; then echo ran >> {root}/ran{task}; "
             f"else echo $$ > {root}/started{task}; exec sleep 300; fi")
    return (f"until grep -qs '^task={task} '$$' ' {root}/*_workdir/.task-*; do sleep 0.01; "
            f"done; flock -n -E 99 {root}/lock{task} sh -c '{first}'; "
            f"[ $? != 99 ] || {{ touch {root}/twice{task}; exit 42; }}")


@pytest.mark.parametrize("killed", ["main process", "farmer and workers"])
def test_a_sigkilled_farmers_tasks_never_run_beside_their_reruns(tmp_path: Path, killed: str
                                                                  ) -> None:
    """SIGKILL the farmer's main process (its workers get SIGTERM from the kernel and stop
    their tasks), or the farmer and its workers at once (the rerun kills the task groups their
    records name), while 4 tasks run; the same command again at once runs each task once more,
    never while its first execution still runs."""
    if shutil.which("flock") is None:
        pytest.skip("flock (util-linux) is not installed")
    tasks = write_tasklist(tmp_path / "t", [flock_task(tmp_path, task) for task in range(4)])
    started = [tmp_path / f"started{task}" for task in range(4)]
    first = start_farmer([str(tasks), "-n", "4"])
    try:
        wait_for(lambda: all(path.exists() and path.read_text() for path in started),
                 what="4 tasks running")
        workers = children(first.pid)
        if killed == "main process":
            os.kill(first.pid, signal.SIGKILL)
        else:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        rerun = run_farmer([str(tasks), "-n", "4"], timeout=120)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert list(tmp_path.glob("twice*")) == []
        assert sorted(ids(tmp_path / "t_workdir" / "finished")) == [0, 1, 2, 3]
        assert [(tmp_path / f"ran{task}").read_text() for task in range(4)] == ["ran\n"] * 4
        firsts = [int(path.read_text()) for path in started]
        wait_for(lambda: not any(alive(pid) for pid in workers + firsts),
                 what="the killed farmer's workers and first executions to end")
        if killed != "main process":
            assert rerun.stdout.count("killed task ") == 4
    finally:
        for path in started:  # a failed test leaves no task behind
            if path.exists() and path.read_text() and alive(pid := int(path.read_text())):
                os.kill(pid, signal.SIGKILL)


def test_a_task_that_kills_its_worker_fails_after_bounded_tries_others_run_once_more(
        tmp_path: Path) -> None:
    """Task 1 SIGKILLs its worker (then would sleep on): its first worker death is not held
    against it, each later one is a failed attempt (``--retries 2``: 3 more); the farm kills
    the task each time, and the tasks beside it run again at most once."""
    runs, pids = tmp_path / "runs", tmp_path / "pids"
    wait_record = (f"until grep -qs '^task=1 '$$' ' {tmp_path}/t_workdir/.task-*; "
                   "do sleep 0.01; done")
    tasks = write_tasklist(tmp_path / "t", [
        f"echo 0 >> {runs}",
        f"{wait_record}; echo 1 >> {runs}; echo $$ >> {pids}; kill -9 $PPID; exec sleep 300",
        f"echo 2 >> {runs}"])
    result = run_farmer([str(tasks), "-n", "1", "--retries", "2"], timeout=120)
    workdir = tmp_path / "t_workdir"
    assert result.returncode == 1, result.stdout + result.stderr
    assert ids(workdir / "failed") == [1] and sorted(ids(workdir / "finished")) == [0, 2]
    counts = runs.read_text().split()
    assert counts.count("1") == 4
    assert counts.count("0") <= 2 and counts.count("2") <= 2, counts
    outcomes = [line.split("\t") for line in (workdir / "joblog").read_text().splitlines()[1:]]
    assert [(row[1], row[8], row[9]) for row in outcomes if row[0] == "1"] == [
        ("1", "9", "retry"), ("2", "9", "retry"), ("3", "9", "failed")]
    assert result.stdout.count("killed task 1 ") == 4
    assert not any(alive(int(pid)) for pid in pids.read_text().split())
    assert verify_problems(workdir) == []


def test_a_stalled_farmer_is_taken_over_and_its_late_result_not_recorded(tmp_path: Path
                                                                         ) -> None:
    started = tmp_path / "started"
    tasks = write_tasklist(tmp_path / "t", [
        f"echo $$ >> {started}; while [ ! -e {tmp_path}/go ]; do sleep 0.05; done"])
    stalled = start_farmer([str(tasks), "-n", "1", "--lease", "2"])
    wait_for(lambda: started.exists(), what="task started")
    os.killpg(stalled.pid, signal.SIGSTOP)  # farmer and worker freeze; the task runs on
    try:
        (tmp_path / "go").touch()
        rescuer = run_farmer([str(tasks), "-n", "1", "--lease", "2"], timeout=120)
        assert rescuer.returncode == 0, rescuer.stdout + rescuer.stderr
        assert "took over lease" in rescuer.stdout
    finally:
        os.killpg(stalled.pid, signal.SIGCONT)
    out, _ = stalled.communicate(timeout=60)
    assert stalled.returncode == 0
    assert "not recorded" in out
    workdir = tmp_path / "t_workdir"
    assert ids(workdir / "finished") == [0]  # ran twice, recorded once
    assert len(started.read_text().split()) == 2
    assert ids(workdir / "toprocess") == [] and ids(workdir / "failed") == []


def test_an_idle_farmer_waits_for_live_leases_and_recovers_them(tmp_path: Path) -> None:
    started = tmp_path / "started"
    tasks = write_tasklist(tmp_path / "t", [
        f"echo $$ >> {started}; [ -e {tmp_path}/go ] || exec sleep 300"])
    # A 20 s lease: leases are checked every 5 s; the holder's death is proved, not waited out.
    holder = start_farmer([str(tasks), "-n", "1", "--lease", "20"])
    wait_for(lambda: started.exists(), what="task started")
    waiter = start_farmer([str(tasks), "-n", "1", "--lease", "20"])
    timeline = tmp_path / "t_workdir" / "timeline.json"
    # Once the waiter has named its track it is in its main loop: a farmer that did not wait
    # for live leases would exit now, with task 0 stuck in the holder's lease.
    wait_for(lambda: timeline.read_text().count('"process_name"') == 2, what="waiter started")
    (tmp_path / "go").touch()
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    first_task = int(started.read_text().split()[0])
    os.kill(first_task, signal.SIGKILL)
    out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, out + err
    assert ids(tmp_path / "t_workdir" / "finished") == [0]


def test_a_task_that_signals_its_worker_to_stop_fails_and_the_farm_goes_on(tmp_path: Path
                                                                          ) -> None:
    """``kill $PPID`` (SIGTERM) reaches the worker, not the farmer: the worker stops that task
    (before: put it back, and the task ran again and again), which is failed; no task is put
    back, every other task runs once."""
    runs = tmp_path / "runs"
    tasks = write_tasklist(tmp_path / "t", [
        f"echo 0 >> {runs}", f"echo 1 >> {runs}; kill $PPID; exec sleep 300",
        f"echo 2 >> {runs}"])
    result = run_farmer([str(tasks), "-n", "1"], timeout=120)
    workdir = tmp_path / "t_workdir"
    assert result.returncode == 1, result.stdout + result.stderr
    assert ids(workdir / "failed") == [1] and sorted(ids(workdir / "finished")) == [0, 2]
    assert sorted(runs.read_text().split()) == ["0", "1", "2"]
    assert "did task 1 signal its own worker?" in result.stdout
    rows = [line.split("\t") for line in (workdir / "joblog").read_text().splitlines()[1:]]
    assert [(row[0], row[8], row[9]) for row in rows if row[0] == "1"] == [("1", "15", "failed")]


def test_a_dead_worker_is_replaced_and_its_task_put_back(tmp_path: Path) -> None:
    started = tmp_path / "started"
    tasks = write_tasklist(tmp_path / "t", [
        f"echo $$ >> {started}; [ -e {tmp_path}/go ] || exec sleep 300"] + ["true"] * 2)
    farmer = start_farmer([str(tasks), "-n", "1"])
    wait_for(lambda: started.exists(), what="task started")
    workers = subprocess.run(["pgrep", "-P", str(farmer.pid)], capture_output=True, text=True)
    (worker,) = [int(pid) for pid in workers.stdout.split()]
    (tmp_path / "go").touch()
    os.kill(worker, signal.SIGKILL)
    out, err = farmer.communicate(timeout=60)
    assert farmer.returncode == 0, out + err
    assert "worker 0 died" in out
    assert "killed task 0 " in out  # the orphaned task: its rerun must not run beside it
    assert not alive(int(started.read_text().split()[0]))
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == [0, 1, 2]
    assert len(started.read_text().split()) == 2


_FAILING_RUNNER = '''
from taskfarmer.errors import ConfigError
from taskfarmer.runners import BasicRunner


class NoSlot(BasicRunner):
    """Refuses every worker slot, as a runner missing a device would."""

    def assign(self, resources):
        raise ConfigError("no device for slot %d" % resources.slot)
'''


def test_a_worker_start_up_error_is_one_line_per_worker_and_loses_nothing(tmp_path: Path
                                                                        ) -> None:
    (tmp_path / "failing_runner.py").write_text(_FAILING_RUNNER)
    (tmp_path / "runners.d").mkdir()
    (tmp_path / "runners.d" / "x.ini").write_text("[noslot]\nRunner = failing_runner.NoSlot\n")
    tasks = write_tasklist(tmp_path / "t", [f"echo out{i}" for i in range(10)])
    result = run_farmer([str(tasks), "-n", "2", "--runner", "noslot"], cwd=tmp_path,
                        env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    no_traceback(result.stdout, result.stderr)
    assert "AssertionError" not in result.stdout + result.stderr
    assert error_lines(result.stderr) in (["farmer: error: no device for slot 0"],
                                          ["farmer: error: no device for slot 1"])
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "toprocess")) == list(range(10))
    assert list((workdir / "leases").iterdir()) == []
