"""The lock-guarded state store: claims, records, leases, compaction and crash repair."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers.farmer import ids

from taskfarmer.errors import LostWriteError, StateError
from taskfarmer.hpc.groups import RECORD_SIZE, TaskGroup
from taskfarmer.hpc.identity import Identity
from taskfarmer.store import READ_CHUNK, LeaseRevoked, Outcome, StateCounter, StateStore
from taskfarmer.store.lines import lost_write
from taskfarmer.store.locking import make_lock
from taskfarmer.tasks import MAX_LINE, Task


def make_store(workdir: Path, tasks: list) -> StateStore:
    store = StateStore(workdir, make_lock(workdir, "flock", {}))
    store.prepare()
    with store.locked():
        store.initialize(tasks)
    return store


def owner() -> Identity:
    return Identity.current(environ={}, hostname="testhost")


def test_initialize_writes_ids_once(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a", "b c"])
    assert (tmp_path / "toprocess").read_text() == "0 a\n1 b c\n"
    with store.locked():
        assert store.initialize(["other"]) is False
    assert (tmp_path / "toprocess").read_text() == "0 a\n1 b c\n"
    assert (tmp_path / "finished").read_text() == ""
    assert (tmp_path / "failed").read_text() == ""


def test_claim_record_and_counts(tmp_path: Path) -> None:
    store = make_store(tmp_path, [f"task {i}" for i in range(5)])
    with store.locked():
        lease = store.register("l1", owner())
        first = store.claim(lease, 2)
        assert [t.id for t in first] == [0, 1]
        assert store.record(lease, first[0], True) is Outcome.FINISHED
        assert store.record(lease, first[1], False) is Outcome.FAILED
        assert [t.id for t in store.claim(lease, 10)] == [2, 3, 4]
        assert store.claim(lease, 1) == []
        assert not store.pending()
    assert ids(tmp_path / "finished") == [0]
    assert ids(tmp_path / "failed") == [1]
    claims = (tmp_path / "claims").read_text().splitlines()
    assert [c.split()[:2] for c in claims] == [[str(i), "l1"] for i in range(5)]
    counts = StateCounter(store).counts()
    assert (counts.pending, counts.finished, counts.failed) == (0, 1, 1)


def test_claim_reads_a_bounded_chunk_of_a_huge_list(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """O(1) per task: taking a task never reads the whole toprocess."""
    store = make_store(tmp_path, (f"echo {i}" for i in range(200_000)))
    reads = []
    real_pread = os.pread

    def counting_pread(fd: int, size: int, offset: int) -> bytes:
        reads.append(size)
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", counting_pread)
    with store.locked():
        lease = store.register("l1", owner())
        for _ in range(50):
            store.claim(lease, 1)
    assert (tmp_path / "toprocess").stat().st_size > 20 * READ_CHUNK
    assert max(reads) <= READ_CHUNK
    assert sum(reads) <= 50 * (READ_CHUNK + 4096)


def test_a_claim_takes_a_line_at_the_limit_and_refuses_a_longer_one(tmp_path: Path) -> None:
    """A toprocess line longer than any task line (an old workdir, a hand edit) is a clear
    error: the claim loop once read the same 4 MiB again and again, holding the lock."""
    store = make_store(tmp_path, ["x" * MAX_LINE, "echo " + "y" * (5 << 20), "echo z"])
    outcome: list[object] = []

    def claim_all() -> None:
        with store.locked():
            lease = store.register("l1", owner())
            try:
                outcome.append(store.claim(lease, 1))
                outcome.append(store.claim(lease, 1))
            except StateError as error:
                outcome.append(error)

    claiming = threading.Thread(target=claim_all, daemon=True)
    claiming.start()
    claiming.join(timeout=60)
    assert not claiming.is_alive(), "the claim did not end"
    assert [task.id for task in outcome[0]] == [0]  # type: ignore[attr-defined]
    error = outcome[1]
    assert isinstance(error, StateError)
    assert (error.path, error.line) == (tmp_path / "toprocess", 2)
    assert "line longer than 1048640 bytes" in str(error)


def test_revoked_lease_cannot_record_or_claim(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a", "b", "c"])
    with store.locked():
        lease = store.register("l1", owner())
        taken = store.claim(lease, 2)
        back = store.revoke("l1").back
        assert [t.id for t in back] == [0, 1]
        assert store.record(lease, taken[0], True) is Outcome.DISCARDED
        with pytest.raises(LeaseRevoked):
            store.claim(lease, 1)
    assert ids(tmp_path / "finished") == []
    assert ids(tmp_path / "toprocess")[-2:] == [0, 1]


def test_revoke_requeues_only_unfinished_tasks(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a", "b", "c", "d"])
    with store.locked():
        lease = store.register("l1", owner())
        other = store.register("l2", owner())
        a, b = store.claim(lease, 2)
        store.record(lease, a, True)
        store.requeue([b])  # l1 put b back (e.g. on stop) ...
        assert [t.id for t in store.claim(other, 3)] == [2, 3, 1]  # ... and l2 took it again
        assert store.revoke("l1").back == []  # a finished, b now belongs to l2
        assert [t.id for t in store.revoke("l2").back] == [1, 2, 3]


def test_crash_in_the_middle_of_a_revoke_does_not_duplicate(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a", "b", "c"])
    with store.locked():
        lease = store.register("l1", owner())
        store.claim(lease, 2)
        # Simulate a revoker that died after renaming and requeueing, before removing .dead.
        os.rename(tmp_path / "leases" / "l1", tmp_path / "leases" / "l1.dead")
        store.requeue(store.running_tasks("l1"))
        infos = store.lease_infos()
        assert [(i.name, i.dead) for i in infos] == [("l1", True)]
        assert store.revoke("l1").back == []
        assert not store.any_leases()
    assert sorted(ids(tmp_path / "toprocess")) == [0, 0, 1, 1, 2]  # taken prefix + tail
    with store.locked():
        assert store.tidy()
    assert ids(tmp_path / "toprocess") == [0, 1, 2]


def test_tidy_compacts_in_task_order_and_only_without_leases(tmp_path: Path) -> None:
    store = make_store(tmp_path, [f"t{i}" for i in range(6)])
    with store.locked():
        lease = store.register("l1", owner())
        taken = store.claim(lease, 3)
        store.record(lease, taken[1], True)
        store.requeue([taken[2], taken[0]])
        assert store.tidy() is False  # a lease exists: claims still matter
        store.release(lease)
        assert store.tidy() is True
    assert (tmp_path / "toprocess").read_text() == "0 t0\n2 t2\n3 t3\n4 t4\n5 t5\n"
    assert (tmp_path / "claims").read_text() == ""


def test_crash_after_compaction_commit_is_finished_by_next_reader(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a", "b", "c"])
    with store.locked():
        lease = store.register("l1", owner())
        store.claim(lease, 2)
        store.release(lease)
    # Steps (1) and (2) of a compaction, then "SIGKILL".
    (tmp_path / "toprocess.new").write_text("2 c\n")
    with open(tmp_path / "claims", "a") as claims:
        claims.write("- compact\n")
    fresh = StateStore(tmp_path, make_lock(tmp_path, "flock", {}))
    with fresh.locked():
        assert fresh.cursor() == 0
        lease = fresh.register("l2", owner())
        assert [t.id for t in fresh.claim(lease, 5)] == [2]
    assert not (tmp_path / "toprocess.new").exists()


@pytest.mark.parametrize("first_call", ["pending", "pending_count", "claim"])
def test_a_compaction_finished_on_the_way_does_not_leave_a_stale_descriptor(
        tmp_path: Path, first_call: str) -> None:
    """Reading the cursor may finish a crashed compaction, which replaces ``toprocess``: the
    callers must open ``toprocess`` after that, not read through the replaced file's (closed)
    descriptor."""
    store = make_store(tmp_path, ["a", "b", "c"])
    with store.locked():
        lease = store.register("l1", owner())
        store.claim(lease, 2)
        store.release(lease)
    (tmp_path / "toprocess.new").write_text("2 c\n")  # steps (1) and (2), then "SIGKILL"
    with open(tmp_path / "claims", "a") as claims:
        claims.write("- compact\n")
    with store.locked():  # this process still has its descriptor of the old toprocess
        lease = store.register("l2", owner())
        if first_call == "pending":
            assert store.pending()
        elif first_call == "pending_count":
            assert store.pending_count(10) == 1
        assert [t.id for t in store.claim(lease, 5)] == [2]


def test_repair_cuts_torn_last_lines_and_keeps_them(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a", "b"])
    with open(tmp_path / "finished", "a") as finished:
        finished.write("0 a\n1 b")  # torn: no newline
    with store.locked():
        cut = store.repair()
    assert [(p.name, f) for p, f in cut] == [("finished", b"1 b")]
    assert (tmp_path / "finished").read_text() == "0 a\n"
    assert (tmp_path / "torn").read_text() == "finished: 1 b\n"


def test_a_crash_leaves_a_prefix_of_a_line_and_a_lost_write_nul_bytes() -> None:
    assert not lost_write(b"17 echo hel")  # a writer killed mid-write(2)
    assert lost_write(b"\0" * 78)  # the NFSv4.2 lab's finished: a write-back lost
    assert lost_write(b"17 echo\0\0\0")


def test_nul_bytes_cut_off_a_state_file_stop_the_farm_once_every_file_is_repaired(
        tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a", "b"])
    with open(tmp_path / "finished", "ab") as finished:
        finished.write(b"0 a\n" + b"\0" * 6)
    with open(tmp_path / "failed", "ab") as failed:
        failed.write(b"1 b")  # a crash's torn line, repaired in the same pass
    with store.locked():
        with pytest.raises(LostWriteError) as raised:
            store.repair()
        assert store.repair() == []  # everything was cut before the error
    assert (raised.value.path, raised.value.offset) == (tmp_path / "finished", 4)
    assert str(raised.value).startswith(f"{tmp_path / 'finished'} (byte 4): 6 byte(s) no "
                                        f"farmer wrote (6 NUL): the filesystem lost a write")
    assert (tmp_path / "finished").read_bytes() == b"0 a\n"
    assert (tmp_path / "failed").read_bytes() == b""
    assert (tmp_path / "torn").read_bytes() == b"finished: " + b"\0" * 6 + b"\nfailed: 1 b\n"


def test_nul_bytes_cut_off_the_job_log_are_not_a_stop(tmp_path: Path) -> None:
    """The job log is a report: a write it lost loses no task."""
    store = make_store(tmp_path, ["a"])
    (tmp_path / "joblog").write_bytes(b"\0" * 9)
    with store.locked():
        assert [(p.name, f) for p, f in store.repair()] == [("joblog", b"\0" * 9)]


def test_malformed_toprocess_line_is_a_clear_error(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a"])
    with open(tmp_path / "toprocess", "a") as toprocess:
        toprocess.write("sleep 5\n")  # hand-added without an ID
    with store.locked():
        lease = store.register("l1", owner())
        store.claim(lease, 1)
        with pytest.raises(StateError) as error:
            store.claim(lease, 1)
    assert str(error.value).startswith(f"{tmp_path / 'toprocess'}:2: malformed line 'sleep 5': ")
    assert error.value.line == 2 and "correct or delete that line" in str(error.value)


def test_concurrent_initialisation_creates_the_list_once(tmp_path: Path) -> None:
    """Processes racing to initialise: exactly one writes toprocess, all see the same list."""
    script = (
        "import sys; from pathlib import Path\n"
        "from taskfarmer.store import StateStore\n"
        "from taskfarmer.store.locking import make_lock\n"
        "w = Path(sys.argv[1]); s = StateStore(w, make_lock(w, 'flock', {})); s.prepare()\n"
        "with s.locked():\n"
        "    print(int(s.initialize(f'task {i} of {sys.argv[2]}' for i in range(20000))))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(n)],
                              stdout=subprocess.PIPE, text=True) for n in range(6)]
    created = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert sum(created) == 1
    lines = (tmp_path / "toprocess").read_text().splitlines()
    assert len(lines) == 20000
    assert len({line.rsplit(" ", 1)[1] for line in lines}) == 1  # all from one writer


def test_task_dataclass_is_what_toprocess_holds(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["x"])
    with store.locked():
        lease = store.register("l", owner())
        assert store.claim(lease, 1) == [Task(0, "x")]


def test_compaction_equals_sorting_the_untaken_lines(tmp_path: Path) -> None:
    """Random sorted runs with random appended tails, taken up to random cursors."""
    rng = random.Random(7)
    for case in range(40):
        workdir = tmp_path / f"case{case}"
        total = rng.randint(0, 300)
        store = make_store(workdir, (f"task {i} {'x' * rng.randint(0, 40)}"
                                     for i in range(total)))
        with store.locked():
            lease = store.register("l", owner())
            taken = store.claim(lease, rng.randint(0, total))
            back = rng.sample(taken, rng.randint(0, len(taken)))
            store.requeue(back)
            for task in set(taken) - set(back):  # recorded: else tidy puts them back too
                store.record(lease, task, True)
            store.release(lease)
            before = (workdir / "toprocess").read_bytes()[store.cursor():].splitlines()
            assert store.tidy() is bool(taken)
        after = (workdir / "toprocess").read_bytes().splitlines()
        expected = sorted(before, key=lambda line: int(line.split(b" ", 1)[0]))
        assert after == (expected if taken else before)


def test_the_lock_excludes_a_forked_child_using_the_same_store(tmp_path: Path) -> None:
    """Workers are forked from the farmer: their store must take the lock for real."""
    import time

    store = make_store(tmp_path, ["a"])
    trying = tmp_path / "trying"
    acquired = tmp_path / "acquired"
    with store.locked():
        pid = os.fork()
        if pid == 0:  # the child: report, then block until the parent lets go
            code = 1
            try:
                trying.touch()
                with store.locked():
                    acquired.write_text(repr(time.monotonic()))
                code = 0
            finally:
                os._exit(code)
        while not trying.exists():
            time.sleep(0.01)
        time.sleep(0.3)  # keep holding: a child sharing our lock would get in meanwhile
        released = time.monotonic()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert float(acquired.read_text()) >= released


def test_requeue_failed_leaves_no_descriptor_behind(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a", "b"])
    with store.locked():
        lease = store.register("l", owner())
        for task in store.claim(lease, 2):
            store.record(lease, task, False)  # opens our descriptor of failed
        open_before = len(os.listdir("/proc/self/fd"))
        assert store.requeue_failed() == 2
        store.record(lease, store.claim(lease, 1)[0], False)  # a new failed file
        assert len(os.listdir("/proc/self/fd")) == open_before
    assert ids(tmp_path / "failed") == [0]
    assert ids(tmp_path / "toprocess")[-1:] == [1]


def test_a_leases_task_record_names_its_running_task_until_the_lease_goes(tmp_path: Path
                                                                         ) -> None:
    store = make_store(tmp_path, ["a", "b"])
    record = tmp_path / ".task-l1"
    with store.locked():
        lease = store.register("l1", owner())
    assert store.task_records.read("l1") is None  # blank until a task starts
    store.task_records.mark(lease.name, TaskGroup(0, 1234, 99, 99, 1.5))
    store.task_records.mark(lease.name, TaskGroup(1, 1240, 105, 106, 2.5))  # in place
    assert store.task_records.read("l1") == TaskGroup(1, 1240, 105, 106, 2.5)
    assert record.stat().st_size == RECORD_SIZE
    with store.locked():
        store.release(lease)
    assert not record.exists() and store.task_records.read("l1") is None
    with store.locked():
        other = store.register("l2", owner())
        store.task_records.mark(other.name, TaskGroup(0, 1234, 99, 99, 1.5))
        store.revoke("l2")  # the taker removes it
    assert not (tmp_path / ".task-l2").exists()
    store.close()


def test_revoking_a_dead_workers_lease_charges_the_task_it_ran(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a", "b", "c"])
    with store.locked():
        lease = store.register("l1", owner())
        store.claim(lease, 3)
        revocation = store.revoke("l1", blame=1, retries=1)
        assert [t.id for t in revocation.back] == [0, 2]
        assert revocation.blamed == Task(1, "b") and revocation.outcome is Outcome.RETRY
        assert store.attempt_count(1) == 1
        again = store.register("l2", owner())
        assert [t.id for t in store.claim(again, 3)] == [0, 2, 1]
        revocation = store.revoke("l2", blame=1, retries=1)
        assert revocation.outcome is Outcome.FAILED and store.attempt_count(1) == 2
        assert store.revoke("l3", blame=0).blamed is None  # no such lease: nothing charged
    assert ids(tmp_path / "failed") == [1]
    assert sorted(ids(tmp_path / "toprocess")[3:]) == [0, 0, 1, 2, 2]  # taken prefix + tail
