"""No task lost to the OOM killer: the farmer in a real memory cgroup (v1 here and in CI, v2
where mounted) with real tasks that really take the memory (``b"x" * N`` writes every page).

The rules are in taskfarmer/farm/memory.py and docs/usage.md#memory; the pure decisions and
the cgroup reading are unit-tested (tests/unit/farm/test_memory.py,
tests/unit/hpc/test_memory.py).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from helpers.cgroup import MemoryCgroup
from helpers.farmer import FARMER, farmer_env, ids, no_traceback, verify_problems, write_tasklist

from taskfarmer.logs.joblog import Entry, parse_line

MiB = 1 << 20

#: A task's steps: ``hold MIB`` (at once), ``grow MIB SECONDS`` (one MiB per SECONDS),
#: ``sleep SECONDS``, ``touch FILE``, ``until FILE|FILE^WORD...`` (one exists / has a line with
#: the tab-separated field WORD: a job log outcome), ``recorded FILE`` (FILE has a line).
TASK = """\
import os, sys, time
held = []
def met(condition):
    path, _, word = condition.partition("^")
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    return not word or any(word in line.split("\\t") for line in lines)
args = sys.argv[1:]
while args:
    step = args.pop(0)
    if step == "hold":
        held.append(b"x" * (int(args.pop(0)) << 20))
    elif step == "grow":
        mib, pause = int(args.pop(0)), float(args.pop(0))
        for _ in range(mib):
            held.append(b"x" * (1 << 20))
            time.sleep(pause)
    elif step == "sleep":
        time.sleep(float(args.pop(0)))
    elif step == "touch":
        open(args.pop(0), "a").close()
    elif step == "until":
        conditions = args.pop(0).split("|")
        while not any(met(condition) for condition in conditions):
            time.sleep(0.01)
    elif step == "recorded":
        path = args.pop(0)
        while not os.path.exists(path) or os.path.getsize(path) == 0:
            time.sleep(0.01)
"""

MakeCgroup = Callable[[int], MemoryCgroup]


def task(tmp_path: Path, *steps: object) -> str:
    script = tmp_path / "task.py"
    if not script.exists():
        script.write_text(TASK)
    return shlex.join([sys.executable, str(script), *(str(step) for step in steps)])


def farm_in(cgroup: MemoryCgroup, args: Sequence[str]) -> subprocess.CompletedProcess:
    """Run ``farmer ARGS`` inside ``cgroup``."""
    done = subprocess.run(cgroup.command([*FARMER, *args]), capture_output=True, text=True,
                          timeout=120, env=farmer_env(), stdin=subprocess.DEVNULL)
    no_traceback(done.stdout, done.stderr)
    return done


def joblog(workdir: Path) -> list[Entry]:
    lines = (workdir / "joblog").read_bytes().splitlines()[1:]
    return [entry for entry in map(parse_line, lines) if entry is not None]


def outcomes(workdir: Path, task_id: int) -> list[str]:
    return [entry.outcome for entry in joblog(workdir) if entry.id == task_id]


def put_back(workdir: Path) -> list[Entry]:
    return [entry for entry in joblog(workdir) if entry.outcome in ("oom", "evicted")]


#: Seconds by which the job log's times (start in ms, runtime to 3 decimals) may be off: a
#: worker's next task can seem to start before its last one ended.
ROUNDING = 0.005


def most_at_once(entries: list[Entry]) -> int:
    """The most executions that ran at the same time."""
    edges = sorted([(entry.start + ROUNDING, 1) for entry in entries]
                   + [(entry.end - ROUNDING, -1) for entry in entries])
    running = most = 0
    for _, change in edges:
        running += change
        most = max(most, running)
    return most


def test_tasks_that_together_exceed_the_cgroup_all_finish(tmp_path: Path,
                                                          memory_cgroup: MakeCgroup) -> None:
    """The issue's scenario: 8 tasks of 120 MiB, 4 at once, in 400 MiB. Before, 6 of them
    were recorded failed (killed by SIGKILL); now the ones the OOM killer (or the farmer,
    first) killed go back and run again, and the farmer runs fewer at once."""
    cgroup = memory_cgroup(400 * MiB)
    tasks = write_tasklist(tmp_path / "t", [task(tmp_path, "hold", 120, "sleep", 0.3)] * 8)
    workdir = tmp_path / "t_workdir"
    done = farm_in(cgroup, [str(tasks), "--proc", "4"])
    assert done.returncode == 0, done.stderr + done.stdout
    assert sorted(ids(workdir / "finished")) == list(range(8))
    assert ids(workdir / "failed") == []
    again = put_back(workdir)
    assert again, "4 tasks of 120 MiB at once never ran short of 400 MiB"
    assert len(again) <= 3  # each lowers the cap, from 4 at most to 1
    finished = [entry for entry in joblog(workdir) if entry.outcome == "finished"]
    assert len(finished) == 8 and all(entry.maxrss >= 120 * 1024 for entry in finished)
    assert verify_problems(workdir) == []


def test_a_task_that_alone_exceeds_the_limit_fails_out_of_memory(
        tmp_path: Path, memory_cgroup: MakeCgroup) -> None:
    """Task 1 takes 500 MiB of 400 once task 0, which ran beside it, is recorded: the OOM
    killer's kill goes back (``oom``: another task ran during it), the next kills, alone, are
    failed attempts (``out of memory``): bounded, with --retries 1, by two attempts."""
    cgroup = memory_cgroup(400 * MiB)
    workdir = tmp_path / "t_workdir"
    started = tmp_path / "started1"
    tasks = write_tasklist(tmp_path / "t", [
        task(tmp_path, "until", started),
        task(tmp_path, "touch", started, "recorded", workdir / "finished", "hold", 500)])
    done = farm_in(cgroup, [str(tasks), "--proc", "2", "--retries", "1"])
    assert done.returncode == 1, done.stderr + done.stdout
    assert ids(workdir / "finished") == [0] and ids(workdir / "failed") == [1]
    assert outcomes(workdir, 1) == ["oom", "retry", "out of memory"]
    assert cgroup.oom_kills() == 3
    assert "while it ran alone" in done.stdout
    events = json.loads((workdir / "timeline.json").read_text())
    markers = [event["name"] for event in events
               if event["ph"] == "i" and event.get("args", {}).get("id") == 1
               and event.get("s") == "t"]
    assert markers == ["oom", "out of memory", "out of memory"]  # as for "timed out"
    assert verify_problems(workdir) == []


def test_memory_running_short_evicts_the_newest_task_before_the_oom_killer(
        tmp_path: Path, memory_cgroup: MakeCgroup) -> None:
    """A task holds 300 MiB while another grows by a MiB every 20 ms: before 400 MiB the
    farmer kills the most recently started one (``evicted``) and puts it back; it runs again
    once the other is done. The OOM killer never acts."""
    cgroup = memory_cgroup(400 * MiB)
    workdir = tmp_path / "t_workdir"
    held, grown = tmp_path / "held", tmp_path / "grown"
    tasks = write_tasklist(tmp_path / "t", [
        task(tmp_path, "hold", 300, "touch", held, "until", f"{grown}|{workdir}/joblog^evicted"),
        task(tmp_path, "until", held, "grow", 80, 0.02, "touch", grown)])
    done = farm_in(cgroup, [str(tasks), "--proc", "2"])
    assert done.returncode == 0, done.stderr + done.stdout
    assert sorted(ids(workdir / "finished")) == [0, 1]
    assert [entry.outcome for entry in put_back(workdir)] == ["evicted"]
    assert cgroup.oom_kills() == 0
    assert verify_problems(workdir) == []


def test_mem_per_task_starts_no_more_tasks_than_fit(tmp_path: Path,
                                                    memory_cgroup: MakeCgroup) -> None:
    """``--mem-per-task 150M`` in 400 MiB: two tasks at once of the four asked for, so none is
    killed."""
    cgroup = memory_cgroup(400 * MiB)
    tasks = write_tasklist(tmp_path / "t", [task(tmp_path, "hold", 120, "sleep", 0.3)] * 4)
    workdir = tmp_path / "t_workdir"
    done = farm_in(cgroup, [str(tasks), "--proc", "4", "--mem-per-task", "150M"])
    assert done.returncode == 0, done.stderr + done.stdout
    assert sorted(ids(workdir / "finished")) == list(range(4))
    assert put_back(workdir) == [] and cgroup.oom_kills() == 0
    assert most_at_once(joblog(workdir)) <= 2


def test_peaks_in_the_job_log_keep_the_next_farmer_under_the_limit(
        tmp_path: Path, memory_cgroup: MakeCgroup) -> None:
    """A first farmer runs one task of 120 MiB; the next, with four more to run four at a
    time, expects as much of each from the job log and runs two at once."""
    cgroup = memory_cgroup(400 * MiB)
    line = task(tmp_path, "hold", 120, "sleep", 0.3)
    tasks = write_tasklist(tmp_path / "t", [line])
    workdir = tmp_path / "t_workdir"
    assert farm_in(cgroup, [str(tasks), "--proc", "1"]).returncode == 0
    assert joblog(workdir)[0].maxrss >= 120 * 1024
    write_tasklist(tasks, [line] * 5)
    done = farm_in(cgroup, [str(tasks), "--proc", "4"])
    assert done.returncode == 0, done.stderr + done.stdout
    assert sorted(ids(workdir / "finished")) == list(range(5))
    assert put_back(workdir) == [] and cgroup.oom_kills() == 0
    assert most_at_once(joblog(workdir)[1:]) <= 2
