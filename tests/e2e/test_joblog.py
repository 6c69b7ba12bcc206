"""The job log: one line per execution, after the state change it reports."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from helpers.farmer import ids, run_farmer, start_farmer, stop, wait_for, write_tasklist

from taskfarmer.logs import joblog
from taskfarmer.logs.joblog import (
    COLUMNS,
    Entry,
    JobLog,
    format_line,
    parse_line,
    read_backward,
    recent_executions,
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


def test_format_and_parse_round_trip_escaping_tabs() -> None:
    entry = Entry(7, 2, "node1", "node1.12-ab", 3, 1700000000.123, 1.5, 137, 9, "failed",
                  "printf 'a\tb'")
    line = format_line(entry)
    assert line.count(b"\t") == len(COLUMNS) - 1 and line.endswith(b"\n")
    parsed = parse_line(line[:-1])
    assert parsed == Entry(7, 2, "node1", "node1.12-ab", 3, 1700000000.123, 1.5, 137, 9,
                           "failed", "printf 'a\\tb'")
    assert parse_line(b"\t".join(c.encode() for c in COLUMNS)) is None


def test_append_writes_the_header_once(tmp_path: Path) -> None:
    log = JobLog(tmp_path / "joblog")
    entry = Entry(0, 1, "n", "f", 0, 1.0, 0.5, 0, 0, "finished", "true")
    log.append([entry])
    log.append([entry, entry])
    log.append([])
    log.close()
    text = (tmp_path / "joblog").read_text().splitlines()
    assert text[0].split("\t") == list(COLUMNS) and len(text) == 4


def test_read_backward_across_blocks_skips_a_line_being_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(joblog, "TAIL_CHUNK", 64)
    log = JobLog(tmp_path / "joblog")
    log.append([Entry(i, 1, "n", "f", 0, 1000.0 + i, 0.25, 0, 0, "finished", "x" * (i * 7))
                for i in range(40)])
    log.close()
    with open(tmp_path / "joblog", "ab") as handle:
        handle.write(b"40\t1\tn\tf\t0\t")  # a farmer is writing this one
    assert [e.id for e in read_backward(tmp_path / "joblog", 1 << 30)] == list(range(39, -1, -1))
    assert [e.command for e in read_backward(tmp_path / "joblog", 1 << 30)][-3:] == [
        "x" * 14, "x" * 7, ""]
    some = [e.id for e in read_backward(tmp_path / "joblog", 2000)]
    assert some == list(range(39, 39 - len(some), -1)) and 0 < len(some) < 40


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


def test_recent_executions_finds_the_window_by_binary_search(tmp_path: Path) -> None:
    log = JobLog(tmp_path / "joblog")
    outcomes = ["finished", "failed", "retry", "stopped"]
    log.append([Entry(i, 1, "n", f"farmer{i % 2}", 0, 1000.0 + i, 0.5, 0, 0, outcomes[i % 4],
                      "echo finished\tfailed") for i in range(20000)])
    log.close()
    recent = recent_executions(tmp_path / "joblog", now=21000.0, window=300.0)
    # ended at 1000 + i + 0.5 >= 20700: i >= 19700, 300 executions, half of them final
    assert (recent.done, recent.span) == (150, 300.0)
    assert recent.per_farmer == {"farmer0": 150, "farmer1": 150}
    short = JobLog(tmp_path / "short")
    short.append([Entry(i, 1, "n", "f", 0, 1000.0 + i, 0.5, 0, 0, outcomes[i % 4], "true")
                  for i in range(10)])
    short.close()
    young = recent_executions(tmp_path / "short", now=1010.0, window=300.0)
    assert young.span == 10.0 and young.done == 6  # the log began 10 s ago
    assert recent_executions(tmp_path / "none", 1.0, 300.0).span == 0.0
