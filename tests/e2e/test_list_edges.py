"""Tasklists at the edges, through the real command: a last line without its newline runs
(farmer, the template handler, pytaskfarmer.py), an over-long line stops the farm before any
task, and what is not a regular file is refused at once (the import in-process:
tests/unit/store/test_listimport.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.farmer import FARMER, farmer_env, ids, no_traceback, run_farmer, write_tasklist

from taskfarmer.tasks import MAX_LINE

PYTASKFARMER = [sys.executable, "-c", "from taskfarmer.cli import pytaskfarmer_main; "
                "pytaskfarmer_main()"]


def run(command: list[str], args: list[str], cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120,
                          env=farmer_env(env), stdin=subprocess.DEVNULL, cwd=cwd)


def test_a_list_just_written_without_a_final_newline_runs_its_last_line(tmp_path: Path) -> None:
    tasks = tmp_path / "nn.txt"
    tasks.write_text("\n".join(f"echo {i}" for i in range(5)))  # '\n'.join: no final newline
    result = run_farmer([str(tasks), "-n", "2"])
    assert result.returncode == 0, result.stderr
    workdir = tmp_path / "nn.txt_workdir"
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3, 4]  # exit 0 only once it ran
    status = run_farmer([str(tasks), "--status", "--json"])
    assert status.returncode == 0 and '"unimported": 0' in status.stdout


@pytest.mark.parametrize("how", ["template handler", "pytaskfarmer.py"])
def test_the_last_line_without_newline_runs_with_a_template_and_as_pytaskfarmer(
        tmp_path: Path, how: str) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "tasklists.d").mkdir()
    (tmp_path / "tasklists.d" / "say.ini").write_text(textwrap.dedent("""
        [say]
        TaskList = taskfarmer.tasks.TemplateTaskList
        command = echo {line}
        """))
    template = how == "template handler"
    tasks = tmp_path / "files"
    tasks.write_text("a.txt\nb.txt" if template else "echo a.txt\necho b.txt")
    os.utime(tasks, (time.time() - 3600,) * 2)  # written an hour ago: at rest at once
    args = [str(tasks), "-n", "1", *(["-t", "say"] if template else [])]
    result = run(FARMER if template else PYTASKFARMER, args, tmp_path,
                 {"HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    workdir = tmp_path / "files_workdir"
    assert ids(workdir / "finished") == [0, 1]
    assert (workdir / "logs" / "log_1").read_text() == "b.txt\n"


def test_an_over_long_line_stops_the_farm_before_any_task(tmp_path: Path) -> None:
    tasks = tmp_path / "t"
    with open(tasks, "wb") as out:  # 20 MB: once a worker re-read its first 4 MiB for ever
        out.write(b"echo 0\necho " + b"x" * (20 << 20) + b"\necho 2\n")
    result = run_farmer([str(tasks)])
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"farmer: error: {tasks}:2: line is longer than {MAX_LINE} bytes "
                             "(1 MiB), the limit of a tasklist line\n")
    assert not (tmp_path / "t_workdir" / "toprocess").exists()


def test_an_over_long_toprocess_line_is_an_error_not_a_spin(tmp_path: Path) -> None:
    """A workdir with a line no import makes any more (an older version's, a hand edit)."""
    tasks = write_tasklist(tmp_path / "t", ["true"])
    workdir = tmp_path / "t_workdir"
    assert run_farmer([str(tasks)]).returncode == 0
    with open(workdir / "toprocess", "ab") as toprocess:
        toprocess.write(b"1 echo " + b"x" * (5 << 20) + b"\n2 true\n")
    result = run_farmer([str(tasks)])
    assert result.returncode == 2, result.stderr
    assert f"{workdir / 'toprocess'}:1: line longer than 1048640 bytes" in result.stderr
    no_traceback(result.stdout, result.stderr)
    status = run_farmer([str(tasks), "--status"], timeout=60)
    assert status.returncode == 3  # answers: work is left


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_fifo_or_a_device_as_tasklist_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        tasks = tmp_path / "fifo"
        os.mkfifo(tasks)
        what = "a FIFO (named pipe)"
    else:
        tasks, what = Path(kind), "a character device"
    workdir = tmp_path / "wd"
    result = run_farmer([str(tasks), "-w", str(workdir)], timeout=60)
    assert result.returncode == 2
    assert result.stderr == (
        f"farmer: error: {tasks}: is {what}, not a regular file: a farm reads its tasklist "
        "again when it continues; save it to a file, or give it on standard input as '-' "
        "with --workdir\n")
    assert not workdir.exists()
