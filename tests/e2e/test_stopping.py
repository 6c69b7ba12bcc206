"""Stopping through the real farmer: held results recorded while the next task runs, grace for
the children of a stopped task (the worker's rules driven directly:
tests/unit/farm/test_worker.py)."""

from __future__ import annotations

import signal
from pathlib import Path

from helpers.farmer import ids, start_farmer, stop, wait_for, write_tasklist


def test_held_results_are_recorded_while_the_next_task_runs(tmp_path: Path) -> None:
    tasks = write_tasklist(tmp_path / "t", ["true", f"sleep 300 # {tmp_path}"])
    farmer = start_farmer([str(tasks), "-n", "1"])
    workdir = tmp_path / "t_workdir"
    # Task 0 must be recorded while task 1 (300 s) runs, not after it.
    wait_for(lambda: ids(workdir / "finished") == [0], timeout=60, what="task 0 recorded")
    result = stop(farmer, signal.SIGUSR1)
    assert result.returncode == 3
    assert ids(workdir / "toprocess") == [1]


def test_children_of_a_stopped_task_get_the_grace_period(tmp_path: Path) -> None:
    """The task's shell dies at once on SIGTERM; its child's cleanup still gets to run."""
    cleaned = tmp_path / "cleaned"
    started = tmp_path / "started"
    inner = (f"trap 'sleep 0.5; echo yes > {cleaned}; exit 0' TERM; touch {started}; "
             "while :; do sleep 0.1; done")
    tasks = write_tasklist(tmp_path / "t", [f'sh -c "{inner}"; echo outer done'])
    farmer = start_farmer([str(tasks), "-n", "1"])
    wait_for(started.exists, what="inner shell running")
    result = stop(farmer, signal.SIGUSR1)
    assert result.returncode == 3
    assert cleaned.read_text() == "yes\n"
    assert ids(tmp_path / "t_workdir" / "toprocess") == [0]
