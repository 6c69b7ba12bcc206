"""The job log: one line per execution, after the state change it reports (the file's pieces:
tests/unit/logs/test_joblog.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from helpers.farmer import ids, run_farmer, start_farmer, stop, wait_for, write_tasklist

from taskfarmer.logs.joblog import (
    COLUMNS,
)


def rows(workdir: Path) -> list[list[str]]:
    """The job log's lines split into columns, the header first."""
    return [line.split("\t") for line in (workdir / "joblog").read_text().splitlines()]


def test_one_line_per_execution_with_gnu_parallel_columns(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true", "exit 3", "kill -9 $$", "sleep 30"])
    result = run_farmer([str(tasks), "-n", "2", "--task-timeout", "1"])
    assert result.returncode == 1, result.stdout + result.stderr
    header, *lines = rows(tmp_path / "t_workdir")
    assert header == list(COLUMNS)
    by_id = {int(line[0]): dict(zip(COLUMNS, line)) for line in lines}
    assert sorted(by_id) == [0, 1, 2, 3] and len(lines) == 4
    assert [(by_id[i]["exit"], by_id[i]["signal"], by_id[i]["outcome"]) for i in range(4)] == [
        ("0", "0", "finished"), ("3", "0", "failed"), ("137", "9", "failed"),
        ("143", "15", "timed out")]
    assert by_id[3]["command"] == "sleep 30" and by_id[0]["attempt"] == "1"
    assert 0.9 < float(by_id[3]["runtime"]) < 10
    assert {line["node"] for line in by_id.values()} == {os.uname().nodename}
    assert len({line["farmer"] for line in by_id.values()}) == 1
    assert {line["slot"] for line in by_id.values()} <= {"0", "1"}


def test_retries_are_numbered_attempts(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    tasks = write_tasklist(tmp_path / "t", [
        f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 1 ]"])
    result = run_farmer([str(tasks), "-n", "1", "--retries", "2"])
    assert result.returncode == 0, result.stdout + result.stderr
    _, *lines = rows(tmp_path / "t_workdir")
    assert [(line[1], line[9]) for line in lines] == [("1", "retry"), ("2", "finished")]


def test_a_stopped_execution_is_logged_after_it_is_back_in_toprocess(tmp_path: Path) -> None:
    started = tmp_path / "started"
    tasks = write_tasklist(tmp_path / "t", [f"touch {started}; sleep 60"])
    farmer = start_farmer([str(tasks), "-n", "1"])
    wait_for(started.exists, what="task started")
    done = stop(farmer)
    assert done.returncode == 3, done.stdout + done.stderr
    workdir = tmp_path / "t_workdir"
    _, line = rows(workdir)
    assert (line[0], line[1], line[9]) == ("0", "1", "stopped")
    assert ids(workdir / "toprocess") == [0] and ids(workdir / "finished") == []


def test_a_result_discarded_after_a_takeover_says_so(tmp_path: Path) -> None:
    started = tmp_path / "started"
    tasks = write_tasklist(tmp_path / "t", [
        f"echo $$ >> {started}; while [ ! -e {tmp_path}/go ]; do sleep 0.05; done"])
    stalled = start_farmer([str(tasks), "-n", "1", "--lease", "2"])
    wait_for(started.exists, what="task started")
    os.killpg(stalled.pid, signal.SIGSTOP)
    try:
        (tmp_path / "go").touch()
        rescuer = run_farmer([str(tasks), "-n", "1", "--lease", "2"])
        assert rescuer.returncode == 0, rescuer.stdout + rescuer.stderr
    finally:
        os.killpg(stalled.pid, signal.SIGCONT)
    stalled.communicate(timeout=60)
    _, *lines = rows(tmp_path / "t_workdir")
    assert sorted(line[9] for line in lines) == ["discarded", "finished"]
    assert len({line[3] for line in lines}) == 2  # two farmers


def test_a_line_torn_by_a_node_crash_is_cut_off_into_torn(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"])
    assert run_farmer([str(tasks)]).returncode == 0
    workdir = tmp_path / "t_workdir"
    with open(workdir / "joblog", "a") as handle:
        handle.write("7\t1\tnode")
    with open(tasks, "a") as handle:
        handle.write("exit 5\n")
    assert run_farmer([str(tasks)]).returncode == 1
    assert (workdir / "torn").read_text() == "joblog: 7\t1\tnode\n"
    _, first, second = rows(workdir)
    assert (first[0], first[9], second[0], second[9]) == ("0", "finished", "1", "failed")
