"""``farmer --verify``: read-only, safe while farmers run; hand-damaged workdirs are caught."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from helpers.farmer import (
    alive,
    no_traceback,
    run_farmer,
    start_farmer,
    wait_for,
    write_tasklist,
)

INCONSISTENT = 4


def verify(*args: str) -> tuple[int, list[str]]:
    done = run_farmer([*args, "--verify"])
    no_traceback(done.stdout, done.stderr)
    return done.returncode, done.stdout.splitlines()


def finished_farm(tmp_path: Path) -> tuple[Path, Path]:
    tasks = write_tasklist(tmp_path / "t", [f"echo {i}" for i in range(9)] + ["exit 5"])
    assert run_farmer([str(tasks), "-n", "2"]).returncode == 1
    return tasks, tmp_path / "t_workdir"


def tree(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(directory.rglob("*"))}


def test_verify_is_consistent_all_along_while_two_farmers_run(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", [f"echo {i}" for i in range(400)])
    farmers = [start_farmer([str(tasks), "-n", "2"]) for _ in range(2)]
    # --verify needs a workdir: on a slow machine the farmers may not have made it yet
    wait_for(lambda: (tmp_path / "t_workdir" / "toprocess").exists(), what="the workdir")
    checks = []
    while any(farmer.poll() is None for farmer in farmers) or not checks:
        code, lines = verify(str(tasks), "-w", str(tmp_path / "t_workdir"))
        checks.append(code)
        assert code == 0 and lines[0].startswith("consistent: 400 tasks"), lines
    assert [farmer.wait() for farmer in farmers] == [0, 0]
    code, lines = verify(str(tasks))
    assert code == 0 and lines == ["consistent: 400 tasks: 400 finished, 0 failed, "
                                   "0 pending, 0 running"], lines


def test_verify_changes_nothing_and_reports_a_duplicate(tmp_path: Path) -> None:
    tasks, workdir = finished_farm(tmp_path)
    before = tree(workdir)
    assert verify(str(tasks)) == (0, ["consistent: 10 tasks: 9 finished, 1 failed, 0 pending, "
                                      "0 running"])
    assert tree(workdir) == before
    with open(workdir / "finished", "a") as out:
        out.write("3 echo 3\n")
    code, lines = verify("-w", str(workdir))
    assert code == INCONSISTENT
    # a task counts as finished only when it is there once: task 3 is the problem instead
    assert lines == ["INCONSISTENT (1 problem): 10 tasks: 8 finished, 1 failed, 0 pending, "
                     "0 running", "problem: finished: recorded twice: task 3"]


def test_verify_reports_a_lost_task_and_the_job_log_disagreeing(tmp_path: Path) -> None:
    tasks, workdir = finished_farm(tmp_path)
    finished = workdir / "finished"
    finished.write_text("".join(line for line in finished.read_text().splitlines(True)
                                if not line.startswith("5 ")))
    code, lines = verify(str(tasks))
    assert code == INCONSISTENT
    assert "problem: all state files: lost: in no file (neither finished, failed, pending " \
           "nor claimed): task 5" in lines
    assert "problem: joblog: says finished, but the task is not in finished: task 5" in lines


def test_verify_reports_a_torn_line(tmp_path: Path) -> None:
    tasks, workdir = finished_farm(tmp_path)
    with open(workdir / "failed", "a") as out:
        out.write("4 ech")
    code, lines = verify(str(tasks))
    assert code == INCONSISTENT
    assert lines[1].startswith("problem: failed: torn last line b'4 ech'"), lines


def test_a_stale_lease_is_a_warning_and_a_vanished_one_a_lost_task(tmp_path: Path) -> None:
    go = tmp_path / "go"
    tasks = write_tasklist(tmp_path / "t", ["echo 0", f"while [ ! -e {go} ]; do sleep 0.05;"
                                            " done", "echo 2"])
    workdir = tmp_path / "t_workdir"
    farmer = start_farmer([str(tasks), "-n", "1"])
    wait_for(lambda: len((workdir / "finished").read_text().splitlines()) == 1
             if (workdir / "finished").exists() else False, what="task 0 finished")
    os.killpg(farmer.pid, signal.SIGKILL)  # farmer and worker: the lease stays
    farmer.wait()
    go.touch()  # the task (its own session, not in the farmer's group) ends too
    wait_for(lambda: not alive(farmer.pid), what="the farmer gone")
    (lease,) = (workdir / "leases").iterdir()
    old = time.time() - 600
    os.utime(lease, (old, old))
    code, lines = verify(str(tasks), "--lease", "60")
    assert code == 0, lines
    assert lines[0] == "consistent: 3 tasks: 1 finished, 0 failed, 1 pending, 1 running"
    assert f"warning: leases/{lease.name}: held by this stale lease: task 1" in lines
    lease.unlink()
    code, lines = verify(str(tasks))
    assert code == INCONSISTENT
    assert "problem: claims: lost: last claimed by a lease that does not exist, and neither " \
           "finished, failed nor pending: task 1" in lines


def test_verify_judges_a_pytaskfarmer_workdir_without_adopting_it(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["echo a", "", "echo b", "# note", "echo c",
                                            "echo d"])
    workdir = tmp_path / "t_workdir"
    workdir.mkdir()
    (workdir / "finished").write_text("0 echo a\n1 echo b\n")
    (workdir / "failed").write_text("3 echo d\n")
    (workdir / "toprocess").write_text("2 echo c\n")
    code, lines = verify(str(tasks))
    assert code == 0, lines
    assert lines[0] == "consistent: 4 tasks: 2 finished, 1 failed, 1 pending, 0 running"
    (workdir / "toprocess").write_text("1 echo b\n")  # an unclean stop: 1 twice, 2 nowhere
    code, lines = verify(str(tasks))
    assert code == INCONSISTENT
    assert "problem: all state files: lost: in no file (neither finished, failed, pending " \
           "nor claimed): task 2" in lines
    assert "problem: toprocess: recorded, and still pending after the cursor (would run " \
           "again): task 1" in lines
    assert sorted(path.name for path in workdir.iterdir()) == ["failed", "finished",
                                                               "toprocess"]


def test_verify_without_a_workdir_or_with_status_is_one_error_line(tmp_path: Path) -> None:
    done = run_farmer(["-w", str(tmp_path / "none"), "--verify"])
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "no such workdir" in done.stderr
    done = run_farmer(["-w", str(tmp_path), "--verify", "--status"])
    assert done.returncode == 2
    assert "--status, --verify, --task-log and --quarantined exclude each other" in done.stderr
