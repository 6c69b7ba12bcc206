"""Hang-ups and output nobody reads: SIGHUP (to the process group, from a closed terminal,
under ``nohup``), a pipe closed by its reader (``| head -1``), an output file on a full disk,
descriptors closed at the start (``>&-``). The farm stops cleanly (SIGHUP: exit 3) or goes on
(output), and no task is lost either way (issue 9)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
from pathlib import Path

import pytest
from helpers.farmer import (
    FARMER,
    alive,
    farmer_env,
    ids,
    no_traceback,
    pids_in,
    run_farmer,
    start_farmer,
    wait_for,
    write_tasklist,
)
from helpers.tmpfs import Tmpfs


def _gated_tasks(tmp_path: Path, count: int) -> Path:
    """``count`` tasks that wait for ``tmp_path/go`` and record their pid in ``pids/``."""
    gate, pids = tmp_path / "go", tmp_path / "pids"
    pids.mkdir()
    return write_tasklist(tmp_path / "t", [
        f"echo $$ > {pids}/{i}.pid; while [ ! -e {gate} ]; do sleep 0.02; done; echo out{i}"
        for i in range(count)])


def test_sighup_to_the_process_group_stops_like_sigterm(tmp_path: Path) -> None:
    """A closed terminal sends SIGHUP to the farmer's whole process group (main and workers)."""
    tasks = _gated_tasks(tmp_path, 6)
    farmer = start_farmer([str(tasks), "-n", "3"])
    wait_for(lambda: len(pids_in(tmp_path / "pids")) == 3, what="3 tasks running")
    task_pids = pids_in(tmp_path / "pids")
    os.killpg(farmer.pid, signal.SIGHUP)
    out, err = farmer.communicate(timeout=60)
    assert farmer.returncode == 3, err
    no_traceback(out, err)
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "toprocess")) == list(range(6))
    assert ids(workdir / "finished") == [] and ids(workdir / "failed") == []
    wait_for(lambda: not any(alive(pid) for pid in task_pids), timeout=10,
             what="no orphan task processes")
    (tmp_path / "go").touch()
    rerun = run_farmer([str(tasks), "-n", "3"])
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(ids(workdir / "finished")) == list(range(6))


def test_a_closed_terminal_stops_the_farm_cleanly(tmp_path: Path) -> None:
    """The farmer on a terminal (its progress bar) whose other end closes: the kernel sends
    SIGHUP, and every later write to the terminal fails (EIO)."""
    tasks = _gated_tasks(tmp_path, 6)
    pid, terminal = pty.fork()
    if pid == 0:  # the farmer: a session leader with the pty as its controlling terminal
        try:
            os.chdir(tmp_path)
            os.execve(FARMER[0], [*FARMER, str(tasks), "-n", "3"], farmer_env())
        finally:
            os._exit(127)
    seen = bytearray()

    def three_running() -> bool:
        try:
            while select.select([terminal], [], [], 0)[0]:
                seen.extend(os.read(terminal, 65536))  # a full terminal would block the bar
        except OSError:
            pass
        return len(pids_in(tmp_path / "pids")) == 3

    wait_for(three_running, what="3 tasks running")
    task_pids = pids_in(tmp_path / "pids")
    os.close(terminal)  # hang up
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3, seen.decode(errors="replace")
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "toprocess")) == list(range(6))
    assert ids(workdir / "finished") == [] and ids(workdir / "failed") == []
    assert list((workdir / "leases").iterdir()) == []
    wait_for(lambda: not any(alive(pid) for pid in task_pids), timeout=10,
             what="no orphan task processes")


def test_nohup_keeps_the_farm_running_through_a_hang_up(tmp_path: Path) -> None:
    """``nohup farmer ...``: SIGHUP was ignored on purpose, and stays so."""
    tasks = _gated_tasks(tmp_path, 4)
    farmer = subprocess.Popen(["nohup", *FARMER, str(tasks), "-n", "2"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=farmer_env(),
                              stdin=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: len(pids_in(tmp_path / "pids")) == 2, what="2 tasks running")
    os.killpg(farmer.pid, signal.SIGHUP)
    (tmp_path / "go").touch()
    _, err = farmer.communicate(timeout=60)
    assert farmer.returncode == 0, err
    assert sorted(ids(tmp_path / "t_workdir" / "finished")) == list(range(4))


def test_a_reader_that_goes_away_neither_stops_the_farm_nor_loses_a_task(tmp_path: Path) -> None:
    """``farmer -v ... | head -1``: stdout gives EPIPE from the second line on."""
    tasks = _gated_tasks(tmp_path, 20)
    farmer = start_farmer(["-v", str(tasks), "-n", "2"])
    assert farmer.stdout is not None
    head = subprocess.Popen(["head", "-1"], stdin=farmer.stdout, stdout=subprocess.PIPE,
                            text=True)
    farmer.stdout.close()  # head holds the only reading end
    first, _ = head.communicate(timeout=60)
    (tmp_path / "go").touch()  # the tasks (and their -v lines) start once head is gone
    err = farmer.stderr.read() if farmer.stderr is not None else ""
    assert farmer.wait(timeout=60) == 0, err
    assert "workdir" in first
    no_traceback(err)
    assert [line for line in err.splitlines() if line] == [
        "farmer: warning: stdout: Broken pipe; writing no more there (the farm goes on; its "
        "record is the workdir)"]
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == list(range(20))
    assert ids(workdir / "toprocess") == [] and ids(workdir / "failed") == []


def test_an_output_file_on_a_full_disk_does_not_stop_the_farm(tmp_path: Path,
                                                              tmpfs: Tmpfs) -> None:
    """``farmer -v ... > out`` where ``out``'s filesystem fills up (ENOSPC on stdout)."""
    tasks = write_tasklist(tmp_path / "t", [f"echo out{i}" for i in range(100)])
    tmpfs.mount("size=4k")
    with open(tmpfs.path / "out", "w") as out:
        result = subprocess.run([*FARMER, "-v", str(tasks), "-n", "2"], stdout=out,
                                stderr=subprocess.PIPE, text=True, env=farmer_env(),
                                timeout=120)
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    assert result.stderr == ("farmer: warning: stdout: No space left on device; writing no "
                             "more there (the farm goes on; its record is the workdir)\n")
    assert sorted(ids(tmp_path / "t_workdir" / "finished")) == list(range(100))


@pytest.mark.parametrize("closed", [">&-", "2>&-", ">&- 2>&-"])
def test_a_closed_stdout_or_stderr_at_the_start_changes_nothing(tmp_path: Path,
                                                               closed: str) -> None:
    """With descriptor 1 or 2 closed, no state file may take its number (and our lines)."""
    tasks = write_tasklist(tmp_path / "t", [f"echo out{i}" for i in range(20)])
    command = " ".join([*FARMER, "-v", str(tasks), "-n", "2"])
    result = subprocess.run(["sh", "-c", f"exec {command} {closed}"], capture_output=True,
                            text=True, env=farmer_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    no_traceback(result.stdout, result.stderr)
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == list(range(20))  # every line parses
    assert ids(workdir / "toprocess") == [] and ids(workdir / "failed") == []
    assert all((workdir / "logs" / f"log_{i}").read_text() == f"out{i}\n" for i in range(20))


