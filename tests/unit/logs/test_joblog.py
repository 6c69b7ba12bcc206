"""The job log file in-process: line format, header, reading backward, the recent window."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from taskfarmer.logs import joblog
from taskfarmer.logs.joblog import (
    COLUMNS,
    Entry,
    JobLog,
    format_line,
    parse_line,
    read_backward,
    recent_executions,
    recent_peak,
)


def test_format_and_parse_round_trip_escaping_tabs() -> None:
    entry = Entry(7, 2, "node1", "node1.12-ab", 3, 1700000000.123, 1.5, 137, 9, "failed",
                  "printf 'a\tb'")
    line = format_line(entry)
    assert line.count(b"\t") == len(COLUMNS) - 1 and line.endswith(b"\n")
    parsed = parse_line(line[:-1])
    assert parsed == Entry(7, 2, "node1", "node1.12-ab", 3, 1700000000.123, 1.5, 137, 9,
                           "failed", "printf 'a\\tb'")
    assert parse_line(b"\t".join(c.encode() for c in COLUMNS)) is None
    peak = replace(entry, maxrss=123456)
    assert parse_line(format_line(peak)[:-1]) == replace(parsed, maxrss=123456)


def test_a_line_written_before_the_maxrss_column_still_parses() -> None:
    old = b"7\t1\tn\tf\t0\t1000\t0.500\t0\t0\tfinished\techo a b"
    assert parse_line(old) == Entry(7, 1, "n", "f", 0, 1.0, 0.5, 0, 0, "finished", "echo a b")
    assert parse_line(old + b"\textra") is None  # 12 fields, the 11th not a number


def test_recent_peak_is_the_largest_of_the_last_lines(tmp_path: Path) -> None:
    assert recent_peak(tmp_path / "joblog") == 0  # no job log yet
    assert recent_peak(tmp_path / "joblog" / "below") == 0  # not even a directory
    log = JobLog(tmp_path / "joblog")
    log.append([Entry(i, 1, "n", "f", 0, 1.0 + i, 0.5, 0, 0, "finished", "x", maxrss)
                for i, maxrss in enumerate([900, 10, 30, 20])])
    log.close()
    assert recent_peak(tmp_path / "joblog") == 900 * 1024
    assert recent_peak(tmp_path / "joblog", lines=3) == 30 * 1024


def test_append_writes_the_header_once(tmp_path: Path) -> None:
    log = JobLog(tmp_path / "joblog")
    entry = Entry(0, 1, "n", "f", 0, 1.0, 0.5, 0, 0, "finished", "true")
    log.append([entry])
    log.append([entry, entry])
    log.append([])
    log.close()
    text = (tmp_path / "joblog").read_text().splitlines()
    assert text[0].split("\t") == list(COLUMNS) and len(text) == 4


def test_read_backward_across_blocks_skips_a_line_being_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(joblog, "TAIL_CHUNK", 64)
    log = JobLog(tmp_path / "joblog")
    log.append([Entry(i, 1, "n", "f", 0, 1000.0 + i, 0.25, 0, 0, "finished", "x" * (i * 7))
                for i in range(40)])
    log.close()
    with open(tmp_path / "joblog", "ab") as handle:
        handle.write(b"40\t1\tn\tf\t0\t")  # a farmer is writing this one
    assert [e.id for e in read_backward(tmp_path / "joblog", 1 << 30)] == list(range(39, -1, -1))
    assert [e.command for e in read_backward(tmp_path / "joblog", 1 << 30)][-3:] == [
        "x" * 14, "x" * 7, ""]
    some = [e.id for e in read_backward(tmp_path / "joblog", 2000)]
    assert some == list(range(39, 39 - len(some), -1)) and 0 < len(some) < 40


def test_recent_executions_finds_the_window_by_binary_search(tmp_path: Path) -> None:
    log = JobLog(tmp_path / "joblog")
    outcomes = ["finished", "failed", "retry", "stopped"]
    log.append([Entry(i, 1, "n", f"farmer{i % 2}", 0, 1000.0 + i, 0.5, 0, 0, outcomes[i % 4],
                      "echo finished\tfailed") for i in range(20000)])
    log.close()
    recent = recent_executions(tmp_path / "joblog", now=21000.0, window=300.0)
    # ended at 1000 + i + 0.5 >= 20700: i >= 19700, 300 executions, half of them final
    assert (recent.done, recent.span) == (150, 300.0)
    assert recent.per_farmer == {"farmer0": 150, "farmer1": 150}
    short = JobLog(tmp_path / "short")
    short.append([Entry(i, 1, "n", "f", 0, 1000.0 + i, 0.5, 0, 0, outcomes[i % 4], "true")
                  for i in range(10)])
    short.close()
    young = recent_executions(tmp_path / "short", now=1010.0, window=300.0)
    assert young.span == 10.0 and young.done == 6  # the log began 10 s ago
    assert recent_executions(tmp_path / "none", 1.0, 300.0).span == 0.0
