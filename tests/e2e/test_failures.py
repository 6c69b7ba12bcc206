"""Failure semantics: retries, task timeouts, requeue-failed, leases and dead farmers, workers
that cannot start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers.farmer import (
    alive,
    error_lines,
    ids,
    no_traceback,
    run_farmer,
    start_farmer,
    wait_for,
    write_tasklist,
)

from taskfarmer.farm.takeover import expired
from taskfarmer.hpc.identity import Identity, process_start_time
from taskfarmer.store import LeaseInfo


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


def test_restart_on_the_same_host_recovers_a_killed_farmers_tasks_at_once(tmp_path: Path
                                                                           ) -> None:
    runs = tmp_path / "runs"
    started = tmp_path / "started"
    started.mkdir()
    tasks = write_tasklist(tmp_path / "t", [
        f"touch {started}/{i}; [ -e {tmp_path}/go ] || exec sleep 300; echo {i} >> {runs}"
        for i in range(4)])
    first = start_farmer([str(tasks), "-n", "2", "--lease", "3600"])
    wait_for(lambda: len(os.listdir(started)) == 2, what="2 tasks running")
    os.killpg(first.pid, signal.SIGKILL)  # the farmer and its workers, like a crashed node
    first.wait()
    subprocess.run(["pkill", "-f", f"touch {started}"], check=False)
    (tmp_path / "go").touch()
    result = run_farmer([str(tasks), "-n", "2", "--lease", "3600"], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "took over lease" in result.stdout
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3]
    assert sorted(runs.read_text().split()) == ["0", "1", "2", "3"]


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
    os.kill(int(started.read_text().split()[0]), signal.SIGKILL)  # the orphaned task
    out, err = farmer.communicate(timeout=60)
    assert farmer.returncode == 0, out + err
    assert "worker 0 died" in out
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
