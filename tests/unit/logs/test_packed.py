"""``--logs packed`` in-process: the index records, frames as the reader finds them, cut
frames, re-runs, leftover processes and a removed ``logs/`` (whole farm runs:
tests/e2e/test_task_log.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from taskfarmer.farm.execution import outcome
from taskfarmer.logs.packed import PackedLogs, parse_record, record
from taskfarmer.logs.reading import LATE, Piece, task_pieces
from taskfarmer.logs.tasklogs import inode_warning


def run(logs: PackedLogs, task_id: int, output: bytes, end: str | None = "exit 0",
        lingering: bool = False, start: float = 100.0) -> None:
    """One task printing ``output`` into its descriptor (``end`` None: killed before its end)."""
    fd = logs.open(task_id, start, "node1")
    os.write(fd, output)
    os.close(fd)
    if end is not None:
        logs.done(task_id, end, lingering)


def packed_pieces(logs: Path, leases: list[str], task_id: int) -> list[Piece]:
    """The executions of ``task_id`` (the job log unread)."""
    return task_pieces(logs, None, leases, [task_id]).get(task_id, [])


def text(piece: Piece) -> bytes:
    return b"".join(piece.chunks())


def test_a_record_cut_anywhere_is_recognised() -> None:
    line = record("B", 7, 123, "100.000", "node 1")
    assert parse_record(line[:-1]) == ["B", "7", "123", "100.000", "node 1"]
    for cut in range(len(line) - 1):
        assert parse_record(line[:cut]) is None, cut


def test_frames_hold_each_execution_apart(tmp_path: Path) -> None:
    logs = PackedLogs(tmp_path, "f.w0")
    run(logs, 1, b"one\n")
    run(logs, 2, b"two\n", end="exit 3", start=101.0)
    run(logs, 1, b"again\n", end="signal 9", start=102.0)
    logs.close()
    assert sorted(os.listdir(tmp_path / "packed")) == [f"f.w0.{os.getpid()}.data",
                                                      f"f.w0.{os.getpid()}.idx"]
    pieces = packed_pieces(tmp_path, [], 1)
    assert [text(p) for p in pieces] == [b"one\n", b"again\n"]
    assert [p.outcome for p in pieces] == ["exit 0", "signal 9"]
    assert b"execution 2 of 2" in pieces[1].separator(1, 2, 2)
    assert [text(p) for p in packed_pieces(tmp_path, [], 2)] == [b"two\n"]
    assert packed_pieces(tmp_path, [], 3) == []
    both = task_pieces(tmp_path, None, [], [1, 2, 3])
    assert {task_id: len(pieces) for task_id, pieces in both.items()} == {1: 2, 2: 1}


def test_a_frame_without_its_end_is_cut_or_running(tmp_path: Path) -> None:
    logs = PackedLogs(tmp_path, "n-1.2-ab.w0")  # node names may hold "-"
    run(logs, 1, b"killed\n", end=None)  # the end record was never written
    run(logs, 2, b"next\n")
    run(logs, 3, b"so far\n", end=None)
    cut, = packed_pieces(tmp_path, [], 1)
    assert (text(cut), cut.outcome, cut.running) == (b"killed\n", None, False)
    assert b"cut: no end recorded" in cut.separator(1, 1, 1)
    assert text(packed_pieces(tmp_path, [], 2)[0]) == b"next\n"
    lease = f"n-1.2-ab.w0.{os.getpid()}.1"
    running, = packed_pieces(tmp_path, [lease], 3)
    assert running.running and b"running" in running.separator(3, 1, 1)
    fd = os.open(logs.path(), os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"and more\n")  # live: read up to the data file's end when printed
    os.close(fd)
    assert text(running) == b"so far\nand more\n"
    assert not packed_pieces(tmp_path, [lease + ".dead"], 3)[0].running


def test_a_torn_index_record_hides_no_later_frame(tmp_path: Path) -> None:
    logs = PackedLogs(tmp_path, "f.w0")
    run(logs, 1, b"one\n")
    index = logs.path(".idx")
    with open(index, "ab") as handle:  # a record cut by a full disk, as the writer leaves it
        handle.write(record("B", 2, 4, "1.0", "n")[:9])
    logs._cut = True
    run(logs, 3, b"three\n")
    assert text(packed_pieces(tmp_path, [], 3)[0]) == b"three\n"
    assert packed_pieces(tmp_path, [], 2) == []


def test_leftover_processes_write_after_the_frame_in_old_files(tmp_path: Path) -> None:
    logs = PackedLogs(tmp_path, "f.w0")
    run(logs, 1, b"first\n", lingering=True)
    old = tmp_path / "packed" / f"f.w0.{os.getpid()}.data"
    run(logs, 2, b"second\n")
    with open(old, "ab") as handle:  # what task 1's background process prints later
        handle.write(b"late\n")
    first, = packed_pieces(tmp_path, [], 1)
    assert text(first) == b"first\n" + LATE + b"late\n"
    assert text(packed_pieces(tmp_path, [], 2)[0]) == b"second\n"
    assert logs.path().name == f"f.w0.{os.getpid()}-1.data"


def test_a_removed_logs_directory_is_made_again(tmp_path: Path) -> None:
    logs = PackedLogs(tmp_path / "logs", "f.w0")
    run(logs, 1, b"gone\n")
    shutil.rmtree(tmp_path / "logs")
    run(logs, 2, b"kept\n")
    assert [text(p) for p in packed_pieces(tmp_path / "logs", [], 2)] == [b"kept\n"]
    assert packed_pieces(tmp_path / "logs", [], 1) == []


def test_log_files_pair_with_the_job_log(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "log_4").write_bytes(b"a\n---- taskfarmer: task 4 runs again on n2 ----\nb\n")
    joblog = tmp_path / "joblog"
    joblog.write_text("id\tattempt\n"
                      "4\t1\tn1\tf\t0\t1000\t0.5\t1\t0\tretry\tx\n"
                      "14\t1\tn1\tf\t0\t1500\t0.5\t0\t0\tfinished\tx\n"
                      "4\t2\tn2\tf\t0\t2000\t0.5\t0\t0\tfinished\tx\n")
    first, second = task_pieces(logs, joblog, [], [4, 14])[4]
    assert (text(first), first.node, first.outcome, first.start) == (
        b"a\n", "n1", "retry, exit 1", 1.0)
    assert (text(second), second.node, second.outcome) == (b"b\n", "n2", "finished, exit 0")
    joblog.write_text("id\tattempt\n")  # no line pairs: the nodes of the notes only
    first, second = task_pieces(logs, joblog, [], [4, 14])[4]
    assert (first.node, second.node, first.start) == (None, "n2", None)
    assert b"start unknown, node unknown" in first.separator(4, 1, 2)


def test_outcome_words() -> None:
    assert [outcome(0, False, False), outcome(3, False, False), outcome(-9, False, False),
            outcome(-15, True, False), outcome(-15, False, True)] == [
        "exit 0", "exit 3", "signal 9", "timed out", "stopped"]


def test_inode_warning_only_for_a_file_per_task_and_too_few_inodes() -> None:
    assert inode_warning("flat", 10, 11) is not None
    assert "--logs packed" in (inode_warning("nonempty", 0, 1) or "")
    assert inode_warning("flat", 11, 11) is None
    assert inode_warning("packed", 0, 11) is None
    assert inode_warning("spread", None, 11) is None
