"""The memory rules alone (:mod:`taskfarmer.farm.memory`): admission, which task to evict,
what an end had to do with memory, the cap; the board against a fake cgroup tree, evicting
real processes."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers.clock import FakeClock

from taskfarmer.farm.memory import (
    BACKOFF,
    EVICTED,
    OOM,
    OUT_OF_MEMORY,
    Judgement,
    MemoryBoard,
    admissible,
    cap_now,
    verdict,
    victim,
)
from taskfarmer.hpc.identity import parent_pid
from taskfarmer.hpc.memory import Cgroup, NodeMemory, Room

MiB = 1 << 20
ROOM = Room(400 * MiB, 100 * MiB, confined=True)  # the line: 380 MiB


@pytest.mark.parametrize("workers, wanted, cap, expected, room, base, allowed", [
    (0, 4, 4, None, None, 0, 4),  # nothing known: --proc
    (2, 2, 3, None, None, 0, 1),  # the cap
    (0, 4, 4, 150 * MiB, Room(400 * MiB, 20 * MiB, True), 20 * MiB, 2),  # 20 + 2 x 150 < 380
    (2, 2, 4, 150 * MiB, Room(400 * MiB, 320 * MiB, True), 20 * MiB, 0),  # a third: 470
    (1, 3, 4, 100 * MiB, Room(400 * MiB, 60 * MiB, True), 20 * MiB, 2),  # by the model: 3 in all
    (1, 3, 4, 100 * MiB, Room(400 * MiB, 250 * MiB, True), 20 * MiB, 1),  # what is used now
    (0, 4, 4, 900 * MiB, ROOM, 20 * MiB, 1),  # a task bigger than the limit runs, alone
    (0, 0, 4, 900 * MiB, ROOM, 20 * MiB, 0),  # nothing to start
    (0, 4, 4, 2 << 30, Room(8 << 30, 1 << 30, False), 1 << 30, 3),  # the node's memory
])
def test_admission(workers: int, wanted: int, cap: int, expected: int | None,
                   room: Room | None, base: int, allowed: int) -> None:
    assert admissible(workers, wanted, cap, expected, room, base) == allowed


def test_the_most_recently_started_task_is_evicted_never_a_lone_one() -> None:
    assert victim({0: 10.0, 2: 30.0, 1: 20.0}) == 2
    assert victim({3: 5.0}) is None
    assert victim({}) is None


@pytest.mark.parametrize("returncode, before, after, evicted, crowded, word", [
    (-9, 1, 2, False, True, OOM),  # killed while another task ran
    (137, 1, 2, False, True, OOM),  # its shell says so
    (-9, 1, 2, False, False, OUT_OF_MEMORY),  # alone: it alone exceeds the limit
    (-9, 1, 1, False, True, None),  # SIGKILL from someone else
    (-9, None, None, False, True, None),  # the kernel does not count
    (-9, 1, 1, True, True, EVICTED),  # we killed it
    (0, 1, 1, True, True, None),  # it ended before our kill landed: recorded as it ended
    (1, 1, 2, False, True, None),  # failed on its own (a child was killed?)
    (-15, 1, 2, False, True, None),
])
def test_what_memory_had_to_do_with_an_end(returncode: int, before: int | None,
                                           after: int | None, evicted: bool, crowded: bool,
                                           word: str | None) -> None:
    assert verdict(returncode, before, after, evicted, crowded) == word


def test_the_cap_rises_by_one_per_backoff() -> None:
    assert cap_now(4, float("-inf"), 0.0, 4) == 4
    assert cap_now(1, 100.0, 100.0, 4) == 1
    assert cap_now(1, 100.0, 100.0 + BACKOFF - 0.1, 4) == 1
    assert cap_now(1, 100.0, 100.0 + BACKOFF, 4) == 2
    assert cap_now(1, 100.0, 100.0 + 10 * BACKOFF, 4) == 4


def test_the_lines_said() -> None:
    assert Judgement(OOM, 3, 3).describe(7) == (
        "task 7 was killed by the OOM killer (3 other task(s) running); back to toprocess, "
        "at most 3 task(s) at once for now")
    assert "stopped task 7, the most recently started" in Judgement(EVICTED, 1, 1).describe(7)
    assert "ran alone: out of memory" in Judgement(OUT_OF_MEMORY, 0, 4).describe(7)


def fake_cgroup(tmp_path: Path, used: int, kills: int = 0) -> Cgroup:
    """A v1 cgroup of 400 MiB with ``used`` bytes in use and ``kills`` OOM kills."""
    top = tmp_path / "memory"
    top.mkdir(exist_ok=True)
    (top / "memory.limit_in_bytes").write_text(str(400 * MiB))
    (top / "memory.usage_in_bytes").write_text(str(used))
    (top / "memory.stat").write_text("total_inactive_file 0\ntotal_active_file 0\n")
    (top / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")
    return Cgroup(1, top, top)


def test_tasks_that_overlap_run_crowded_and_an_oom_kill_lowers_the_cap(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    cgroup = fake_cgroup(tmp_path, 20 * MiB)
    board = MemoryBoard(4, NodeMemory(cgroup), monotonic=fake_clock)
    before = [board.starting(slot) for slot in range(3)]
    assert before == [0, 0, 0]
    fake_cgroup(tmp_path, 390 * MiB, kills=1)  # the OOM killer killed one of them
    assert not board.exited(1)
    assert board.judge(1, -9, before[1], False, 90 * MiB) == Judgement(OOM, 2, 2)
    assert board.cap() == 2 and board.expected() == 90 * MiB
    assert board.judge(0, 0, before[0], False, 120 * MiB) is None  # crowded, but it ended well
    assert board.expected() == 120 * MiB
    board.exited(0)
    board.exited(2)
    fake_clock.tick(BACKOFF)
    assert board.cap() == 3
    alone = board.starting(3)
    fake_cgroup(tmp_path, 390 * MiB, kills=2)
    board.exited(3)
    assert board.judge(3, 137, alone, False, 400 * MiB) == Judgement(OUT_OF_MEMORY, 0, 3)
    assert board.cap() == 3  # a failure, not a reason to run fewer
    assert board.expected() == 400 * MiB


def test_crowded_means_another_task_ran_at_some_time_during_it(tmp_path: Path) -> None:
    board = MemoryBoard(3, NodeMemory(fake_cgroup(tmp_path, 0)))
    board.starting(0)
    board.exited(0)
    board.starting(1)  # began after slot 0's task ended
    board.exited(1)
    assert not board.crowded(0) and not board.crowded(1)
    board.starting(2)
    board.starting(1)  # began while slot 2's runs, and runs on after it
    board.exited(2)
    assert board.crowded(2)  # another started meanwhile
    board.exited(1)
    assert board.crowded(1)  # another ran when it started
    board.exited(1)  # told twice (an error path): counts once
    board.starting(0)  # alone now
    board.exited(0)
    assert not board.crowded(0)
    board.starting(2)  # its worker dies with it: exited() is never told
    board.starting(2)  # the slot's next worker: the dead one's task is not counted twice
    board.exited(2)
    assert not board.crowded(2)


def test_a_killed_tasks_peak_does_not_lower_what_is_expected(tmp_path: Path) -> None:
    board = MemoryBoard(2, NodeMemory(fake_cgroup(tmp_path, 0)), seed=50 * MiB)
    assert board.expected() == 50 * MiB  # from the job log, before any task ran
    board.judge(0, -9, None, False, 10 * MiB)
    assert board.expected() == 50 * MiB
    board.judge(0, 0, None, False, 10 * MiB)
    board.judge(1, 0, None, False, 30 * MiB)
    assert board.expected() == 30 * MiB  # each slot's last task
    assert MemoryBoard(2, NodeMemory(None), per_task=7 * MiB).expected() == 7 * MiB


def test_without_a_cgroup_peaks_are_learned_and_nothing_is_watched() -> None:
    board = MemoryBoard(2, NodeMemory(None))
    assert board.starting(0) is None
    board.running(0, 1)  # no pid is kept: nothing can be evicted
    assert board.exited(0) is False
    assert board.judge(0, -9, None, False, 60 * MiB) is None
    assert board.expected() == 60 * MiB


def test_admission_on_the_board_counts_the_memory_at_rest(tmp_path: Path) -> None:
    cgroup = fake_cgroup(tmp_path, 80 * MiB)  # the farmer and what else runs there
    board = MemoryBoard(4, NodeMemory(cgroup), per_task=100 * MiB)
    assert board.admissible(0, 4) == 3  # 80 + 3 x 100 < 380
    fake_cgroup(tmp_path, 300 * MiB)
    assert board.admissible(2, 2) == 0
    assert MemoryBoard(4, NodeMemory(cgroup)).admissible(0, 4) == 4  # nothing known yet


def sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "30"], start_new_session=True)


def test_memory_running_short_evicts_the_newest_running_task(tmp_path: Path,
                                                             fake_clock: FakeClock) -> None:
    cgroup = fake_cgroup(tmp_path, 100 * MiB)
    board = MemoryBoard(3, NodeMemory(cgroup), monotonic=fake_clock)
    tasks = [sleeper(), sleeper()]
    try:
        for slot, process in enumerate(tasks):
            board.starting(slot)
            board.running(slot, process.pid)
            fake_clock.tick(1)
        assert board.relieve() is None  # memory is not short
        fake_cgroup(tmp_path, 381 * MiB)
        assert board.relieve() == 1
        assert tasks[1].wait(timeout=10) == -signal.SIGKILL
        assert board.exited(1)
        assert tasks[0].poll() is None
        assert board.relieve() is None  # alone now: the kernel decides
        assert not board.exited(0)
    finally:
        for process in tasks:
            process.kill()
            process.wait()


def test_a_task_that_ended_is_never_evicted(tmp_path: Path, fake_clock: FakeClock) -> None:
    """Nor whatever process gets its pid next (not the worker's child)."""
    board = MemoryBoard(2, NodeMemory(fake_cgroup(tmp_path, 390 * MiB)), monotonic=fake_clock)
    alive, gone = sleeper(), subprocess.Popen(["true"], start_new_session=True)
    try:
        for slot, process in enumerate((alive, gone)):
            board.starting(slot)
            board.running(slot, process.pid)
            fake_clock.tick(1)
        gone.wait()  # reaped without its worker telling the board (a worker that died)
        assert board.relieve() is None
        assert alive.poll() is None
    finally:
        alive.kill()
        alive.wait()


def test_a_process_not_the_workers_child_is_never_evicted(tmp_path: Path,
                                                          fake_clock: FakeClock) -> None:
    """The task's worker died and the pid went to some other process: not ours to kill."""
    board = MemoryBoard(2, NodeMemory(fake_cgroup(tmp_path, 390 * MiB)), monotonic=fake_clock)
    shell = subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"],
                           capture_output=True, text=True, check=True)
    stranger = int(shell.stdout)
    mine = sleeper()
    try:
        board.starting(0)
        board.running(0, mine.pid)
        fake_clock.tick(1)
        board.starting(1)
        board.running(1, stranger)
        assert board.relieve() is None
        assert parent_pid(stranger) is not None  # still running
    finally:
        os.kill(stranger, signal.SIGKILL)
        mine.kill()
        mine.wait()
