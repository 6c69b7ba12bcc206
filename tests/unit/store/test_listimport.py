"""The tasklist import at its edges, in-process: the last line without a newline (taken once
the list is at rest, on clocks of the test's own), over-long lines, crashes between the steps
of an import that took such a line, and --accept-list's line count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.farmer import ids

from taskfarmer.errors import TasklistError
from taskfarmer.store import StateStore, unimported_lines
from taskfarmer.store.locking import make_lock
from taskfarmer.store.tail import QUIET, SETTLED, RestWatch, split
from taskfarmer.tasks import MAX_LINE, ListTaskList


class Clocks:
    """A wall clock and a monotonic clock that move only when told."""

    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 0.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def store_with(workdir: Path, clocks: Clocks) -> StateStore:
    store = StateStore(workdir, make_lock(workdir, "flock", {}))
    store.list_import.rest = RestWatch(lambda: clocks.wall, lambda: clocks.mono)
    store.prepare()
    return store


def write(path: Path, data: bytes, clocks: Clocks, age: float = 0.0) -> None:
    """Write ``path``; its modification time ``age`` seconds before the test's wall clock."""
    path.write_bytes(data)
    os.utime(path, (clocks.wall - age, clocks.wall - age))


def imported(store: StateStore, tasks: Path) -> int:
    with store.locked():
        return store.import_list(tasks, ListTaskList(), starting=False)


def pending_texts(workdir: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in (workdir / "toprocess").read_text().splitlines()]


# -- split: what a batch of appended bytes holds --------------------------------------------

@pytest.mark.parametrize("data, continues, whole, used, lines, rest", [
    (b"a\nb\n", False, False, 4, [b"a\n", b"b\n"], b""),
    (b"a\nb", False, False, 2, [b"a\n"], b"b"),
    (b"a\nb", False, True, 3, [b"a\n", b"b"], b""),
    (b"a\rb\n", False, False, 4, [b"a\rb\n"], b""),  # only a newline ends a line
    (b"\nc\n", True, False, 3, [b"c\n"], b""),  # the open line's newline, then a line
    (b"  ", True, False, 0, [], b"  "),  # the open line goes on: nothing yet
    (b"  ", True, True, 2, [], b""),
    (b"", False, True, 0, [], b""),
])
def test_split(data: bytes, continues: bool, whole: bool, used: int, lines: list[bytes],
               rest: bytes) -> None:
    batch = split(data, continues, whole)
    assert (batch.used, batch.lines, batch.rest) == (used, lines, rest)


def test_a_list_is_at_rest_after_quiet_seconds_unchanged_or_when_written_long_ago(
        tmp_path: Path) -> None:
    clocks = Clocks()
    watch = RestWatch(lambda: clocks.wall, lambda: clocks.mono)
    path = tmp_path / "t"
    write(path, b"echo", clocks)
    assert not watch.at_rest(path.stat())
    clocks.advance(QUIET - 0.1)
    assert not watch.at_rest(path.stat())
    write(path, b"echo 1", clocks)  # it changed: the quiet time starts again
    clocks.advance(0.2)
    assert not watch.at_rest(path.stat())
    clocks.advance(QUIET + 0.1)
    assert watch.at_rest(path.stat())
    write(path, b"echo 12", clocks, age=SETTLED)
    assert RestWatch(lambda: clocks.wall, lambda: clocks.mono).at_rest(path.stat())


# -- the import --------------------------------------------------------------------------------

def test_a_last_line_still_being_written_is_imported_once_complete_or_at_rest(
        tmp_path: Path) -> None:
    clocks = Clocks()
    tasks, workdir = tmp_path / "t", tmp_path / "wd"
    store = store_with(workdir, clocks)
    write(tasks, b"echo 0\nec", clocks)
    assert imported(store, tasks) == 1  # the first import: "ec" waits
    clocks.advance(QUIET / 2)
    write(tasks, b"echo 0\necho 1\necho", clocks)  # complete now; the next one is being written
    assert imported(store, tasks) == 1
    assert pending_texts(workdir) == ["echo 0", "echo 1"]
    clocks.advance(QUIET / 2)
    write(tasks, b"echo 0\necho 1\necho 2", clocks)
    assert imported(store, tasks) == 0
    clocks.advance(QUIET + 0.1)  # unchanged since: the line is complete
    assert imported(store, tasks) == 1
    assert pending_texts(workdir) == ["echo 0", "echo 1", "echo 2"]
    assert (workdir / "imported").read_text() == "bytes 20\nlines 3\ntasks 3\n"
    assert store.unimported_bytes(tasks) == 0
    write(tasks, b"echo 0\necho 1\necho 2 \n# c\necho 3", clocks, age=SETTLED)
    assert imported(store, tasks) == 1  # a blank rest of the line, a comment, a task
    assert pending_texts(workdir)[-1] == "echo 3"
    assert (workdir / "imported").read_text() == "bytes 32\nlines 5\ntasks 4\n"


def test_a_farm_starting_on_a_list_at_rest_takes_its_last_line(tmp_path: Path) -> None:
    clocks = Clocks()
    tasks, workdir = tmp_path / "t", tmp_path / "wd"
    write(tasks, b"echo a\necho b", clocks, age=SETTLED)
    store = store_with(workdir, clocks)
    with store.locked():
        assert store.import_list(tasks, ListTaskList(), starting=True) == 2
    assert pending_texts(workdir) == ["echo a", "echo b"]
    assert (workdir / "tasklist").read_bytes() == tasks.read_bytes()
    assert (workdir / "imported").read_text() == "bytes 13\nlines 2\ntasks 2\n"


def test_status_counts_a_last_line_without_newline_as_not_imported(tmp_path: Path) -> None:
    clocks = Clocks()
    tasks, workdir = tmp_path / "t", tmp_path / "wd"
    write(tasks, b"echo a\necho b", clocks)
    store = store_with(workdir, clocks)
    assert imported(store, tasks) == 1
    assert unimported_lines(tasks, store.imported()) == 1
    write(tasks, b"echo a\necho b\n", clocks)
    assert unimported_lines(tasks, store.imported()) == 1
    assert unimported_lines(tmp_path, store.imported()) == 0  # not a file: nothing to count


@pytest.mark.parametrize("where", ["first import", "appended", "being written"])
def test_an_over_long_line_is_refused_with_its_number_before_any_task_of_it(
        tmp_path: Path, where: str) -> None:
    clocks = Clocks()
    tasks, workdir = tmp_path / "t", tmp_path / "wd"
    store = store_with(workdir, clocks)
    long = b"echo " + b"x" * MAX_LINE
    if where != "first import":
        write(tasks, b"echo 0\n", clocks)
        assert imported(store, tasks) == 1
    data = {"first import": b"echo 0\n" + long + b"\necho 2\n",
            "appended": b"echo 0\necho 1\n" + long + b"\necho 3\n",
            "being written": b"echo 0\necho 1\n" + long}[where]
    write(tasks, data, clocks)
    with pytest.raises(TasklistError) as caught:
        imported(store, tasks)
    assert caught.value.line == (2 if where == "first import" else 3)
    assert "line is longer than 1048576 bytes (1 MiB)" in str(caught.value)
    if where != "first import":
        assert pending_texts(workdir) == ["echo 0"]  # the batch with the long line: not taken


def test_a_crash_after_a_last_line_was_copied_imports_it_once(tmp_path: Path) -> None:
    clocks = Clocks()
    tasks, workdir = tmp_path / "t", tmp_path / "wd"
    store = store_with(workdir, clocks)
    write(tasks, b"echo 0\n", clocks)
    assert imported(store, tasks) == 1
    write(tasks, b"echo 0\necho 1\necho 2", clocks, age=SETTLED)
    # crashed after step (2): the copy and toprocess have the batch, 'imported' does not
    with open(workdir / "tasklist", "ab") as copy:
        copy.write(b"echo 1\necho 2")
    with open(workdir / "toprocess", "ab") as toprocess:
        toprocess.write(b"1 echo 1\n2 echo 2\n")
    assert imported(store, tasks) == 0
    assert ids(workdir / "toprocess") == [0, 1, 2]
    assert (workdir / "imported").read_text() == "bytes 20\nlines 3\ntasks 3\n"
    # crashed after step (1): the copy has it, toprocess not: the tasks go in once (echo 3
    # by the recovery, echo 4 by the import that follows, as its line has no newline)
    write(tasks, b"echo 0\necho 1\necho 2\necho 3\necho 4", clocks, age=SETTLED)
    with open(workdir / "tasklist", "ab") as copy:
        copy.write(b"\necho 3\necho 4")
    assert imported(store, tasks) == 1
    assert ids(workdir / "toprocess") == [0, 1, 2, 3, 4]
    assert (workdir / "imported").read_text() == "bytes 34\nlines 5\ntasks 5\n"


def test_accept_list_counts_lines_across_blocks_and_a_last_line_without_newline(
        tmp_path: Path) -> None:
    clocks = Clocks()
    tasks, workdir = tmp_path / "t", tmp_path / "wd"
    store = store_with(workdir, clocks)
    lines = [b"echo %d %s\n" % (i, b"y" * 3000) for i in range(1000)]  # 3 MB: several blocks
    write(tasks, b"".join(lines) + b"echo end", clocks, age=SETTLED)
    assert imported(store, tasks) == 1001
    edited = [b"echo X\n", *lines[1:], b"echo end\n", b"echo new\n"]
    write(tasks, b"".join(edited), clocks, age=SETTLED)
    with store.locked():
        assert store.import_list(tasks, ListTaskList(), starting=True, accept=True) == 1
    assert pending_texts(workdir)[-1] == "echo new"
    assert (workdir / "imported").read_text().splitlines()[1:] == ["lines 1002", "tasks 1002"]
