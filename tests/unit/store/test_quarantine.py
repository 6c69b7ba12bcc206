"""Quarantine records (taskfarmer.store.quarantine): the file, and sbatch's --exclude from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfarmer.errors import StateError
from taskfarmer.store import FailedRun, QuarantineRecord, Quarantines, StateFiles, exclude_list


def record(node: str, until: float = 2000.0) -> QuarantineRecord:
    return QuarantineRecord(node, 1000.0, until, f"{node}.1-ab", "5 tasks in a row failed fast",
                            (FailedRun(3, 127, 0, 0.004), FailedRun(8, 137, 9, 0.012)))


def test_a_record_is_written_whole_and_read_back(tmp_path: Path) -> None:
    quarantines = Quarantines(StateFiles(tmp_path))
    assert quarantines.read("n1") is None and quarantines.all() == []  # no directory yet
    path = quarantines.write(record("n1"))
    assert path == tmp_path / "quarantine" / "n1"
    assert quarantines.read("n1") == record("n1")
    assert [p.name for p in (tmp_path / "quarantine").iterdir()] == ["n1"]  # no temporary left
    quarantines.write(record("n1", until=3000.0))  # replaced
    assert quarantines.all() == [record("n1", until=3000.0)]


def test_a_record_says_until_when_it_is_in_force() -> None:
    assert record("n1").active(1999.9)
    assert not record("n1").active(2000.0)


def test_node_names_cannot_leave_the_directory(tmp_path: Path) -> None:
    quarantines = Quarantines(StateFiles(tmp_path))
    assert quarantines.path("../etc").parent == tmp_path / "quarantine"
    assert quarantines.path("..").name == "node"
    assert quarantines.path("rack 3/n7").name == "rack_3_n7"


def test_a_file_that_is_not_a_record_is_one_error_naming_it(tmp_path: Path) -> None:
    quarantines = Quarantines(StateFiles(tmp_path))
    (tmp_path / "quarantine").mkdir()
    (tmp_path / "quarantine" / "n2").write_text("{not json\n")
    with pytest.raises(StateError) as caught:
        quarantines.read("n2")
    assert caught.value.path == tmp_path / "quarantine" / "n2"
    assert "not a quarantine record" in str(caught.value)


def test_a_hand_written_minimal_record_is_read() -> None:
    text = '{"node": "n3", "since": 1, "until": 2}'
    assert QuarantineRecord.from_json(text, Path("x")) == QuarantineRecord(
        "n3", 1.0, 2.0, "", "", ())


def test_the_exclude_list_names_each_node_in_force_once_sorted() -> None:
    records = [record("n10"), record("n2"), record("n2"), record("old", until=1500.0)]
    assert exclude_list(records, 1600.0) == "n10,n2"
    assert exclude_list(records, 1400.0) == "n10,n2,old"
    assert exclude_list([], 0.0) == ""
