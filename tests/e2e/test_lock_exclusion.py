"""A lock that does not exclude (different SCRATCH, nolock/localflock mounts) is noticed by the
farmer (the detection in-process: tests/unit/store/test_exclusion.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from helpers.farmer import ids, run_farmer, start_farmer, wait_for, write_tasklist


def test_a_farmer_arriving_while_another_holds_a_different_lock_stops_at_once(tmp_path: Path
                                                                              ) -> None:
    """A busy holder through another SCRATCH's lock (simulated): exit 2, one line, nothing
    changed."""
    tasks = write_tasklist(tmp_path / "t", ["true"])
    workdir = tmp_path / "t_workdir"
    workdir.mkdir()
    fd = os.open(workdir / "holder", os.O_RDWR | os.O_CREAT, 0o644)
    stop = threading.Event()

    def busy() -> None:
        seq = 0
        while not stop.wait(0.005):  # rewritten in place, like a holder does
            seq += 1
            os.pwrite(fd, b"open othernode:42:abc %06d /elsewhere/taskfarmer_x.lock\n" % seq, 0)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        done = run_farmer([str(tasks)], env={"SCRATCH": str(scratch)})
    finally:
        stop.set()
        thread.join()
        os.close(fd)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert str(scratch) in errors[0] and "/elsewhere/taskfarmer_x.lock" in errors[0]
    assert "othernode:42" in errors[0] and "SCRATCH differs" in errors[0]
    assert not (workdir / "toprocess").exists()


def test_farmers_with_different_scratch_stop_and_record_nothing_twice(tmp_path: Path) -> None:
    count = 3000
    tasks = write_tasklist(tmp_path / "t", ["true"] * count)
    workdir = tmp_path / "t_workdir"
    scratches = [tmp_path / "s1", tmp_path / "s2"]
    for scratch in scratches:
        scratch.mkdir()
    args = [str(tasks), "-n", "2", "--lease", "4"]  # takeovers within a second
    first = start_farmer(args, env={"SCRATCH": str(scratches[0])})
    wait_for(lambda: len(ids(workdir / "finished")) >= 20, what="the first farmer working")
    second = start_farmer(args, env={"SCRATCH": str(scratches[1])})
    ended = [(f.wait(timeout=300), "".join(f.communicate())) for f in (first, second)]
    assert any(code == 2 for code, _ in ended), ended
    for code, output in ended:
        assert code in (0, 2) and "Traceback" not in output
        if code == 2:
            assert "did not keep out another farmer" in output
            assert "SCRATCH differs" in output
    finished = ids(workdir / "finished")
    assert len(finished) == len(set(finished))  # nothing recorded twice
    assert ids(workdir / "failed") == []
    # A farmer with the right lock finishes what is left: every task exactly once.
    done = run_farmer([str(tasks), "-n", "2"], env={"SCRATCH": str(scratches[0])},
                      timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(ids(workdir / "finished")) == list(range(count))


def test_a_farmer_stopping_on_a_lock_error_hands_its_leases_over(tmp_path: Path) -> None:
    """After a detection the farmer writes no state, but renames its lease files to
    ``.dead``: the next farmer puts their tasks back at once, not after ``--lease``."""
    count = 8
    tasks = write_tasklist(tmp_path / "t", ["sleep 0.3"] * count)
    workdir = tmp_path / "t_workdir"
    first = start_farmer([str(tasks), "-n", "2", "--lease", "600"])
    wait_for(lambda: len(ids(workdir / "claims")) >= 2, what="two workers with a task each")
    fd = os.open(workdir / "holder", os.O_RDWR)
    stop = threading.Event()

    def intruder() -> None:  # another holder through another lock file (simulated)
        seq = 0
        while not stop.wait(0.005):
            seq += 1
            os.pwrite(fd, b"open othernode:42:abc %06d /elsewhere/taskfarmer_x.lock\n" % seq, 0)

    thread = threading.Thread(target=intruder)
    thread.start()
    try:
        out, err = first.communicate(timeout=120)
    finally:
        stop.set()
        thread.join()
    os.pwrite(fd, b"closed othernode:42:abc 999999 /elsewhere/taskfarmer_x.lock\n", 0)
    os.close(fd)
    assert first.returncode == 2, out + err
    assert "did not keep out another farmer" in err and "Traceback" not in err
    leases = os.listdir(workdir / "leases")
    assert leases and all(name.endswith(".dead") for name in leases), leases
    # With --lease 600 a farmer waiting for the heartbeat to age would not end in time.
    done = run_farmer([str(tasks), "-n", "2", "--lease", "600"], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(ids(workdir / "finished")) == list(range(count))
    assert os.listdir(workdir / "leases") == []
