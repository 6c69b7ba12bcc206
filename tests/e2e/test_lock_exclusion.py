"""A lock that does not exclude (different SCRATCH, nolock/localflock mounts) is noticed."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from helpers.farmer import ids, run_farmer, start_farmer, wait_for, write_tasklist

from taskfarmer.errors import LockError
from taskfarmer.store.exclusion import CRASH_WAIT, ExclusionCheck
from taskfarmer.store.files import StateFiles


class FakeTime:
    """A monotonic clock that advances only when slept on; ``on_sleep`` runs at each sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.on_sleep: list = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        while self.on_sleep:
            self.on_sleep.pop(0)()


def check(workdir: Path, lock_file: str, clock: FakeTime) -> ExclusionCheck:
    return ExclusionCheck(StateFiles(workdir), lock_file, clock.monotonic, clock.sleep)


def test_a_second_holder_is_noticed_on_arrival_before_it_changes_anything(tmp_path: Path
                                                                          ) -> None:
    clock = FakeTime()
    first = check(tmp_path, "/scratch/a/x.lock", clock)
    second = check(tmp_path, "/scratch/b/x.lock", clock)
    first.begin()
    clock.on_sleep.append(first.end)  # the first leaves while the second looks
    with pytest.raises(LockError) as error:
        second.begin()
    message = str(error.value)
    assert "/scratch/b/x.lock" in message and "/scratch/a/x.lock" in message
    assert "SCRATCH differs" in message
    assert (tmp_path / "holder").read_text().startswith("closed ")  # the second wrote nothing


def test_after_a_detection_the_farmer_takes_the_lock_no_more(tmp_path: Path) -> None:
    clock = FakeTime()
    first = check(tmp_path, "/scratch/a/x.lock", clock)
    second = check(tmp_path, "/scratch/b/x.lock", clock)
    first.begin()
    clock.on_sleep.append(first.end)
    with pytest.raises(LockError):
        second.begin()
    waited = clock.now
    first.begin()
    first.end()  # the other farmer goes on
    line = (tmp_path / "holder").read_text()
    pid = os.fork()
    if pid == 0:  # a worker of the stopped farmer: refuses too, without writing or waiting
        try:
            second.begin()
        except LockError:
            os._exit(0 if clock.now == waited else 2)
        os._exit(1)
    assert os.waitpid(pid, 0)[1] == 0
    with pytest.raises(LockError, match=r"/scratch/a/x\.lock"):
        second.begin()
    assert (tmp_path / "holder").read_text() == line and clock.now == waited


def test_a_holder_killed_in_its_hold_delays_the_next_only_briefly(tmp_path: Path) -> None:
    clock = FakeTime()
    killed = check(tmp_path, "/s/x.lock", clock)
    killed.begin()  # and never ends
    nxt = check(tmp_path, "/s/x.lock", clock)
    nxt.begin()
    assert CRASH_WAIT <= clock.now <= CRASH_WAIT + 0.1
    nxt.end()
    waited = clock.now
    nxt.begin()
    nxt.end()
    assert clock.now == waited  # a clean predecessor costs no wait


def test_a_holder_that_came_in_unseen_is_noticed_on_leaving(tmp_path: Path) -> None:
    clock = FakeTime()
    first = check(tmp_path, "/s/x.lock", clock)
    first.begin()
    second = check(tmp_path, "/s/x.lock", clock)
    second.begin()  # the first's line did not change while it looked: taken for a crash
    with pytest.raises(LockError) as error:
        first.end()
    assert "does not lock across nodes" in str(error.value)  # same lock file: nolock?


def test_one_process_reentering_is_not_a_second_holder(tmp_path: Path) -> None:
    clock = FakeTime()
    one = check(tmp_path, "/s/x.lock", clock)
    one.begin()  # a hold that ended in an exception before end()
    one.begin()
    one.end()
    assert clock.now == 0


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
