"""The lock-free consistent reads behind ``farmer --status``."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfarmer.errors import WorkdirError
from taskfarmer.hpc.identity import Identity
from taskfarmer.store import Snapshot, StateStore, make_lock


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path / "w", make_lock(tmp_path, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize(["echo a", "echo b", "echo c"])
    return store


def test_a_snapshot_counts_pending_and_finds_the_running_task(store: StateStore) -> None:
    with store.locked():
        lease = store.register("f.1-aa.w0.9.1", Identity.current())
        task = store.claim(lease, 1)[0]
    with Snapshot.take(store, None) as snapshot:
        assert snapshot.pending() == 2 and snapshot.count("finished") == 0
        assert [info.name for info in snapshot.lease_infos()] == [lease.name]
        [(task_id, end)] = snapshot.last_chunks([lease.name])[lease.name]
        assert task_id == task.id == 0 and snapshot.task_text(end) == "echo a"
        assert not snapshot.settled_recently(0) and not snapshot.consistent
    with store.locked():
        store.record(lease, task, succeeded=False)
    with Snapshot.take(store, store.workdir.parent / "lock") as snapshot:
        assert snapshot.consistent and snapshot.settled_recently(0)
        assert snapshot.count("failed") == 1 and snapshot.latest_failed(10) == [(0, "echo a")]
        assert snapshot.attempts({0}) == {0: 1}


def test_a_half_done_compaction_counts_its_new_list(store: StateStore) -> None:
    store.files.toprocess_new.write_bytes(b"2 echo c\n")
    with open(store.claims, "a") as claims:
        claims.write("- compact\n")  # the commit mark: the cursor is unknown until finished
    with Snapshot.take(store, None) as snapshot:
        assert snapshot.cursor == 0 and snapshot.pending() == 1
        assert snapshot.last_chunks(["any"]) == {}


def test_no_workdir_or_no_toprocess_is_an_error(tmp_path: Path) -> None:
    absent = StateStore(tmp_path / "absent", make_lock(tmp_path, "flock", {}))
    with pytest.raises(WorkdirError, match="no such workdir"):
        Snapshot.take(absent, None)
    (tmp_path / "empty").mkdir()
    empty = StateStore(tmp_path / "empty", make_lock(tmp_path, "flock", {}))
    with pytest.raises(WorkdirError, match="no farmer has started here"):
        Snapshot.take(empty, None)


def test_each_lease_s_last_claim_is_found_whole(tmp_path: Path) -> None:
    """A worker claims a chunk with one write: its last claim is its last run of lines."""
    store = StateStore(tmp_path / "w", make_lock(tmp_path, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize([f"echo {n}" for n in range(10)])
        one = store.register("f.1-aa.w0.9.1", Identity.current())
        two = store.register("f.1-aa.w1.9.1", Identity.current())
        store.claim(one, 3)  # 0 1 2
        store.claim(two, 2)  # 3 4
        store.claim(one, 2)  # 5 6
        store.claim(two, 1)  # 7: adjacent to nothing of its own
        store.claim(two, 1)  # 8: adjacent to its claim of 7
    with Snapshot.take(store, None) as snapshot:
        chunks = snapshot.last_chunks([one.name, two.name, "gone"])
        assert {name: [task_id for task_id, _ in run] for name, run in chunks.items()} == {
            one.name: [5, 6], two.name: [7, 8]}
        assert snapshot.task_text(chunks[one.name][1][1]) == "echo 6"
