"""Tasklists that grow: appended lines are new tasks; edited imported parts are refused."""

from __future__ import annotations

import os
import select
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

from helpers.farmer import ids, run_farmer, start_farmer, stop, wait_for, write_tasklist

from taskfarmer.store import StateStore
from taskfarmer.store.locking import make_lock
from taskfarmer.tasks import ListTaskList, TaskList


def store_of(workdir: Path) -> StateStore:
    return StateStore(workdir, make_lock(workdir, "flock", {}))


def test_appended_lines_are_new_tasks_and_a_last_line_without_newline_one_at_rest(
        tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["echo 0", "# a comment", "echo 1"])
    assert run_farmer([str(tasks)]).returncode == 0
    with open(tasks, "a") as handle:
        handle.write("echo 2\n\necho 3\necho 4")  # no newline: a task once the list rests
    again = run_farmer([str(tasks)])
    assert again.returncode == 0, again.stderr
    assert "imported 2 task(s) appended to" in again.stdout  # at start; echo 4 two seconds later
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3, 4]
    assert (workdir / "finished").read_text().count("echo 3") == 1
    assert (workdir / "imported").read_text() == "bytes 47\nlines 7\ntasks 5\n"
    assert (workdir / "tasklist").read_bytes() == tasks.read_bytes()
    with open(tasks, "a") as handle:  # the newline, then more lines: the line is the same
        handle.write("\necho 5\n")
    assert run_farmer([str(tasks)]).returncode == 0
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3, 4, 5]
    assert (workdir / "imported").read_text() == "bytes 55\nlines 8\ntasks 6\n"
    assert run_farmer([str(tasks)]).returncode == 0  # nothing new: nothing runs twice
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3, 4, 5]


def test_text_glued_onto_a_last_line_imported_without_newline_is_refused(
        tmp_path: Path) -> None:
    tasks = tmp_path / "t"
    tasks.write_text("echo 0\necho 1")
    os.utime(tasks, (0, 0))  # written long ago: at rest at once
    assert run_farmer([str(tasks)]).returncode == 0
    with open(tasks, "a") as handle:
        handle.write("echo 2\n")  # the line becomes "echo 1echo 2"
    refused = run_farmer([str(tasks)])
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == (
        f"farmer: error: {tasks}:2: line 2 was imported without its newline (the list was at "
        "rest), as 'echo 1'; text added to it since changes a task already imported (end a "
        "list's last line with a newline before appending): use a new --workdir, or "
        "--accept-list to take the list as it is now\n")
    assert sorted(ids(tmp_path / "t_workdir" / "finished")) == [0, 1]


def test_an_edited_truncated_or_different_list_is_refused(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "a.txt", ["echo 0", "echo 1", "echo 2"])
    assert run_farmer([str(tasks)]).returncode == 0
    workdir = tmp_path / "a.txt_workdir"
    before = sorted(os.listdir(workdir))

    write_tasklist(tasks, ["echo 0", "echo one", "echo 2", "echo 3"])
    edited = run_farmer([str(tasks)])
    assert edited.returncode == 2 and edited.stdout == ""
    assert edited.stderr == (
        f"farmer: error: {tasks}:2: differs from the list imported into {workdir} (was "
        "'echo 1', now 'echo one'): use a new --workdir, or --accept-list to take the list as "
        "it is now\n")
    write_tasklist(tasks, ["echo 0"])
    short = run_farmer([str(tasks)])
    assert short.returncode == 2
    assert f"{tasks}:2: the list is shorter than the 3 lines imported" in short.stderr
    other = write_tasklist(tmp_path / "b.txt", ["echo b0", "echo b1"])
    wrong = run_farmer([str(other), "--workdir", str(workdir)])
    assert wrong.returncode == 2 and f"{other}:1: differs" in wrong.stderr
    assert sorted(os.listdir(workdir)) == before and sorted(ids(workdir / "finished")) == [0, 1, 2]

    write_tasklist(tasks, ["echo 0", "echo one", "echo 2", "echo 3"])
    accepted = run_farmer([str(tasks), "--accept-list"])
    assert accepted.returncode == 0, accepted.stderr
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3]  # only the new line ran
    assert (workdir / "finished").read_text().count("echo one") == 0
    assert run_farmer([str(tasks)]).returncode == 0  # the accepted list is the list now


def test_running_farmers_import_growth_while_working_and_with_follow(tmp_path: Path) -> None:
    go = tmp_path / "go"
    tasks = write_tasklist(tmp_path / "t", [f"while [ ! -e {go} ]; do sleep 0.05; done"])
    workdir = tmp_path / "t_workdir"
    farmer = start_farmer([str(tasks), "-n", "2", "--follow"])
    wait_for(lambda: any((workdir / "leases").glob("*")) if (workdir / "leases").exists()
             else False, what="farmer working")
    with open(tasks, "a") as handle:  # task 0 still runs: noticed within IMPORT_POLL
        handle.write("echo appended while working\n")
    wait_for(lambda: ids(workdir / "finished") == [1], what="task 1 run while 0 runs")
    go.touch()
    wait_for(lambda: sorted(ids(workdir / "finished")) == [0, 1], what="all done")
    with open(tasks, "a") as handle:  # out of work: --follow waits for more
        handle.write("echo appended after the end\n")
    wait_for(lambda: sorted(ids(workdir / "finished")) == [0, 1, 2], what="task 2 with follow")
    assert farmer.poll() is None
    done = stop(farmer, signal.SIGTERM)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "imported 1 task(s) appended to" in done.stdout


def test_a_removed_list_leaves_the_workdir_to_finish(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true", "true"])
    store = store_of(tmp_path / "t_workdir")
    store.prepare()
    with store.locked():
        assert store.import_list(tasks, ListTaskList(), starting=True) == 2
    tasks.unlink()
    result = run_farmer([str(tasks)], timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(ids(tmp_path / "t_workdir" / "finished")) == [0, 1]


def test_a_crash_between_the_import_steps_is_completed_exactly_once(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["echo 0", "echo 1"])
    assert run_farmer([str(tasks)]).returncode == 0
    workdir = tmp_path / "t_workdir"
    # crashed after step (1): the copy has the new lines, toprocess not yet
    with open(tasks, "a") as handle:
        handle.write("echo 2\necho 3\n")
    with open(workdir / "tasklist", "a") as copy:
        copy.write("echo 2\necho 3\n")
    assert run_farmer([str(tasks)]).returncode == 0
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3]
    # crashed after step (2), with one of the tasks run meanwhile by a farmer already running
    with open(tasks, "a") as handle:
        handle.write("echo 4\necho 5\n")
    with open(workdir / "tasklist", "a") as copy:
        copy.write("echo 4\necho 5\n")
    with open(workdir / "toprocess", "a") as toprocess:
        toprocess.write("5 echo 5\n")
    with open(workdir / "finished", "a") as finished:
        finished.write("4 echo 4\n")
    assert run_farmer([str(tasks)]).returncode == 0
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3, 4, 5]
    assert (workdir / "imported").read_text() == "bytes 42\nlines 6\ntasks 6\n"


def test_a_workdir_made_before_imports_were_remembered_is_adopted(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["echo 0", "# note", "echo 1", "echo 2"])
    workdir = tmp_path / "t_workdir"
    store = store_of(workdir)
    store.prepare()
    with store.locked():
        store.initialize(ListTaskList().lines(tasks))
    with open(tasks, "a") as handle:
        handle.write("echo 3\n")
    result = run_farmer([str(tasks)])
    assert result.returncode == 0, result.stderr
    assert sorted(ids(workdir / "finished")) == [0, 1, 2, 3]
    assert (workdir / "imported").read_text() == "bytes 35\nlines 5\ntasks 4\n"


def test_a_pytaskfarmer_workdir_is_left_to_its_own_reconciliation(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["echo 0", "echo 1"])
    workdir = tmp_path / "t_workdir"
    workdir.mkdir()
    (workdir / "toprocess").write_text("echo 1\n")  # PyTaskFarmer's: no IDs, no claims
    store = store_of(workdir)
    with store.locked():
        assert store.import_list(tasks, ListTaskList(), starting=True) == 0
    assert sorted(os.listdir(workdir)) == ["holder", "lock", "toprocess"]  # holder: the lock's


class Reversed(TaskList):
    """A handler with its own ``lines``: its list is read once."""

    def lines(self, path: Path) -> Iterator[str]:
        return iter(reversed(path.read_text().split()))


def test_a_template_list_grows_and_a_custom_reader_reads_once(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "tasklists.d").mkdir()
    (tmp_path / "tasklists.d" / "echo.ini").write_text(textwrap.dedent("""
        [echo]
        TaskList = taskfarmer.tasks.TemplateTaskList
        command = echo {stem} >> out
        """))
    files = write_tasklist(tmp_path / "files", ["a.x", "b.x"])
    env = {"HOME": str(tmp_path / "home")}
    args = [str(files), "--tasklist", "echo"]
    assert run_farmer(args, env=env, cwd=tmp_path).returncode == 0
    with open(files, "a") as handle:
        handle.write("c.x\n")
    assert run_farmer(args, env=env, cwd=tmp_path).returncode == 0
    assert sorted((tmp_path / "out").read_text().split()) == ["a", "b", "c"]

    assert not Reversed().grows and ListTaskList().grows
    custom = write_tasklist(tmp_path / "custom", ["true", "false"])
    store = store_of(tmp_path / "custom_workdir")
    store.prepare()
    with store.locked():
        assert store.import_list(custom, Reversed(), starting=True) == 2
        with open(custom, "a") as handle:
            handle.write("echo more\n")
        assert store.import_list(custom, Reversed(), starting=True) == 0
    assert (tmp_path / "custom_workdir" / "toprocess").read_text() == "0 false\n1 true\n"


def test_a_running_farmer_that_finds_the_list_edited_imports_no_more(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true"])
    workdir = tmp_path / "t_workdir"
    farmer = start_farmer([str(tasks), "-n", "1", "--follow"])
    wait_for(lambda: ids(workdir / "finished") == [0], what="task 0 done")
    write_tasklist(tasks, ["true ", "echo new"])  # an edit and a new line
    seen = b""

    def said(text: bytes) -> bool:
        nonlocal seen
        while select.select([farmer.stdout], [], [], 0)[0]:
            chunk = os.read(farmer.stdout.fileno(), 65536)  # type: ignore[union-attr]
            if not chunk:
                break
            seen += chunk
        return text in seen

    wait_for(lambda: said(b"importing no more from it"), what="the edit noticed")
    done = stop(farmer, signal.SIGTERM)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"error: {tasks}:1: differs from the list imported".encode() in seen
    assert ids(workdir / "finished") == [0] and ids(workdir / "toprocess") == []
