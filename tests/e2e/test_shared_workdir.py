"""Farmers on one workdir: exactly once in coherent mode, an incomplete last line, initialization
without a working lock (the I/O modes in-process: tests/unit/store/test_io_modes.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers.farmer import ids, start_farmer, wait_for, write_tasklist

from taskfarmer.store.ledger import INCOMPLETE_WAIT


def test_farmers_share_a_workdir_exactly_once_in_coherent_mode(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    count = 200
    tasks = write_tasklist(tmp_path / "t", [f"echo {i} >> {runs}" for i in range(count)])
    farmers = [start_farmer([str(tasks), "-n", "2"], env={"TASKFARMER_IO": "coherent"})
               for _ in range(3)]
    codes = [f.wait(timeout=300) for f in farmers]
    assert codes == [0, 0, 0], [f.stderr.read() for f in farmers]
    workdir = tmp_path / "t_workdir"
    assert sorted(ids(workdir / "finished")) == list(range(count))
    assert sorted(int(x) for x in runs.read_text().split()) == list(range(count))
    assert (workdir / "toprocess").read_text() == ""
    events = json.loads((workdir / "timeline.json").read_text())
    assert sorted(e["args"]["id"] for e in events if e["ph"] == "X") == list(range(count))


def test_a_farmer_does_not_wait_for_ever_on_an_incomplete_last_line(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["sleep 1"])
    workdir = tmp_path / "t_workdir"
    farmer = start_farmer([str(tasks), "-n", "1"])
    wait_for(lambda: (workdir / "claims").exists() and (workdir / "claims").stat().st_size,
             what="the task taken")
    with open(workdir / "toprocess", "ab") as toprocess:
        toprocess.write(b"1 torn by a dying no")
    assert farmer.wait(timeout=INCOMPLETE_WAIT + 60) == 0, farmer.stderr.read()
    assert ids(workdir / "finished") == [0]
    assert (workdir / "torn").read_text() == "toprocess: 1 torn by a dying no\n"


INIT = """
import sys
from pathlib import Path
from taskfarmer.store.locking import make_lock
from taskfarmer.store import StateStore
w = Path(sys.argv[1])
s = StateStore(w, make_lock(w, "flock", {}))  # never taken
s.prepare()
print(int(s.workdir_setup.initialize(f'task {i} of {sys.argv[2]}' for i in range(20000))))
"""


def test_initialization_without_any_lock_creates_the_list_once(tmp_path: Path) -> None:
    """No lock at all (as with a lock that does not exclude): one list, no crash."""
    procs = [subprocess.Popen([sys.executable, "-c", INIT, str(tmp_path), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(6)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, results
    assert sum(int(out) for out, _ in results) == 1
    lines = (tmp_path / "toprocess").read_text().splitlines()
    assert len(lines) == 20000
    assert len({line.rsplit(" ", 1)[1] for line in lines}) == 1  # all from one writer
    assert sorted(os.listdir(tmp_path)) == ["claims", "failed", "finished", "leases", "logs",
                                            "toprocess"]


def test_soft_locks_in_different_scratch_never_crash_at_start(tmp_path: Path) -> None:
    """Farmers starting together with soft locks that do not exclude: no traceback; each
    either works or stops on the lock error; nothing recorded twice."""
    count = 100
    tasks = write_tasklist(tmp_path / "t", [f"echo {i}" for i in range(count)])
    farmers = []
    for k in range(4):
        scratch = tmp_path / f"scratch{k}"
        scratch.mkdir()
        farmers.append(start_farmer([str(tasks), "-n", "2", "--lock", "soft"],
                                    env={"SCRATCH": str(scratch)}))
    ended = [(f.wait(timeout=300), "".join(f.communicate())) for f in farmers]
    for code, err in ended:
        assert "Traceback" not in err
        assert code in (0, 2), err
        if code == 2:
            assert "did not keep out another farmer" in err
    workdir = tmp_path / "t_workdir"
    finished = ids(workdir / "finished")
    assert len(finished) == len(set(finished))
    assert ids(workdir / "failed") == []
