"""Real filesystem faults: full and over-quota tmpfs mounts, short writes, a removed ``logs/``,
a bad or full SCRATCH, malformed state files (issue 9). Hang-ups and closed output streams are
in test_hangups.py.

A tmpfs mounted with ``size=`` stands in for a full disk, one with ``nr_inodes=`` for a
file-count quota; ``mount -o remount`` grows them, as freeing space or raising a quota would
(``tmpfs`` fixture, tests/helpers/tmpfs.py).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.farmer import (
    error_lines,
    ids,
    no_traceback,
    run_farmer,
    start_farmer,
    wait_for,
    write_tasklist,
)
from helpers.tmpfs import Tmpfs

from taskfarmer.errors import FilesystemError
from taskfarmer.logs.joblog import Entry, JobLog
from taskfarmer.logs.reading import task_pieces
from taskfarmer.store import append_lines as append

# -- SCRATCH ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", ["flock", "soft"])
@pytest.mark.parametrize("case", ["missing", "dangling link", "file", "read-only"])
def test_a_bad_scratch_is_one_line_before_the_workdir_is_touched(
        tmp_path: Path, tmpfs: Tmpfs, lock: str, case: str) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"] * 3)
    scratch = tmp_path / "scratch"
    if case == "file":
        scratch.write_text("")
    elif case == "dangling link":
        scratch.symlink_to(tmp_path / "gone")
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
    assert scratch.exists() == (case not in ("missing", "dangling link"))  # none created
    assert not (tmp_path / "gone").exists()
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


def task_outputs(workdir: Path, count: int) -> dict[int, list[bytes]]:
    """Task ID -> the output of each of its executions, whatever ``--logs`` wrote it (no
    job log: the pieces as they are in the files)."""
    pieces = task_pieces(workdir / "logs", None, [], range(count))
    return {task_id: [b"".join(piece.chunks()) for piece in found]
            for task_id, found in pieces.items()}


@pytest.mark.parametrize("layout", ["flat", "spread", "nonempty", "packed"])
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
    logs = task_outputs(workdir, 30)
    # The tasks running at the removal (one per worker: which ones depends on how the
    # workers' chunks fell) may have lost their output; no other did.
    later = {i: [b"out%d\n" % i] for i in range(4, 30)}
    lost = [i for i, outputs in later.items() if logs.get(i) != outputs]
    assert len(lost) <= 2, (lost, logs)
    assert all(logs.get(i) in (None, [b""]) for i in lost)


# -- full and over-quota filesystems ------------------------------------------------------------

#: The one line a farmer stopped by a failed filesystem operation prints on stderr:
#: ``farmer: error: FILE: cannot OPERATION: REASON``.
FS_ERROR = re.compile(r"farmer: error: (?P<path>\S+): cannot (?P<operation>[a-z][a-z ]*[a-z]"
                      r"(?: to \S+)?): (?P<reason>No space left on device|Disk quota exceeded)$")


def run_until_done(tasks: Path, workdir: Path, fs: Tmpfs, limits: str, grown: str,
                   count: int, *extra: str, done: int | None = 0
                   ) -> subprocess.CompletedProcess:
    """A campaign on a filesystem that fills up: the first run fails cleanly; grown, the
    reruns finish it (exit ``done``; None: 0 or 1, tasks whose own output could not be
    written may have failed). Checks what must hold after every run; returns the first run."""
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
    assert rerun.returncode == done if done is not None else rerun.returncode in (0, 1), \
        rerun.stderr
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
            fd = os.open(path, os.O_RDWR | os.O_APPEND)  # as StateFiles opens them
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


def test_a_full_disk_with_packed_logs_cuts_frames_and_mixes_no_output(tmp_path: Path,
                                                                    tmpfs: Tmpfs) -> None:
    """``--logs packed`` on a disk that fills up: the farm stops cleanly, the reruns finish,
    and every execution in the packed files holds its own task's output, whole or cut,
    never another's; every finished task's output is there whole."""
    output = [b"%049d\n" % i for i in range(1000)]
    tasks = write_tasklist(tmp_path / "t", [f"printf '%049d\\n' {i}" for i in range(1000)])
    workdir = tmpfs.path / "wd"
    run_until_done(tasks, workdir, tmpfs, "size=200k", "size=64m", 1000, "--logs", "packed",
                   done=None)
    logs = task_outputs(workdir, 1000)
    mixed = {i: texts for i, texts in logs.items()
             if any(not output[i].startswith(text) for text in texts)}
    assert not mixed
    assert all(output[i] in logs.get(i, []) for i in ids(workdir / "finished"))


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
