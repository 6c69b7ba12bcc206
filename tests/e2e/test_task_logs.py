"""Log layouts (``--logs``): flat as PyTaskFarmer, spread over directories, or only non-empty."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.farmer import ids, run_farmer, write_tasklist

from taskfarmer.logs.tasklogs import TaskLogs


def test_spread_puts_a_thousand_logs_per_directory(tmp_path: Path) -> None:
    logs = TaskLogs(tmp_path, "spread", "w")
    for task_id in (5, 999, 1000, 123456):
        os.close(logs.open(task_id, b"again\n"))
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("log_*")) == [
        "0/log_5", "0/log_999", "1/log_1000", "123/log_123456"]


def test_spread_farmer_run(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", [f"echo out {i}" for i in range(3)])
    assert run_farmer([str(tasks), "-n", "2", "--logs", "spread"]).returncode == 0
    logs = tmp_path / "t_workdir" / "logs"
    assert sorted(os.listdir(logs)) == ["0"]
    assert (logs / "0" / "log_2").read_text() == "out 2\n"


def test_nonempty_creates_logs_only_for_tasks_that_print(tmp_path: Path) -> None:
    lines = ["echo said 0", "true", "echo oops >&2; exit 3", "true", "printf x"]
    tasks = write_tasklist(tmp_path / "t", lines)
    assert run_farmer([str(tasks), "-n", "2", "--logs", "nonempty"]).returncode == 1
    workdir = tmp_path / "t_workdir"
    logs = workdir / "logs"
    assert sorted(os.listdir(logs)) == ["log_0", "log_2", "log_4"]  # no scratch file left
    assert (logs / "log_0").read_text() == "said 0\n"
    assert (logs / "log_2").read_text() == "oops\n"
    assert (logs / "log_4").read_text() == "x"
    assert sorted(ids(workdir / "finished")) == [0, 1, 3, 4]


def test_nonempty_appends_a_rerun_to_the_earlier_log(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["echo run; false"])
    assert run_farmer([str(tasks), "--logs", "nonempty"]).returncode == 1
    assert run_farmer([str(tasks), "--logs", "nonempty", "--requeue-failed"]).returncode == 1
    text = (tmp_path / "t_workdir" / "logs" / "log_0").read_text()
    assert text.startswith("run\n---- taskfarmer: task 0 runs again on ")
    assert text.endswith("----\nrun\n")
