"""A lock that does not exclude is noticed, driven in-process: a second holder on arrival or on
leaving, a killed holder, a process re-entering."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


def test_holds_and_hand_overs_from_another_node_are_counted(tmp_path: Path) -> None:
    clock = FakeTime()
    on_a = ExclusionCheck(StateFiles(tmp_path), "/s/x.lock", clock.monotonic, clock.sleep,
                          hostname=lambda: "node-a")
    also_on_a = ExclusionCheck(StateFiles(tmp_path), "/s/x.lock", clock.monotonic, clock.sleep,
                               hostname=lambda: "node-a")
    on_b = ExclusionCheck(StateFiles(tmp_path), "/s/x.lock", clock.monotonic, clock.sleep,
                          hostname=lambda: "node-b")
    for holder in (on_a, on_a, also_on_a, on_b, on_a, on_b):
        holder.begin()
        holder.end()
    assert on_a.holds == (3, 1)  # the first hold found no holder; the third came from B
    assert also_on_a.holds == (1, 0)  # the same node, another process: no hand-over
    assert on_b.holds == (2, 2)
