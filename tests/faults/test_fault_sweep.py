"""The fault sweep (:mod:`faultsweep`): every filesystem call site of a small farm fails once
(ENOSPC, EIO) or SIGKILLs its process; the farm stops with exit 2 (or 3) and one error line,
and reruns finish every task exactly once.

CI tries the first call of every distinct call site and a spread of others;
``TASKFARMER_FAULT_SWEEP=full`` tries every call with every fault (long: see the README).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.faultsweep import (
    FARMS,
    TASKS,
    Farm,
    Fault,
    count,
    logged,
    prepare,
    run,
    state_problems,
    sweep,
)

FULL = os.environ.get("TASKFARMER_FAULT_SWEEP", "") == "full"


@pytest.mark.parametrize("farm", FARMS, ids=[farm.name for farm in FARMS])
def test_every_call_site_fails_without_losing_a_task(tmp_path: Path, farm: Farm) -> None:
    _, outcomes = sweep(tmp_path, farm, FULL)
    bad = [outcome.describe() for outcome in outcomes if outcome.problems]
    assert not bad, f"{len(bad)} of {len(outcomes)} faults went wrong:\n" + "\n".join(bad)
    # A site the count run saw may go unreached in a faulted run (timing: a heartbeat, a
    # poll, the stop), but most must be reached.
    targeted = {outcome.fault.site for outcome in outcomes if outcome.fault.site}
    reached = {outcome.fault.site for outcome in outcomes if outcome.fault.site and outcome.hit}
    assert len(targeted - reached) <= max(3, 0.2 * len(targeted)), sorted(targeted - reached)


def test_disk_full_on_finished_stops_with_one_line_and_loses_nothing(tmp_path: Path) -> None:
    farm = FARMS[0]
    root = tmp_path / "farm"
    site = next(call.site for call in count(tmp_path / "count", farm)
                if call.op == "write" and call.site.endswith("@wd/finished"))

    prepare(root, farm)
    fault = Fault(1, "ENOSPC", site)
    result = run(root, farm, "fail", fault.k, fault.fault, site=fault.site)
    assert logged(root), "the fault did not fire"
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("farmer: error:")]
    assert errors == [f"farmer: error: {root / 'wd' / 'finished'}: cannot append: "
                      "No space left on device"], result.stderr
    assert run(root, farm).returncode == 1  # every 7th task fails
    assert not state_problems(root)
    finished = (root / "wd" / "finished").read_text()
    assert len(re.findall(r"^\d+ ", finished, re.MULTILINE)) == TASKS - TASKS // 7


def test_a_node_dying_while_a_worker_registers_leaves_no_lease_to_wait_for(
        tmp_path: Path) -> None:
    # Main process and workers SIGKILLed at once while a worker writes its lease: a lease
    # file without its owner's identity could not be proved dead, and the next farmer would
    # wait --lease (300 s) for it. The rerun must finish at once.
    farm = FARMS[0]
    site = next(call.site for call in count(tmp_path / "count", farm)
                if call.op == "write" and ":register:" in call.site)
    root = tmp_path / "farm"
    prepare(root, farm)
    run(root, farm, "killgroup", 1, site=site)
    assert logged(root), "the fault did not fire"
    assert run(root, farm, timeout=60).returncode == 1  # every 7th task fails
    assert not state_problems(root)


def test_recording_a_result_of_a_taken_over_lease_fails_anywhere_without_a_double(
        tmp_path: Path) -> None:
    """A worker's lease is taken over while its task runs (the task renames the lease to
    ``NAME.dead``, the commit point): from then on, every call site (the worker discarding
    its result and registering a new lease, the farmer finishing the takeover) fails once and
    SIGKILLs its process once; reruns record every task exactly once."""
    farm = next(farm for farm in FARMS if farm.take_over_task)
    calls, outcomes = sweep(tmp_path, farm, FULL, after=True)
    sites = {call.site for call in calls}
    assert any(":register:" in site for site in sites)  # the worker started over: discarded
    assert any(":revoke:" in site for site in sites)  # the farmer put the task back
    bad = [outcome.describe() for outcome in outcomes if outcome.problems]
    assert not bad, f"{len(bad)} of {len(outcomes)} faults went wrong:\n" + "\n".join(bad)
    reached = [outcome for outcome in outcomes if outcome.hit]
    assert len(reached) >= 0.8 * len(outcomes), [o.describe() for o in outcomes if not o.hit]


@dataclass(frozen=True)
class _SlowFarm(Farm):
    """Tasks that sleep (until ``fast`` exists) and then note that they ran."""

    def tasks(self, root: Path) -> list[str]:
        return [f"[ -e {root / 'fast'} ] || sleep 1.5; echo {task} >> {root / 'ran'}"
                for task in range(TASKS)]


def test_a_task_whose_log_descriptor_cannot_be_closed_does_not_run_on_unsupervised(
        tmp_path: Path) -> None:
    """The worker closes its copy of the task's log descriptor once the task started; when
    that fails (EIO), the worker stops, and the task, in a session of its own that no lease
    names yet, must be killed, not run on beside its re-run (the sweep caught it: the stop
    task ran on without its worker)."""
    site = next(call.site for call in count(tmp_path / "count", FARMS[0])
                if call.op == "close" and "farm.execution:run:" in call.site)
    farm = _SlowFarm("slow")
    root = tmp_path / "farm"
    prepare(root, farm)
    result = run(root, farm, "fail", 1, "EIO", site=site)
    assert result.returncode == 2, result.stderr
    (faulted,) = logged(root)
    task = int(faulted.path.rsplit("_", 1)[-1])  # wd/logs/log_ID
    deadline = time.monotonic() + 30  # until no process of the farm's tasks is left
    while any(str(root) in _cmdline(pid) for pid in os.listdir("/proc") if pid.isdigit()):
        assert time.monotonic() < deadline, "the tasks' processes did not end"
        time.sleep(0.05)
    ran = (root / "ran").read_text().split() if (root / "ran").exists() else []
    assert str(task) not in ran  # killed: it never got to its end
    (root / "fast").touch()
    assert run(root, farm).returncode == 0
    assert not state_problems(root)
    assert sorted(map(int, (root / "ran").read_text().split())) == list(range(TASKS))


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
