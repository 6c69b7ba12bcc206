"""A coherent-mode farmer's opens of workdir files: counted by the audit hook, added up under
the lock (forked workers too), left in ``farmers/FARMER`` and read back; nothing in the fast
mode."""

from __future__ import annotations

import os
from pathlib import Path

from taskfarmer.store import StateStore, opens_per_result, read_records
from taskfarmer.store.locking import make_lock
from taskfarmer.store.opencount import OpenCount, Record, parse_record, write_record


def started(workdir: Path, coherent: bool = True) -> OpenCount:
    (workdir / "logs").mkdir(parents=True)
    counter = OpenCount(workdir / "farmers", coherent)
    counter.start()
    return counter


def test_opens_of_workdir_files_count_and_task_logs_and_other_files_do_not(tmp_path: Path
                                                                           ) -> None:
    workdir = tmp_path / "wd"
    counter = started(workdir)
    (workdir / "finished").write_bytes(b"")  # open()
    os.close(os.open(workdir / "finished", os.O_RDONLY))  # os.open()
    os.listdir(workdir)  # a listing is a round trip too
    try:
        os.open(workdir / "missing", os.O_RDONLY)  # failed opens count: a LOOKUP on NFS
    except FileNotFoundError:
        pass
    (workdir / "logs" / "log_0").write_bytes(b"x")  # a task log: counted as a file instead
    (tmp_path / "elsewhere").write_bytes(b"")
    (tmp_path / "wd2").write_bytes(b"")  # a name the workdir's is a prefix of
    assert counter.record("f") == Record("f", 4, 0)


def test_the_fast_mode_counts_nothing(tmp_path: Path) -> None:
    coherent = started(tmp_path / "a")
    fast = started(tmp_path / "b", coherent=False)  # the process's farm is now this one
    for workdir in (tmp_path / "a", tmp_path / "b"):
        (workdir / "finished").write_bytes(b"")
    assert coherent.record("f").opens == fast.record("f").opens == 0


def test_a_forked_worker_counts_its_own_and_adds_them_in_its_lock_hold(tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    counter = started(workdir)
    (workdir / "a").write_bytes(b"")  # the parent's own: not the child's to add
    pid = os.fork()
    if pid == 0:  # the worker: three opens, then the hold that records a result
        for _ in range(3):
            os.close(os.open(workdir / "a", os.O_RDONLY))
        counter.flush(results=1)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert counter.record("f") == Record("f", 3 + 1, 1)
    counter.flush()
    assert counter.record("f") == Record("f", 4, 1)


def test_a_coherent_store_counts_from_prepare_and_records_its_results(tmp_path: Path) -> None:
    store = StateStore(tmp_path, make_lock(tmp_path, "flock", {}), coherent=True)
    store.prepare()
    with store.locked():
        store.initialize(["true", "true"])
    record = store.opens.save("node.1-abc")
    assert record is not None and record.opens > 0 and record.results == 0
    assert read_records(tmp_path / "farmers") == [record]
    fast = StateStore(tmp_path / "fast", make_lock(tmp_path / "fast", "flock", {}))
    fast.prepare()
    assert fast.opens.save("node.1-abc") is None and not (tmp_path / "fast/farmers").exists()


def test_records_are_rewritten_in_place_and_bad_ones_skipped(tmp_path: Path) -> None:
    write_record(tmp_path / "farmers", Record("a", 9, 3))  # makes the directory
    write_record(tmp_path / "farmers", Record("a", 120, 40))
    write_record(tmp_path / "farmers", Record("b", 30, 20))
    (tmp_path / "farmers" / "cut").write_bytes(b"opens=7 res")  # a node died mid-write
    (tmp_path / "farmers" / "junk").write_bytes(b"opens=many\n")
    assert (tmp_path / "farmers" / "a").read_bytes() == b"opens=120 results=40\n"
    records = read_records(tmp_path / "farmers")
    assert [record.farmer for record in records] == ["a", "b"]
    assert opens_per_result(records) == 2.5
    assert parse_record("x", b"opens=1 results=0\n") == Record("x", 1, 0)
    assert opens_per_result([Record("x", 1, 0)]) is None  # no result: no figure
    assert read_records(tmp_path / "none") == []
