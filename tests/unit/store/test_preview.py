"""``--dry-run``'s reading, in-process: what a farmer starting now would run, for each kind of
workdir, without changing a byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfarmer.errors import TasklistError
from taskfarmer.hpc.identity import Identity
from taskfarmer.store import StateStore
from taskfarmer.store.locking import make_lock
from taskfarmer.store.preview import would_run
from taskfarmer.tasks import ListTaskList


def listed(workdir: Path, tasks: Path, **options: bool) -> list[tuple[int, str]]:
    return [(task.id, task.text) for task in would_run(workdir, tasks, ListTaskList(), **options)]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


def test_a_new_workdir_runs_the_whole_list(tmp_path: Path) -> None:
    tasks = tmp_path / "t"
    tasks.write_text("a\n# no\nb")
    assert listed(tmp_path / "wd", tasks) == [(0, "a"), (1, "b")]
    assert not (tmp_path / "wd").exists()


def test_pending_then_new_lines_then_failed_and_nothing_changes(tmp_path: Path) -> None:
    tasks, workdir = tmp_path / "t", tmp_path / "wd"
    tasks.write_text("a\nb\nc\nd\n")
    store = StateStore(workdir, make_lock(workdir, "flock", {}))
    store.prepare()
    with store.locked():
        store.import_list(tasks, ListTaskList(), starting=True)
        lease = store.register("l1", Identity.current(environ={}, hostname="h"))
        taken = store.claim(lease, 2)  # a: failed, b: still running
        store.record(lease, taken[0], False)
    with open(tasks, "a") as handle:
        handle.write("e\n")
    before = snapshot(workdir)
    assert listed(workdir, tasks) == [(2, "c"), (3, "d"), (4, "e")]
    assert listed(workdir, tasks, requeue_failed=True)[-1] == (0, "a")
    assert snapshot(workdir) == before
    tasks.write_text("a\nB\nc\nd\ne\n")
    with pytest.raises(TasklistError, match="differs from the list imported"):
        listed(workdir, tasks)
    assert listed(workdir, tasks, accept=True) == [(2, "c"), (3, "d"), (4, "e")]


def test_a_pytaskfarmer_workdir_runs_what_its_adoption_leaves(tmp_path: Path) -> None:
    tasks, workdir = tmp_path / "t", tmp_path / "wd"
    tasks.write_text("a\nb\nc\n")
    workdir.mkdir()
    (workdir / "toprocess").write_text("0 a\n2 c\n")  # 0 also finished; 1 in no file
    (workdir / "finished").write_text("0 a\n")
    (workdir / "failed").write_text("")
    assert listed(workdir, tasks) == [(1, "b"), (2, "c")]
    assert not (workdir / "claims").exists()  # not adopted by looking


def test_a_workdir_from_before_imports_were_remembered(tmp_path: Path) -> None:
    tasks, workdir = tmp_path / "t", tmp_path / "wd"
    tasks.write_text("a\nb\nc\n")
    workdir.mkdir()
    (workdir / "toprocess").write_text("0 a\n1 b\n")
    (workdir / "claims").write_text("0 l1 4\n")
    (workdir / "finished").write_text("0 a\n")
    assert listed(workdir, tasks) == [(1, "b"), (2, "c")]
