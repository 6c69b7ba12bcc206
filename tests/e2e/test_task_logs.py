"""Log layouts (``--logs``): flat as PyTaskFarmer, spread over directories, or only non-empty
(the spread layout in-process: tests/unit/logs/test_tasklogs.py)."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.farmer import ids, run_farmer, write_tasklist


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
