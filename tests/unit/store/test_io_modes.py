"""The store's I/O discipline in-process: fast or coherent mode (shared filesystems), no descriptor
kept across lock holds, incomplete and torn lines."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers.clock import FakeClock
from helpers.farmer import ids

from taskfarmer.errors import ConfigError, LostWriteError
from taskfarmer.hpc.identity import Identity
from taskfarmer.logs.joblog import Entry, JobLog
from taskfarmer.store import LineCounter, StateStore, append_lines, coherent_io
from taskfarmer.store.ledger import INCOMPLETE_WAIT
from taskfarmer.store.locking import make_lock
from taskfarmer.timeline.counts import TaskCounts
from taskfarmer.timeline.events import execution
from taskfarmer.timeline.file import Timeline


def make_store(workdir: Path, tasks: list, coherent: bool) -> StateStore:
    store = StateStore(workdir, make_lock(workdir, "flock", {}), coherent)
    store.prepare()
    with store.locked():
        store.initialize(tasks)
    return store


def open_in(directory: Path) -> list[str]:
    """Names of the state files in ``directory`` this process has a descriptor of (the lock
    file, ``WORKDIR/lock`` without SCRATCH, is held open by design)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
        if target.parent == directory and target.name != "lock":
            found.append(target.name)
    return sorted(found)


def owner() -> Identity:
    return Identity.current(environ={}, hostname="testhost")


def test_the_filesystem_decides_the_mode_and_the_environment_overrides(tmp_path: Path) -> None:
    assert coherent_io(tmp_path, {}) is False  # the test's tmp: a local filesystem
    assert coherent_io(tmp_path / "not" / "yet", {}) is False  # judged by what exists
    assert coherent_io(Path("/proc"), {}) is True  # not known to be local: coherent
    assert coherent_io(tmp_path, {"TASKFARMER_IO": "coherent"}) is True
    assert coherent_io(Path("/proc"), {"TASKFARMER_IO": "fast"}) is False
    with pytest.raises(ConfigError, match="TASKFARMER_IO"):
        coherent_io(tmp_path, {"TASKFARMER_IO": "sometimes"})


def test_the_filesystem_is_told_without_starting_a_process(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """ctypes.util.find_library runs /sbin/ldconfig: a process per farmer start, for nothing."""
    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    assert coherent_io(tmp_path, {}) is False
    assert coherent_io(Path("/proc"), {}) is True


@pytest.mark.parametrize("coherent", [False, True], ids=["fast", "coherent"])
def test_coherent_mode_keeps_no_descriptor_across_lock_holds(tmp_path: Path,
                                                             coherent: bool) -> None:
    store = make_store(tmp_path, ["a", "b", "c"], coherent)
    with store.locked():
        lease = store.register("l", owner())
        for task in store.claim(lease, 2):
            store.record(lease, task, task.id == 0)
        assert "claims" in open_in(tmp_path)  # used within the hold in both modes
    if coherent:
        # But the lease's task record, which only a process of this node reads back
        # (taskfarmer.store.records): one pwrite per task, no round trip to a server.
        assert open_in(tmp_path) == [".task-l"]
    else:
        assert {"claims", "toprocess", "finished", "failed"} <= set(open_in(tmp_path))
    store.close()
    assert open_in(tmp_path) == []
    assert ids(tmp_path / "finished") == [0] and ids(tmp_path / "failed") == [1]


def test_coherent_timeline_keeps_no_descriptor(tmp_path: Path) -> None:
    timeline = Timeline(tmp_path / "timeline.json", coherent=True)
    for k in range(3):  # a worker's lock hold: the state beside the timeline, then an append
        timeline.state.first_start(k)
        timeline.state.reset(TaskCounts(done=k))
        timeline.append(execution(k, f"t{k}", 1.0, 2.0, 1, 1, "finished", False, {}))
        assert open_in(tmp_path) == []
    assert [e["name"] for e in json.loads((tmp_path / "timeline.json").read_text())] == \
        ["0: t0", "1: t1", "2: t2"]


@pytest.mark.parametrize("coherent", [False, True], ids=["fast", "coherent"])
def test_coherent_joblog_keeps_no_descriptor(tmp_path: Path, coherent: bool) -> None:
    joblog = JobLog(tmp_path / "joblog", coherent=coherent)
    for k in range(3):  # one append per lock hold
        joblog.append([Entry(k, 1, "n1", "f", 0, 1.0, 0.5, 0, 0, "finished", f"t{k}")])
        assert open_in(tmp_path) == ([] if coherent else ["joblog"])
    joblog.close()
    assert [line.split("\t")[0] for line in
            (tmp_path / "joblog").read_text().splitlines()[1:]] == ["0", "1", "2"]


@pytest.mark.parametrize("coherent", [False, True], ids=["fast", "coherent"])
def test_an_incomplete_last_line_is_waited_for_then_cut_off(tmp_path: Path, coherent: bool,
                                                           fake_clock: FakeClock) -> None:
    """Not an endless "0 running, 0 remaining": bounded wait, then the line goes to torn."""
    store = make_store(tmp_path, ["a"], coherent)
    store.ledger.monotonic = fake_clock
    with store.locked():
        lease = store.register("l", owner())
        assert [t.id for t in store.claim(lease, 5)] == [0]
        store.release(lease)
    with open(tmp_path / "toprocess", "ab") as toprocess:
        toprocess.write(b"1 half a li")  # a writer died mid-line (or a stale NFS page)
    with store.locked():
        assert store.pending() and store.pending_count(5) == 0  # waits: it may be completed
    with open(tmp_path / "toprocess", "ab") as toprocess:
        toprocess.write(b"ne")  # it changes: the wait starts again
    fake_clock.tick(INCOMPLETE_WAIT * 0.9)
    with store.locked():
        assert store.pending()
    fake_clock.tick(INCOMPLETE_WAIT * 0.9)
    with store.locked():
        assert store.pending()
    fake_clock.tick(INCOMPLETE_WAIT * 0.2)
    with store.locked():
        assert not store.pending()
    assert (tmp_path / "torn").read_text() == "toprocess: 1 half a line\n"
    assert ids(tmp_path / "toprocess") == [0]


def test_nul_bytes_at_the_end_of_toprocess_are_cut_off_and_stop_the_farm(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    store = make_store(tmp_path, ["a"], coherent=True)
    store.ledger.monotonic = fake_clock
    with store.locked():
        lease = store.register("l", owner())
        assert [t.id for t in store.claim(lease, 5)] == [0]
        store.release(lease)
    size = (tmp_path / "toprocess").stat().st_size
    with open(tmp_path / "toprocess", "ab") as toprocess:
        toprocess.write(b"\0" * 7)  # an import's write the filesystem lost
    with store.locked():
        assert store.pending()
    fake_clock.tick(INCOMPLETE_WAIT * 1.1)
    with store.locked():
        with pytest.raises(LostWriteError) as raised:
            store.pending()
        assert not store.pending()
    assert (raised.value.path, raised.value.offset) == (tmp_path / "toprocess", size)
    assert (tmp_path / "torn").read_bytes() == b"toprocess: " + b"\0" * 7 + b"\n"


def test_a_complete_line_before_an_incomplete_one_is_pending(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a", "b"], coherent=False)
    with open(tmp_path / "toprocess", "ab") as toprocess:
        toprocess.write(b"2 unfinish")
    with store.locked():
        lease = store.register("l", owner())
        assert [t.id for t in store.claim(lease, 1)] == [0]
        assert store.pending() and store.pending_count(5) == 1
        assert [t.id for t in store.claim(lease, 5)] == [1]


def test_repair_of_a_torn_line_longer_than_a_read_block_keeps_the_rest(tmp_path: Path) -> None:
    store = make_store(tmp_path, ["a"], coherent=False)
    with open(tmp_path / "finished", "ab") as finished:
        finished.write(b"0 a\n1 " + b"x" * 200_000)
    with store.locked():
        assert [p.name for p, _ in store.repair()] == ["finished"]
    assert (tmp_path / "finished").read_bytes() == b"0 a\n"


def test_a_display_count_survives_a_file_it_cannot_read(tmp_path: Path) -> None:
    """Counting runs without the lock: a file replaced under it (ESTALE on NFS) keeps the
    count instead of crashing the farmer."""
    path = tmp_path / "finished"
    path.write_text("0 a\n1 b\n")
    counter = LineCounter(path)
    assert counter.update() == 2
    path.unlink()
    path.mkdir()  # stat works, reading fails (IsADirectoryError, an OSError like ESTALE)
    (path / "x").write_text("padding so that the directory is not empty\n" * 100)
    assert counter.update() == 2


def append_once(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` as a lock holder does (its own ``O_APPEND`` descriptor)."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        append_lines(fd, path, data)
    finally:
        os.close(fd)


def test_an_append_after_a_half_written_line_moves_the_half_line_to_torn(tmp_path: Path) -> None:
    # A write that failed half-way and could not be truncated back (the filesystem failing)
    # leaves a half line; the next append must not glue its lines onto it.
    path = tmp_path / "finished"
    path.write_bytes(b"1 echo a\n2 echo")
    append_once(path, b"3 echo c\n")
    assert path.read_bytes() == b"1 echo a\n3 echo c\n"
    assert (tmp_path / "torn").read_bytes() == b"finished: 2 echo\n"


class StaleTail:
    """An NFS client's view of a file whose last page it kept while another node appended:
    the new size, but NUL bytes from ``start`` on, until its cached pages are dropped
    (``POSIX_FADV_DONTNEED``, which the NFS client honours by evicting clean pages)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: int) -> None:
        self.start, self.stale = start, True
        self._pread, self._fadvise = os.pread, os.posix_fadvise
        monkeypatch.setattr(os, "pread", self.pread)
        monkeypatch.setattr(os, "posix_fadvise", self.posix_fadvise)

    def pread(self, fd: int, count: int, offset: int) -> bytes:
        data = self._pread(fd, count, offset)
        if not self.stale or offset + len(data) <= self.start:
            return data
        keep = max(0, self.start - offset)
        return data[:keep] + b"\0" * (len(data) - keep)

    def posix_fadvise(self, fd: int, offset: int, length: int, advice: int) -> None:
        self._fadvise(fd, offset, length, advice)
        if advice == os.POSIX_FADV_DONTNEED:
            self.stale = False


def test_a_tail_that_reads_as_nul_bytes_from_a_stale_cache_is_not_cut(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another node appended ``2 echo b``; this node's cache still has the page from before:
    the append asks the filesystem again instead of cutting that line off into torn (the
    task was recorded: cutting would lose it)."""
    path = tmp_path / "finished"
    path.write_bytes(b"1 echo a\n2 echo b\n")
    StaleTail(monkeypatch, start=len(b"1 echo a\n"))
    append_once(path, b"3 echo c\n")
    assert path.read_bytes() == b"1 echo a\n2 echo b\n3 echo c\n"
    assert not (tmp_path / "torn").exists()


def test_a_claim_that_reads_as_nul_bytes_from_a_stale_cache_is_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another node claimed task 1; this node's cache still has the page from before: the
    cursor is read again from the filesystem instead of stopping the farmer on a "malformed
    last line" of NUL bytes (what the NFS lab showed on NFSv4.2 with flock)."""
    store = make_store(tmp_path, ["a", "b", "c"], coherent=True)
    with store.locked():
        lease = store.register("l", owner())
        assert [t.id for t in store.claim(lease, 1)] == [0]
        first = (tmp_path / "claims").stat().st_size
        assert [t.id for t in store.claim(lease, 1)] == [1]
        expected = store.cursor()
    StaleTail(monkeypatch, start=first)
    with store.locked():
        assert store.cursor() == expected
        assert [t.id for t in store.claim(lease, 1)] == [2]


def test_nul_bytes_that_the_filesystem_has_are_cut_as_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hole the server really has (a write past the end, never filled) stays torn."""
    path = tmp_path / "finished"
    path.write_bytes(b"1 echo a\n" + b"\0" * 5)
    StaleTail(monkeypatch, start=1000)  # nothing stale: only counts the drop
    append_once(path, b"3 echo c\n")
    assert path.read_bytes() == b"1 echo a\n3 echo c\n"
    assert (tmp_path / "torn").read_bytes() == b"finished: " + b"\0" * 5 + b"\n"
