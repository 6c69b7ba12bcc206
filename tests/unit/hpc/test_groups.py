"""Task process groups: which recorded group a lease's taker kills (by the leader's identity,
never a reused pid), the task record's line, and killing a real group."""

from __future__ import annotations

import os
import signal
import subprocess

from taskfarmer.hpc.groups import (
    RECORD_SIZE,
    TaskGroup,
    blank_record,
    boot_ticks,
    group_has_live_members,
    kill_group,
    killable,
)
from taskfarmer.hpc.identity import Identity, process_start_time

HERE = Identity("h", "n", 100, "boot-a", "pid:[1]", "5")
GROUP = TaskGroup(task=7, pid=4242, first=123455, last=123456, began=1700000000.25)


def test_the_recorded_group_is_killed_while_its_leader_runs_on_the_owners_machine() -> None:
    owner = Identity("h", "n", 200, "boot-a", "pid:[1]", "9")
    assert killable(GROUP, owner, HERE, leader_start="123455")  # started in the window
    assert killable(GROUP, owner, HERE, leader_start="123456")


def test_a_reused_pid_or_a_gone_leader_is_never_killed() -> None:
    owner = Identity("h", "n", 200, "boot-a", "pid:[1]", "9")
    assert not killable(GROUP, owner, HERE, leader_start="123457")  # pid reused: started later
    assert not killable(GROUP, owner, HERE, leader_start="123454")  # before the fork: not it
    assert not killable(GROUP, owner, HERE, leader_start=None)  # no such process (or zombie)
    assert not killable(GROUP, owner, HERE, leader_start="")  # unreadable
    assert not killable(None, owner, HERE, leader_start="123456")  # nothing recorded
    for pid in (0, 1):  # never init, never "every process" (kill(0) / killpg(1))
        assert not killable(TaskGroup(7, pid, 1, 1, 0.0), owner, HERE, leader_start="1")


def test_a_group_of_another_machine_is_never_killed() -> None:
    for boot, pidns in (("boot-b", "pid:[1]"), ("boot-a", "pid:[2]"), ("", "")):
        owner = Identity("h", "n", 200, boot, pidns, "9")
        assert not killable(GROUP, owner, HERE, leader_start="123456")


def test_a_record_is_one_fixed_size_line_and_torn_or_blank_ones_name_nothing() -> None:
    line = GROUP.record()
    assert len(line) == RECORD_SIZE and line.endswith(b"\n") and line.count(b"\n") == 1
    assert TaskGroup.parse(line.decode()) == GROUP
    assert len(blank_record()) == RECORD_SIZE and TaskGroup.parse(blank_record().decode()) is None
    for torn in ("task=7 4242 1234", "task=7 42x2 1 2 1.0", "", "task=7 4242 1 2 now",
                 "other=7 4242 1 2 1.0", "task=7 4242 123456 1.0"):
        assert TaskGroup.parse(torn) is None, torn


def test_a_leaders_start_time_lies_between_the_ticks_before_and_after_its_fork() -> None:
    for _ in range(20):
        first = boot_ticks()
        child = subprocess.Popen(["/bin/sh", "-c", "sleep 1"], start_new_session=True)
        last = boot_ticks()
        try:
            start = process_start_time(child.pid)
            assert start is not None and first <= int(start) <= last
        finally:
            child.kill()
            child.wait()


def test_kill_group_kills_every_member_and_waits_for_them() -> None:
    leader = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & sleep 60 & wait"],
                              start_new_session=True)
    try:
        assert group_has_live_members(leader.pid)
        assert kill_group(leader.pid)
        assert not group_has_live_members(leader.pid)
    finally:
        try:
            os.killpg(leader.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        leader.wait()
    assert leader.returncode == -signal.SIGKILL

