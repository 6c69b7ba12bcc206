"""What users of GNU parallel and disBatch reach for, and small things at the command line's
edges: --dry-run, a tasklist on standard input, -j, shell completion, ``-v 3``, and ``-w`` on a
directory that is not a farm's (the numeric options in-process: tests/unit/cli/test_numbers.py).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

from helpers.farmer import FARMER, farmer_env, ids, no_traceback, run_farmer, write_tasklist


def farmer_with_input(args: list[str], data: bytes | None, cwd: Path,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``farmer ARGS`` with ``data`` on its standard input (None: /dev/zero)."""
    if data is None:
        with open("/dev/zero", "rb") as zero:
            return subprocess.run([*FARMER, *args], capture_output=True, timeout=120,
                                  env=farmer_env(env), stdin=zero, cwd=cwd)
    return subprocess.run([*FARMER, *args], capture_output=True, timeout=120,
                          env=farmer_env(env), input=data, cwd=cwd)


def test_dry_run_prints_what_would_run_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "tasklists.d").mkdir()
    (tmp_path / "tasklists.d" / "gz.ini").write_text(textwrap.dedent("""
        [gz]
        TaskList = taskfarmer.tasks.TemplateTaskList
        command = gzip -k {line}
        """))
    tasks = write_tasklist(tmp_path / "t", ["a.txt", "# not a task", "b c.txt"])
    env = {"HOME": str(tmp_path / "home")}
    dry = run_farmer([str(tasks), "-t", "gz", "--dry-run"], env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == "0\tgzip -k a.txt\n1\tgzip -k 'b c.txt'\n"
    assert sorted(os.listdir(tmp_path)) == ["home", "t", "tasklists.d"]  # no workdir

    plain = write_tasklist(tmp_path / "p", ["true", "false", "true"])
    assert run_farmer([str(plain)]).returncode == 1
    with open(plain, "a") as handle:
        handle.write("echo new")
    workdir = tmp_path / "p_workdir"
    before = {path.name: path.stat().st_mtime_ns for path in workdir.iterdir()}
    again = run_farmer([str(plain), "--dry-run", "--requeue-failed"])
    assert again.returncode == 0, again.stderr
    assert again.stdout == "3\techo new\n1\tfalse\n"  # new lines, then the failed ones
    assert {path.name: path.stat().st_mtime_ns for path in workdir.iterdir()} == before
    write_tasklist(plain, ["true", "edited"])
    refused = run_farmer([str(plain), "--dry-run"])
    assert refused.returncode == 2 and "differs from the list imported" in refused.stderr
    no_traceback(refused.stderr)


def test_a_tasklist_on_standard_input_needs_a_workdir_and_runs(tmp_path: Path) -> None:
    lines = b"".join(b"echo %d > %d.out\n" % (i, i) for i in range(4))
    missing = farmer_with_input(["-"], lines, tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == (b"farmer: error: TASKLIST '-' (standard input) needs --workdir: "
                              b"a farm on it is continued with the same --workdir\n")
    workdir, spool = tmp_path / "wd", tmp_path / "tmp"
    spool.mkdir()
    env = {"TMPDIR": str(spool)}
    ran = farmer_with_input(["-", "-w", str(workdir), "-j", "2"], lines, tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3]
    assert (tmp_path / "3.out").read_text() == "3\n"
    more = farmer_with_input(["-", "-w", str(workdir)], lines + b"echo 4\n", tmp_path, env)
    assert more.returncode == 0, more.stderr  # the same input and a line more: that line runs
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3, 4]
    other = farmer_with_input(["-", "-w", str(workdir)], b"echo other\n", tmp_path, env)
    assert other.returncode == 2
    assert other.stderr.startswith(b"farmer: error: <stdin>:1: differs from the list imported")
    assert os.listdir(spool) == []  # the copy of standard input is gone


def test_standard_input_that_never_ends_a_line_is_refused_in_bounded_memory(
        tmp_path: Path) -> None:
    result = farmer_with_input(["-", "-w", str(tmp_path / "wd")], None, tmp_path)
    assert result.returncode == 2
    assert result.stderr == (b"farmer: error: <stdin>:1: line is longer than 1048576 bytes "
                             b"(1 MiB), the limit of a tasklist line\n")
    assert not (tmp_path / "wd").exists()


def test_shell_completion_works_as_documented(tmp_path: Path) -> None:
    script = run_farmer([], env={"_FARMER_COMPLETE": "bash_source"})
    assert script.returncode == 0 and "complete -o nosort -F _farmer_completion farmer" in \
        script.stdout
    words = run_farmer([], env={"_FARMER_COMPLETE": "bash_complete", "COMP_WORDS": "farmer --dry",
                                "COMP_CWORD": "1"})
    assert words.stdout.split() == ["plain,--dry-run"]


def test_v_takes_a_number_as_pytaskfarmer_did(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["echo hi"])
    result = run_farmer([str(tasks), "-v", "3"])
    assert result.returncode == 0, result.stderr
    assert "task 0" in result.stdout  # the per-task lines of --verbose


def test_a_directory_that_is_not_a_farm_s_workdir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "finished").write_text("my own notes\nline two\n")
    tasks = write_tasklist(tmp_path / "t.txt", ["true"])
    result = run_farmer([str(tasks), "-w", "."], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("farmer: error: .: has a finished file but no toprocess: not a "
                             "farm's workdir (or its toprocess was deleted); give a new or "
                             "empty --workdir\n")
    assert sorted(os.listdir(tmp_path)) == ["finished", "t.txt"]
    assert run_farmer([str(tasks), "-w", "empty"], cwd=tmp_path).returncode == 0
