"""Devices and CPUs per worker slot (``--gpus-per-task``, ``--cpus-per-task``, TASKFARMER_SLOT).

The unit tests feed :mod:`taskfarmer.hpc.resources` environments and command outputs
(tests/unit/hpc/test_resources.py); these farmer tests run real tasks that record what they see
(``TASKFARMER_SLOT``, the device variables, ``OMP_NUM_THREADS`` and ``Cpus_allowed_list`` of
their ``/proc/self/status``) and wait until every worker slot runs one, so the sets compared are
those of tasks running at once. There are no GPUs here: ``CUDA_VISIBLE_DEVICES`` or a stand-in
``nvidia-smi`` on ``PATH`` says which exist.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.farmer import run_farmer, write_tasklist

#: One task: record slot, devices, OMP_NUM_THREADS and CPUs, then wait until $2 tasks have
#: recorded theirs (so all slots run at once; exit 1 after ~30 s if they never do).
RECORD_SH = """\
cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)
echo "$TASKFARMER_SLOT ${CUDA_VISIBLE_DEVICES-unset} ${OMP_NUM_THREADS-unset} $cpus" \
    > "$1/runs/$PROC_NUMBER.tmp"
mv "$1/runs/$PROC_NUMBER.tmp" "$1/runs/$PROC_NUMBER"
i=0
while [ "$(ls "$1/runs" | grep -vc tmp)" -lt "$2" ]; do
    i=$((i + 1)); [ "$i" -lt 1500 ] || exit 1
    sleep 0.02
done
"""


def _campaign(tmp_path: Path, tasks: int, together: int) -> Path:
    (tmp_path / "runs").mkdir()
    (tmp_path / "record.sh").write_text(RECORD_SH)
    return write_tasklist(tmp_path / "tasks.txt",
                          [f"sh {tmp_path}/record.sh {tmp_path} {together} {i}"
                           for i in range(tasks)])


def _records(tmp_path: Path) -> dict[int, list[str]]:
    return {int(p.name): p.read_text().split() for p in (tmp_path / "runs").iterdir()
            if not p.name.endswith(".tmp")}


@pytest.fixture
def standin_nvidia_smi(tmp_path: Path) -> dict[str, str]:
    """PATH with a stand-in ``nvidia-smi`` that lists 4 GPUs; no CUDA_VISIBLE_DEVICES."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    lines = "".join(f"GPU {i}: Stand-in GPU (UUID: GPU-{i}{i}{i})\\n" for i in range(4))
    script.write_text(f'#!/bin/sh\n[ "$1" = -L ] || exit 9\nprintf "{lines}"\n')
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize("per_task, sets", [(1, 4), (2, 2)])
def test_farmer_gives_each_slot_its_own_gpus(tmp_path: Path, per_task: int, sets: int) -> None:
    tasklist = _campaign(tmp_path, sets, together=sets)
    result = run_farmer([str(tasklist), "--gpus-per-task", str(per_task)],
                        env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert result.returncode == 0, result.stderr
    records = _records(tmp_path)
    assert len(records) == sets  # all ran at once: --proc is the number of sets
    slots = sorted(int(r[0]) for r in records.values())
    assert slots == list(range(sets))
    device_sets = [r[1].split(",") for r in records.values()]
    assert all(len(s) == per_task for s in device_sets)
    assert sorted(d for s in device_sets for d in s) == ["0", "1", "2", "3"]  # disjoint
    assert all(r[2] == "unset" for r in records.values())  # no --cpus-per-task: no OMP


def test_farmer_finds_gpus_with_nvidia_smi(tmp_path: Path, standin_nvidia_smi: dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("ROCR_VISIBLE_DEVICES", raising=False)
    tasklist = _campaign(tmp_path, 6, together=2)
    result = run_farmer([str(tasklist), "--gpus-per-task", "2"], env=standin_nvidia_smi)
    assert result.returncode == 0, result.stderr
    records = _records(tmp_path)
    assert len(records) == 6
    by_slot: dict[str, set] = {}
    for slot, devices, _, _ in records.values():
        by_slot.setdefault(slot, set()).add(devices)
    assert by_slot == {"0": {"0,1"}, "1": {"2,3"}}  # a slot keeps its set, task after task


@pytest.mark.parametrize("args, env, words", [
    (["--gpus-per-task", "5"], {"CUDA_VISIBLE_DEVICES": "0,1,2,3"},
     "--gpus-per-task: 5 GPU(s) per task, but this node has 4"),
    (["--gpus-per-task", "1", "--proc", "5"], {"CUDA_VISIBLE_DEVICES": "0,1,2,3"},
     "--proc: 5 worker(s), but --gpus-per-task 1 with 4 GPU(s) from CUDA_VISIBLE_DEVICES"),
    (["--gpus-per-task", "1"], {"CUDA_VISIBLE_DEVICES": ""}, "has none (CUDA_VISIBLE_DEVICES)"),
    (["--cpus-per-task", str(len(os.sched_getaffinity(0)) + 1)], {}, "--cpus-per-task: "),
])
def test_farmer_rejects_impossible_requests(tmp_path: Path, args: list[str],
                                            env: dict[str, str], words: str) -> None:
    tasklist = write_tasklist(tmp_path / "tasks.txt", ["true"])
    result = run_farmer([str(tasklist), *args], env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("farmer: error: ") and words in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "tasks.txt_workdir").exists()


def _cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus += range(int(first), int(last or first) + 1)
    return cpus


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_farmer_pins_each_slot_to_its_own_cpus(tmp_path: Path) -> None:
    tasklist = _campaign(tmp_path, 4, together=2)
    result = run_farmer([str(tasklist), "--cpus-per-task", "1", "--proc", "2"])
    assert result.returncode == 0, result.stderr
    records = _records(tmp_path)
    mine = os.sched_getaffinity(0)
    by_slot: dict[str, set] = {}
    for slot, _, omp, cpus in records.values():
        assert omp == "1"
        assert len(_cpu_list(cpus)) == 1 and set(_cpu_list(cpus)) <= mine
        by_slot.setdefault(slot, set()).add(cpus)
    assert len(by_slot) == 2 and all(len(c) == 1 for c in by_slot.values())
    assert by_slot["0"] != by_slot["1"]  # two CPUs, one each, at the same time


def test_farmer_cpus_default_proc_and_user_omp(tmp_path: Path) -> None:
    mine = sorted(os.sched_getaffinity(0))
    tasklist = _campaign(tmp_path, 1, together=1)
    result = run_farmer([str(tasklist), "--cpus-per-task", str(len(mine))],
                        env={"OMP_NUM_THREADS": "7"})
    assert result.returncode == 0, result.stderr
    (record,) = _records(tmp_path).values()
    assert record[0] == "0" and record[2] == "7"  # the user's OMP_NUM_THREADS stays
    assert _cpu_list(record[3]) == mine  # one slot owns them all


def test_every_task_gets_its_slot(tmp_path: Path) -> None:
    tasklist = _campaign(tmp_path, 3, together=3)
    result = run_farmer([str(tasklist), "--proc", "3"])
    assert result.returncode == 0, result.stderr
    assert sorted(r[0] for r in _records(tmp_path).values()) == ["0", "1", "2"]
