"""``farmer --status``: read-only totals, farmers, leases, running and failed tasks."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

from helpers.farmer import (
    FARMER,
    farmer_env,
    ids,
    run_farmer,
    start_farmer,
    stop,
    wait_for,
    write_tasklist,
)


def status(*args: str) -> tuple[int, dict]:
    done = run_farmer([*args, "--status", "--json"])
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout)


def tree(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory`` with its size and mtime."""
    return {str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(directory.rglob("*"))}


def test_status_while_two_farmers_run_and_after(tmp_path: Path) -> None:
    go = tmp_path / "go"
    block = f"touch {tmp_path}/started_$PROC_NUMBER; while [ ! -e {go} ]; do sleep 0.05; done"
    tasks = write_tasklist(tmp_path / "t", ["echo oops; exit 4"] + [block] * 5)
    first = start_farmer([str(tasks), "-n", "1"])
    wait_for(lambda: (tmp_path / "started_1").exists(), what="task 1 started")
    second = start_farmer([str(tasks), "-n", "1"])
    wait_for(lambda: (tmp_path / "started_2").exists(), what="task 2 started")

    # workers record results in batches, a moment after they end: wait for task 0's
    wait_for(lambda: status(str(tasks))[1]["failed"] == 1, what="task 0 recorded")
    code, now = status(str(tasks))
    assert code == 3
    assert (now["finished"], now["failed"], now["running"], now["pending"], now["total"]) == (
        0, 1, 2, 3, 6)
    assert round(now["percent"], 1) == 16.7
    assert sorted(task["id"] for task in now["running_tasks"]) == [1, 2]
    assert {task["line"] for task in now["running_tasks"]} == {block}
    assert all(task["age"] is not None and task["age"] < 60 for task in now["running_tasks"])
    assert [farmer["workers"] for farmer in now["farmers"]] == [1, 1]
    assert {farmer["pid"] for farmer in now["farmers"]} == {first.pid, second.pid}
    [failed] = now["failed_tasks"]
    assert (failed["id"], failed["exit"], failed["signal"], failed["attempts"],
            failed["last_line"]) == (0, 4, 0, 1, "oops")
    assert failed["log"].endswith("t_workdir/logs/log_0")
    assert now["stale_leases"] == [] and now["consistent"]

    # with --lease 2 the leases (renewed every 30 s by farmers with the default lease) are
    # overdue: shown with the time left before another farmer may take them over
    time.sleep(1.1)
    _, stale = status(str(tasks), "--lease", "2")
    assert len(stale["stale_leases"]) == 2
    assert all(lease["takeover_in"] < 1 for lease in stale["stale_leases"])

    go.touch()
    for farmer in (first, second):
        assert farmer.wait(timeout=60) == 1
    code, after = status("-w", str(tmp_path / "t_workdir"))
    assert code == 1 and after["done"]
    assert (after["finished"], after["failed"], after["running"], after["pending"]) == (
        5, 1, 0, 0)
    assert after["farmers"] == [] and after["rate"] > 0


def test_status_is_read_only_and_exit_codes(tmp_path: Path) -> None:
    started = tmp_path / "started"
    tasks = write_tasklist(tmp_path / "t", [
        "true", f"[ -e {started} ] || {{ touch {started}; sleep 60; }}", "true"])
    farmer = start_farmer([str(tasks), "-n", "1"])
    workdir = tmp_path / "t_workdir"
    wait_for(lambda: started.exists() and ids(workdir / "finished") == [0], what="task 0 done")
    assert stop(farmer).returncode == 3
    with open(workdir / "claims", "ab") as claims:  # a compaction left half done
        claims.write(b"- compact\n")
    before = tree(workdir)
    code, left = status(str(tasks))
    assert code == 3 and (left["finished"], left["pending"], left["running"]) == (1, 2, 0)
    assert tree(workdir) == before  # nothing written, not even the compaction finished
    _, soft = status(str(tasks), "--lock", "soft")  # no soft lock is taken: read without one
    assert not soft["consistent"] and soft["pending"] == 2 and tree(workdir) == before
    (workdir / "claims").write_bytes(b"")

    assert run_farmer([str(tasks)]).returncode == 0
    code, done = status(str(tasks))
    assert code == 0 and done["total"] == 3 and done["percent"] == 100.0
    plain = run_farmer([str(tasks), "--status"])
    assert plain.returncode == 0 and "3 finished" in plain.stdout
    with open(tasks, "a") as handle:
        handle.write("echo more\n")
    code, grown = status(str(tasks))
    assert code == 3 and grown["unimported"] == 1 and grown["total"] == 3


def test_status_of_a_missing_workdir_and_bad_options(tmp_path: Path) -> None:
    missing = run_farmer(["-w", str(tmp_path / "nowhere"), "--status"])
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip() == f"farmer: error: {tmp_path}/nowhere: no such workdir"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_farmer(["-w", str(empty), "--status"]).returncode == 2
    for args in (["--json"], ["-w", str(empty), "--watch"], ["--status"],
                 ["-w", str(empty), "--status", "--json", "--watch"]):
        wrong = run_farmer(args)
        assert wrong.returncode == 2 and wrong.stderr.startswith("farmer: error:"), args


def test_watch_refreshes_in_place_until_done(tmp_path: Path) -> None:
    go = tmp_path / "go"
    tasks = write_tasklist(tmp_path / "t", [f"while [ ! -e {go} ]; do sleep 0.05; done"])
    farmer = start_farmer([str(tasks), "-n", "1"])
    wait_for(lambda: (tmp_path / "t_workdir" / "joblog").exists()
             or any((tmp_path / "t_workdir" / "leases").glob("*")), what="farmer started")
    controller, terminal = pty.openpty()
    watcher = subprocess.Popen([*FARMER, str(tasks), "--status", "--watch"], stdin=terminal,
                               stdout=terminal, stderr=terminal, env=farmer_env(
                                   {"COLUMNS": "120", "TERM": "xterm"}), start_new_session=True)
    os.close(terminal)
    screen = b""

    def read() -> bool:
        nonlocal screen
        while select.select([controller], [], [], 0.05)[0]:
            try:
                screen += os.read(controller, 65536)
            except OSError:
                return True
        return False

    try:
        wait_for(lambda: read() or b"1 running" in screen, what="first screen")
        go.touch()
        assert farmer.wait(timeout=60) == 0
        wait_for(lambda: read() or watcher.poll() is not None, what="watch ends")
        read()
        assert watcher.wait(timeout=10) == 0
        assert b"1 finished" in screen and b"\x1b[" in screen  # redrawn with escape codes
    finally:
        if watcher.poll() is None:
            watcher.send_signal(signal.SIGINT)
            watcher.wait(timeout=10)
        os.close(controller)
    assert ids(tmp_path / "t_workdir" / "finished") == [0]


def test_the_first_and_last_lines_say_where_the_workdir_and_logs_are(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"])
    done = run_farmer([str(tasks), "-w", str(tmp_path / "w")])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    where = (f"workdir {tmp_path}/w: task logs in {tmp_path}/w/logs, job log "
             f"{tmp_path}/w/joblog, timeline {tmp_path}/w/timeline.json")
    assert lines[0].endswith(where) and lines[-1].endswith(where)
