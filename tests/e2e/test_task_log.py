"""``--logs packed`` and ``--task-log ID`` through the real farmer: files created, every
execution shown in order in every layout, a running task's output so far, unknown IDs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from helpers.farmer import run_farmer, start_farmer, wait_for, write_tasklist
from helpers.tmpfs import Tmpfs


def task_log(tasks: Path, task_id: int, *more: str) -> tuple[int, str, str]:
    done = run_farmer([str(tasks), "--task-log", str(task_id), *more])
    return done.returncode, done.stdout, done.stderr


def test_packed_creates_two_files_per_worker_whatever_the_tasks(tmp_path: Path) -> None:
    lines = [f"echo out {i}" if i % 10 else f"echo bad {i}; exit 4" for i in range(60)]
    tasks = write_tasklist(tmp_path / "t", lines)
    assert run_farmer([str(tasks), "-n", "2", "--logs", "packed"]).returncode == 1
    logs = tmp_path / "t_workdir" / "logs"
    assert os.listdir(logs) == ["packed"]  # no log_ID, not even for the failed tasks
    assert len(os.listdir(logs / "packed")) == 4
    code, out, _ = task_log(tasks, 7)
    head, body = out.split("\n", 1)
    assert code == 0 and body == "out 7\n"
    assert head.startswith("==== task 7, execution 1 of 1: ") and head.endswith(", exit 0 ====")
    assert task_log(tasks, 20)[1].endswith(", exit 4 ====\nbad 20\n")


@pytest.mark.parametrize("layout", ["flat", "spread", "nonempty", "packed"])
def test_task_log_shows_every_execution_in_order(tmp_path: Path, layout: str) -> None:
    counter = tmp_path / "count"
    tasks = write_tasklist(tmp_path / "t", [
        "echo quiet", f"echo run >> {counter}; echo attempt $(wc -l < {counter}); "
                      f"[ $(wc -l < {counter}) -ge 3 ]"])
    assert run_farmer([str(tasks), "--logs", layout, "--retries", "1"]).returncode == 1
    assert run_farmer([str(tasks), "--logs", layout, "--requeue-failed"]).returncode == 0
    code, out, _ = task_log(tasks, 1)
    lines = out.splitlines()
    assert code == 0
    assert lines[1::2] == ["attempt 1", "attempt 2", "attempt 3"]
    assert [line.split(":")[0] for line in lines[0::2]] == [
        f"==== task 1, execution {n} of 3" for n in (1, 2, 3)]
    assert all("unknown" not in line for line in lines[0::2])
    ends = [line.rsplit(", ", 1)[1] for line in lines[0::2]]
    assert ends == ["exit 1 ====", "exit 1 ====", "exit 0 ===="]


def test_task_log_of_a_pytaskfarmer_workdir(tmp_path: Path) -> None:
    workdir = tmp_path / "w"
    (workdir / "logs").mkdir(parents=True)
    (workdir / "toprocess").write_text("2 echo c\n")
    (workdir / "finished").write_text("0 echo a\n")
    (workdir / "failed").write_text("1 echo b; false\n")
    (workdir / "logs" / "log_1").write_text("b\n")
    code, out, _ = task_log(tmp_path / "t", 1, "-w", str(workdir))
    assert code == 0
    assert out == ("==== task 1, execution 1 of 1: start unknown, node unknown, outcome not in "
                   "the job log (running, or its farmer was killed) ====\nb\n")
    assert task_log(tmp_path / "t", 2, "-w", str(workdir))[:2] == (0, "")
    assert task_log(tmp_path / "t", 3, "-w", str(workdir))[0] == 2


def test_an_unknown_id_is_one_line_and_exit_2(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"])
    assert run_farmer([str(tasks), "--logs", "packed"]).returncode == 0
    code, out, err = task_log(tasks, 1)
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"farmer: error: --task-log 1: no such task in "
                                f"{tmp_path / 't_workdir'}"]
    code, out, err = task_log(tasks, -1)  # refused as a number, before the workdir is read
    assert (code, out) == (2, "")
    assert err.splitlines() == ["farmer: error: Invalid value for '--task-log': -1 must be at "
                                "least 0"]
    assert run_farmer(["--task-log", "0", "-w", str(tmp_path / "none")]).returncode == 2


def test_a_running_task_shows_its_output_so_far(tmp_path: Path) -> None:
    go = tmp_path / "go"
    tasks = write_tasklist(tmp_path / "t", [f"echo so far; while [ ! -e {go} ]; do sleep 0.05; "
                                            "done; echo after"])
    farmer = start_farmer([str(tasks), "--logs", "packed"])
    try:
        wait_for(lambda: task_log(tasks, 0)[1].endswith("so far\n"), what="output so far")
        code, out, _ = task_log(tasks, 0)
        assert code == 0 and out.splitlines()[0].endswith(", running ====")
    finally:
        go.touch()
        assert farmer.wait(60) == 0
    assert task_log(tasks, 0)[1].endswith(", exit 0 ====\nso far\nafter\n")


def test_task_log_abbreviations_do_not_clash_with_logs(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["echo hi"])
    assert run_farmer([str(tasks), "--log", "packed"]).returncode == 0
    assert os.listdir(tmp_path / "t_workdir" / "logs") == ["packed"]
    done = run_farmer([str(tasks), "--task-l", "0"])
    assert done.returncode == 0 and done.stdout.endswith("hi\n")


def test_the_start_line_warns_when_inodes_are_fewer_than_tasks(tmp_path: Path,
                                                                tmpfs: Tmpfs) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"] * 100)
    tmpfs.mount("nr_inodes=80")
    packed = run_farmer([str(tasks), "--logs", "packed", "-w", str(tmpfs.path / "p")])
    assert packed.returncode == 0 and "inode" not in packed.stdout + packed.stderr
    flat = run_farmer([str(tasks), "-w", str(tmpfs.path / "f")])
    warning = re.search(r"warning: 100 task\(s\) to run and (\d+) free inode\(s\) on the "
                        r"workdir's filesystem: --logs flat creates a file per task; --logs "
                        r"packed does not", flat.stdout + flat.stderr)
    assert warning is not None and int(warning[1]) < 80, flat.stdout + flat.stderr


@pytest.mark.parametrize(("layout", "log_files", "io"),
                         [("flat", 30, "coherent"), ("packed", 2, "fast")])
def test_status_shows_the_metadata_cost(tmp_path: Path, layout: str, log_files: int,
                                        io: str) -> None:
    tasks = write_tasklist(tmp_path / "t", [f"echo {i}" for i in range(30)])
    farm = run_farmer([str(tasks), "--logs", layout, "-n", "1"], env={"TASKFARMER_IO": io})
    assert farm.returncode == 0
    done = run_farmer([str(tasks), "--status", "--json"])
    status = json.loads(done.stdout)
    assert (status["log_files"], status["files_per_task"]) == (log_files, log_files / 30)
    state = sum(len(files) for _, _, files in os.walk(tmp_path / "t_workdir"))
    assert status["files"] == state
    # In the coherent mode the farmer counted its opens of state files (every lock hold opens
    # some) and left them where --status reads them; in the fast mode it counts none.
    opens = status["opens_per_task"]
    assert opens > 0 if io == "coherent" else opens is None
    text = run_farmer([str(tasks), "--status"], env={"COLUMNS": "300"}).stdout
    assert f"{log_files} in logs/" in text
    assert ("state-file opens per task (coherent I/O)" in text) == (io == "coherent")


def test_status_shows_a_packed_failed_tasks_last_line(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["echo fine", "echo first; echo oops; exit 2"])
    assert run_farmer([str(tasks), "--logs", "packed"]).returncode == 1
    failed, = json.loads(run_farmer([str(tasks), "--status", "--json"]).stdout)["failed_tasks"]
    assert (failed["id"], failed["log"], failed["last_line"]) == (1, "--task-log 1", "oops")
