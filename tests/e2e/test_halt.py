"""``--halt``: real failing tasks halt every farmer of the workdir; the rest stays pending, exit
code 5; a farmer started on a halted workdir says so and changes nothing until the record is
removed (the rule and the record alone: tests/unit/farm/test_halt.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from helpers.farmer import (
    error_lines,
    ids,
    no_traceback,
    run_farmer,
    start_farmer,
    verify_problems,
    wait_for,
    write_tasklist,
)


def _gated(tmp_path: Path, count: int) -> Path:
    """``count`` tasks: each fails at once with FAIL set, else records its start in started/
    and waits for the file ``go``."""
    (tmp_path / "started").mkdir()
    go = tmp_path / "go"
    return write_tasklist(tmp_path / "t", [
        f'[ -z "$FAIL" ] || exit 3; touch {tmp_path}/started/$PROC_NUMBER; '
        f"while [ ! -e {go} ]; do sleep 0.05; done"] * count)


def _started(tmp_path: Path) -> set[int]:
    return {int(path.name) for path in (tmp_path / "started").iterdir()}


def test_halt_now_stops_every_farmer_of_the_workdir(tmp_path: Path) -> None:
    tasks = _gated(tmp_path, 12)
    workdir = tmp_path / "t_workdir"
    other = start_farmer([str(tasks), "-n", "2"])  # no --halt: it obeys the record all the same
    wait_for(lambda: len(_started(tmp_path)) == 2, what="the other farmer's tasks running")
    halting = run_farmer([str(tasks), "-n", "1", "--halt", "now,fail=1"], env={"FAIL": "1"},
                         timeout=60)
    assert halting.returncode == 5, halting.stdout + halting.stderr
    assert "--halt now,fail=1 reached at task" in halting.stdout
    assert "stopping the running tasks" in halting.stdout
    out, err = other.communicate(timeout=60)
    assert other.returncode == 5, out + err  # its running tasks stopped, put back
    assert "stopping the running tasks" in out and "halted, work left" in out
    no_traceback(halting.stderr, err)

    failed = ids(workdir / "failed")
    assert len(failed) == 1 and ids(workdir / "finished") == []  # halted at that failure
    assert not set(failed) & _started(tmp_path)  # the other farmer's tasks did not fail
    assert sorted(ids(workdir / "toprocess") + failed) == list(range(12))  # the rest pending
    stopped = [line.split("\t")[0] for line in (workdir / "joblog").read_text().splitlines()
               if "\tstopped\t" in line]
    assert sorted(int(task) for task in stopped) == sorted(_started(tmp_path))
    assert verify_problems(workdir) == []
    record = json.loads((workdir / "halted").read_text())
    assert (record["when"], record["rule"], record["task"], record["failed"]) == (
        "now", "now,fail=1", failed[0], 1)

    # A farmer started on the halted workdir says so, runs nothing, changes no state file.
    before = {name: (workdir / name).read_bytes() for name in ("toprocess", "failed", "claims")}
    refused = run_farmer([str(tasks)])
    assert refused.returncode == 5
    assert error_lines(refused.stderr) == [
        f"farmer: error: {workdir}/halted: halted at {_when(record)} by {record['farmer']}: "
        f"--halt now,fail=1 reached at task {record['task']} ({record['failed']} of "
        f"{record['ended']} task(s) failed); fix the cause, then remove {workdir}/halted to "
        "farm on (with --requeue-failed to run the failed tasks again)"]
    assert {name: (workdir / name).read_bytes() for name in before} == before
    status = run_farmer([str(tasks), "--status", "--json"])
    assert status.returncode == 5
    assert json.loads(status.stdout)["halted"].startswith(f"halted at {_when(record)} by ")

    (workdir / "halted").unlink()  # the cause fixed: go on
    (tmp_path / "go").touch()
    done = run_farmer([str(tasks), "--requeue-failed"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(ids(workdir / "finished")) == list(range(12))


def _when(record: dict) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["at"]))


def test_halt_soon_lets_the_running_tasks_finish_and_starts_none(tmp_path: Path) -> None:
    go = tmp_path / "go"
    (tmp_path / "started").mkdir()
    # Task 0 fails a second after its start: the other worker runs a task by then.
    tasks = write_tasklist(tmp_path / "t", ["sleep 1; exit 3"] + [
        f"touch {tmp_path}/started/$PROC_NUMBER; while [ ! -e {go} ]; do sleep 0.05; done"] * 9)
    workdir = tmp_path / "t_workdir"
    farmer = start_farmer([str(tasks), "-n", "2", "--halt", "soon,fail=1"])
    wait_for(lambda: (workdir / "halted").exists(), what="the halt")
    wait_for(lambda: farmer.stdout is not None
             and "letting the running tasks finish" in farmer.stdout.readline(),
             what="the farmer's halt line")
    running = _started(tmp_path)
    assert running
    go.touch()
    out, err = farmer.communicate(timeout=60)
    assert farmer.returncode == 5, out + err
    assert _started(tmp_path) == running  # none started after the halt
    assert ids(workdir / "failed") == [0]
    assert sorted(ids(workdir / "finished")) == sorted(running)  # they finished
    assert sorted(ids(workdir / "toprocess")) == sorted(set(range(1, 10)) - running)
    assert "\tstopped\t" not in (workdir / "joblog").read_text()
