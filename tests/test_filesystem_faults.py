"""Real filesystem faults: full and over-quota tmpfs mounts, removed directories, bad SCRATCH,
hang-ups and closed output streams (issue 9).

A tmpfs mounted with ``size=`` stands in for a full disk, one with ``nr_inodes=`` for a
file-count quota; ``mount -o remount`` grows them, as freeing space or raising a quota would.
Mounting needs root (the test machine and CI run as root); elsewhere these tests are skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterator, List

import pytest
from conftest import need
from farmhelp import FARMER, alive, farmer_env, ids, pids_in, run_farmer, start_farmer, \
    wait_for, write_tasklist


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
