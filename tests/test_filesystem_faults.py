"""Real filesystem faults: full and over-quota tmpfs mounts, removed directories, bad SCRATCH,
hang-ups and closed output streams (issue 9).

A tmpfs mounted with ``size=`` stands in for a full disk, one with ``nr_inodes=`` for a
file-count quota; ``mount -o remount`` grows them, as freeing space or raising a quota would.
Mounting needs root (the test machine and CI run as root); elsewhere these tests are skipped.
"""

from __future__ import annotations

import errno
import os
import pty
import re
import select
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterator, List

import pytest
from conftest import need
from farmhelp import (
    FARMER,
    alive,
    farmer_env,
    ids,
    pids_in,
    run_farmer,
    start_farmer,
    wait_for,
    write_tasklist,
)

from taskfarmer.errors import FilesystemError
from taskfarmer.joblog import Entry, JobLog
from taskfarmer.store.lines import append


class Tmpfs:
    """A tmpfs mounted at ``path`` for one test; :meth:`remount` changes its limits."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mount(self, options: str) -> None:
        """Mount with ``options`` (``size=200k``, ``nr_inodes=60``, ``ro``...)."""
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)],
                       check=True, capture_output=True)

    def remount(self, options: str) -> None:
        """Change the limits in place (files kept): the disk was cleaned, the quota raised."""
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True,
                       capture_output=True)

    def unmount(self) -> None:
        """Unmount (lazily: a farmer killed by a failed test may still hold files)."""
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """An empty mount point under ``tmp_path``; mount it with :meth:`Tmpfs.mount`."""
    need(os.geteuid() == 0 and shutil.which("mount") is not None, "mounting a tmpfs needs root")
    point = tmp_path / "mnt"
    point.mkdir()
    fs = Tmpfs(point)
    try:
        yield fs
    finally:
        while os.path.ismount(point):
            fs.unmount()


def no_traceback(*texts: str) -> None:
    """Neither output holds a Python traceback or interpreter noise."""
    for text in texts:
        assert "Traceback" not in text, text
        assert "Exception ignored" not in text, text


def error_lines(stderr: str) -> List[str]:
    """The ``farmer: error:`` lines of ``stderr``."""
    return [line for line in stderr.splitlines() if line.startswith("farmer: error:")]


# -- SCRATCH ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", ["flock", "soft"])
@pytest.mark.parametrize("case", ["missing", "file", "read-only"])
def test_a_bad_scratch_is_one_line_before_the_workdir_is_touched(
        tmp_path: Path, tmpfs: Tmpfs, lock: str, case: str) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"] * 3)
    scratch = tmp_path / "scratch"
    if case == "file":
        scratch.write_text("")
    elif case == "read-only":
        tmpfs.mount("ro,size=1m")
        scratch = tmpfs.path
    result = run_farmer([str(tasks), "--lock", lock], env={"SCRATCH": str(scratch)})
    assert result.returncode == 2, result.stderr
    no_traceback(result.stdout, result.stderr)
    assert error_lines(result.stderr) == [line for line in result.stderr.splitlines() if line]
    assert len(error_lines(result.stderr)) == 1
    assert f"SCRATCH: {scratch} " in result.stderr
    assert not (tmp_path / "t_workdir").exists()
    assert scratch.exists() == (case != "missing")  # nothing created in its place
    if case == "read-only":
        assert os.listdir(scratch) == []


@pytest.mark.parametrize("lock", ["flock", "soft"])
def test_a_full_scratch_is_one_line_and_the_rerun_finishes(tmp_path: Path, tmpfs: Tmpfs,
                                                           lock: str) -> None:
    """The lock file cannot be created: SCRATCH over its file-count quota."""
    tasks = write_tasklist(tmp_path / "t", [f"echo out{i}" for i in range(5)])
    tmpfs.mount("nr_inodes=1")  # the root directory takes the one inode
    args = [str(tasks), "--lock", lock]
    env = {"SCRATCH": str(tmpfs.path)}
    result = run_farmer(args, env=env)
    assert result.returncode == 2, result.stderr
    no_traceback(result.stdout, result.stderr)
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and FS_ERROR.match(errors[0]), result.stderr
    assert FS_ERROR.match(errors[0])["path"].startswith(f"{tmpfs.path}/taskfarmer_")
    tmpfs.remount("nr_inodes=1000")
    rerun = run_farmer(args, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(ids(tmp_path / "t_workdir" / "finished")) == list(range(5))


# -- hang-ups and closed output streams ---------------------------------------------------------


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


# -- worker start-up errors ---------------------------------------------------------------------

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
    errors = [line for line in result.stdout.splitlines() if "no device for slot" in line]
    assert 1 <= len(errors) <= 2 and all(": error: " in line for line in errors)
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "toprocess")) == list(range(10))
    assert list((workdir / "leases").iterdir()) == []


# -- malformed state files ----------------------------------------------------------------------


def test_a_malformed_failed_line_names_file_and_line_and_blocks_nothing_else(tmp_path: Path
                                                                           ) -> None:
    tasks = write_tasklist(tmp_path / "t", ["false", "false", "true"])
    assert run_farmer([str(tasks)]).returncode == 1
    failed = tmp_path / "t_workdir" / "failed"
    failed.write_text(failed.read_text() + "garbage here\n")  # a hand edit gone wrong
    result = run_farmer([str(tasks), "--requeue-failed"])
    assert result.returncode == 2
    no_traceback(result.stdout, result.stderr)
    assert error_lines(result.stderr) == [
        f"farmer: error: {failed}:3: malformed line 'garbage here': correct or delete that line "
        "(each line is 'ID command', ID the task's 0-based line number in the tasklist) while "
        "no farmer runs, then run again"]
    assert not (tmp_path / "t_workdir" / "failed.requeue").exists()
    assert run_farmer([str(tasks)]).returncode == 1  # runs without --requeue-failed go on
    failed.write_text("".join(line + "\n" for line in failed.read_text().splitlines()[:2]))
    rerun = run_farmer([str(tasks), "--requeue-failed"])
    assert rerun.returncode == 1, rerun.stderr  # the two tasks ran (and failed) again
    assert sorted(ids(failed)) == [0, 1] and ids(tmp_path / "t_workdir" / "toprocess") == []


# -- a removed logs/ directory ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flat", "spread", "nonempty"])
def test_a_removed_logs_directory_is_made_again_and_the_farm_goes_on(tmp_path: Path,
                                                                     layout: str) -> None:
    """``rm -rf WORKDIR/logs`` while tasks run: only the removed logs are lost."""
    gate = tmp_path / "go"
    tasks = write_tasklist(tmp_path / "t", [
        f"echo out{i}" if i < 4 else f"while [ ! -e {gate} ]; do sleep 0.02; done; echo out{i}"
        for i in range(30)])
    farmer = start_farmer([str(tasks), "-n", "2", "--logs", layout])
    workdir = tmp_path / "t_workdir"
    wait_for(lambda: len(ids(workdir / "finished")) == 4, what="the first 4 tasks done")
    shutil.rmtree(workdir / "logs")
    gate.touch()
    out, err = farmer.communicate(timeout=120)
    assert farmer.returncode == 0, err
    no_traceback(out, err)
    assert err == ""
    assert sorted(ids(workdir / "finished")) == list(range(30))  # each exactly once
    assert ids(workdir / "toprocess") == [] and ids(workdir / "failed") == []
    logs = {path.name: path.read_text() for path in (workdir / "logs").rglob("log_*")}
    # The two tasks running at the removal may have lost their output; no later one did.
    later = {f"log_{i}": f"out{i}\n" for i in range(6, 30)}
    assert {name: logs.get(name) for name in later} == later


# -- full and over-quota filesystems ------------------------------------------------------------

#: The one line a farmer stopped by a failed filesystem operation prints on stderr:
#: ``farmer: error: FILE: cannot OPERATION: REASON``.
FS_ERROR = re.compile(r"farmer: error: (?P<path>\S+): cannot (?P<operation>[a-z][a-z ]*[a-z]"
                      r"(?: to \S+)?): (?P<reason>No space left on device|Disk quota exceeded)$")


def run_until_done(tasks: Path, workdir: Path, fs: Tmpfs, limits: str, grown: str,
                   count: int, *extra: str, done: int = 0) -> subprocess.CompletedProcess:
    """A campaign on a filesystem that fills up: the first run fails cleanly; grown, the
    reruns finish it. Checks what must hold after every run; returns the first run."""
    fs.mount(limits)
    args = [str(tasks), "-w", str(workdir), "-n", "2", *extra]
    first = run_farmer(args, timeout=300)
    no_traceback(first.stdout, first.stderr)
    assert first.returncode in (2, 3), (first.returncode, first.stderr)  # work is left
    errors = error_lines(first.stderr)
    assert len(errors) == 1 and FS_ERROR.match(errors[0]), first.stderr
    fs.remount(grown)
    for _ in range(3):
        rerun = run_farmer(args, timeout=300)
        no_traceback(rerun.stdout, rerun.stderr)
        if rerun.returncode in (0, 1):
            break
        assert rerun.returncode == 3, rerun.stderr  # waiting out a lease, at worst
    assert rerun.returncode == done, rerun.stderr
    recorded = ids(workdir / "finished") + ids(workdir / "failed")
    assert sorted(recorded) == list(range(count))  # every task exactly once
    assert ids(workdir / "toprocess") == []
    return first


@pytest.mark.parametrize("writer", ["state file", "job log"])
def test_a_short_write_on_a_full_disk_is_undone_and_names_the_reason(tmp_path: Path,
                                                                      tmpfs: Tmpfs,
                                                                      writer: str) -> None:
    """A tmpfs of two pages, one taken: an append that crosses into the next page writes what
    fits (a short write), then fails; the file is cut back to its whole lines."""
    page = os.sysconf("SC_PAGE_SIZE")
    tmpfs.mount(f"size={2 * page}")
    (tmpfs.path / "filler").write_bytes(b"x" * page)
    path = tmpfs.path / "finished"
    path.write_bytes(b"0 true\n" * ((page - 100) // 7))
    before = path.read_bytes()
    with pytest.raises(FilesystemError) as error:
        if writer == "job log":
            joblog = JobLog(path)
            try:
                joblog.append([Entry(1, 1, "n", "f", 0, 0.0, 1.0, 0, 0, "finished", "x" * 200)])
            finally:
                joblog.close()
        else:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                append(fd, path, b"1 true\n" * 50)
            finally:
                os.close(fd)
    assert str(error.value) == f"{path}: cannot append: No space left on device"
    assert error.value.errno == errno.ENOSPC and path.read_bytes() == before


def test_a_file_count_quota_stops_the_farm_and_the_rerun_finishes(tmp_path: Path,
                                                                   tmpfs: Tmpfs) -> None:
    """The issue's first row: 200 tasks on a tmpfs with nr_inodes=60, then the quota raised."""
    tasks = write_tasklist(tmp_path / "t", [f"echo out{i}" for i in range(200)])
    workdir = tmpfs.path / "wd"
    run_until_done(tasks, workdir, tmpfs, "nr_inodes=60", "nr_inodes=100000", 200)
    assert all((workdir / "logs" / f"log_{i}").read_text().endswith(f"out{i}\n")
               for i in range(200))


def test_a_full_disk_stops_the_farm_and_the_rerun_finishes(tmp_path: Path,
                                                           tmpfs: Tmpfs) -> None:
    """1000 tasks of 50 bytes on a 200 KiB tmpfs; then space is freed."""
    tasks = write_tasklist(tmp_path / "t", [f"printf '%049d\\n' {i}" for i in range(1000)])
    run_until_done(tasks, tmpfs.path / "wd", tmpfs, "size=200k", "size=64m", 1000)


def test_a_full_disk_with_retries_loses_no_attempt(tmp_path: Path, tmpfs: Tmpfs) -> None:
    tasks = write_tasklist(tmp_path / "t", [f"test $(({i} % 3)) != 0" for i in range(300)])
    run_until_done(tasks, tmpfs.path / "wd", tmpfs, "size=120k", "size=64m", 300,
                   "--retries", "1", done=1)
    assert sorted(ids(tmpfs.path / "wd" / "failed")) == list(range(0, 300, 3))


@pytest.mark.parametrize("limits", ["size=8k", "nr_inodes=3"])
def test_a_full_disk_while_the_workdir_is_first_made(tmp_path: Path, tmpfs: Tmpfs,
                                                     limits: str) -> None:
    """Too small for the workdir itself: state files, the copy of the list, logs/."""
    tasks = write_tasklist(tmp_path / "t", [f"echo out{i}" for i in range(500)])
    first = run_until_done(tasks, tmpfs.path / "wd", tmpfs, limits, "size=64m,nr_inodes=100000",
                           500)
    assert first.returncode == 2
