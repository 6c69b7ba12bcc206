"""Devices and CPUs per worker slot: :mod:`taskfarmer.hpc.resources` fed environments and command
outputs (discovery), and the slot plans made from them (the farmer runs: e2e/test_gpus_cpus.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from taskfarmer.errors import ConfigError
from taskfarmer.hpc.resources import (
    AMD,
    ANY,
    NVIDIA,
    Devices,
    SlotResources,
    discover_devices,
    plan_slots,
)

NVIDIA_SMI_L = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-11111111-2222-3333-4444-555555555555)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-22222222-2222-3333-4444-555555555555)
  MIG 1g.5gb      Device  0: (UUID: MIG-33333333-2222-3333-4444-555555555555)
GPU 2: NVIDIA A100-SXM4-40GB (UUID: GPU-44444444-2222-3333-4444-555555555555)
"""


ROCM_SMI_SHOWID = """\
============================ ROCm System Management Interface ============================
=========================================== ID ===========================================
GPU[0]		: Device Name: 		Instinct MI250X
GPU[0]		: Device ID: 		0x740c
GPU[1]		: Device Name: 		Instinct MI250X
GPU[1]		: Device ID: 		0x740c
==========================================================================================
"""


def _commands(outputs: dict[str, str | None]):
    """A stand-in for running device commands: output by program name (None: missing)."""
    calls: list[str] = []

    def run(argv: Sequence[str]) -> str | None:
        calls.append(argv[0])
        return outputs.get(argv[0])
    run.calls = calls  # type: ignore[attr-defined]
    return run


# -- discovery -------------------------------------------------------------------------------

@pytest.mark.parametrize("environ, expected", [
    ({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, Devices(("0", "1", "2", "3"), NVIDIA,
                                                  "CUDA_VISIBLE_DEVICES")),
    ({"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb", "ROCR_VISIBLE_DEVICES": "0"},
     Devices(("GPU-aa", "GPU-bb"), NVIDIA, "CUDA_VISIBLE_DEVICES")),
    ({"ROCR_VISIBLE_DEVICES": "2,3", "SLURM_JOB_GPUS": "2,3"},
     Devices(("2", "3"), AMD, "ROCR_VISIBLE_DEVICES")),
    ({"SLURM_STEP_GPUS": "1", "SLURM_JOB_GPUS": "0,1"}, Devices(("1",), ANY, "SLURM_STEP_GPUS")),
    ({"SLURM_JOB_GPUS": "0,1"}, Devices(("0", "1"), ANY, "SLURM_JOB_GPUS")),
    ({"GPU_DEVICE_ORDINAL": "4,5"}, Devices(("4", "5"), ANY, "GPU_DEVICE_ORDINAL")),
    ({"CUDA_VISIBLE_DEVICES": ""}, Devices((), NVIDIA, "CUDA_VISIBLE_DEVICES")),
    ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, Devices((), NVIDIA, "CUDA_VISIBLE_DEVICES")),
])
def test_devices_from_variables_without_running_commands(environ: dict[str, str],
                                                         expected: Devices) -> None:
    run = _commands({"nvidia-smi": NVIDIA_SMI_L})
    assert discover_devices(environ, run) == expected
    assert run.calls == []


def test_devices_from_nvidia_smi_then_rocm_smi() -> None:
    assert discover_devices({}, _commands({"nvidia-smi": NVIDIA_SMI_L})) == Devices(
        ("0", "1", "2"), NVIDIA, "nvidia-smi -L")
    run = _commands({"rocm-smi": ROCM_SMI_SHOWID})
    assert discover_devices({}, run) == Devices(("0", "1"), AMD, "rocm-smi --showid")
    assert run.calls == ["nvidia-smi", "rocm-smi"]
    nothing = discover_devices({}, _commands({}))
    assert nothing.ids == () and "nvidia-smi" in nothing.source


# -- planning --------------------------------------------------------------------------------

FOUR = Devices(("0", "1", "2", "3"), NVIDIA, "CUDA_VISIBLE_DEVICES")


def test_plan_gpus_splits_into_disjoint_sets_and_sets_proc() -> None:
    slots = plan_slots(None, 16, gpus_per_task=2, devices=FOUR)
    assert [s.devices for s in slots] == [("0", "1"), ("2", "3")]
    assert [s.slot for s in slots] == [0, 1]
    odd = plan_slots(None, 16, gpus_per_task=3, devices=FOUR)
    assert [s.devices for s in odd] == [("0", "1", "2")]
    assert len(plan_slots(3, 16, gpus_per_task=1, devices=FOUR)) == 3


def test_plan_cpus_and_both() -> None:
    cpus = [5, 1, 2, 3, 4, 0, 6, 7]
    slots = plan_slots(None, 16, cpus_per_task=3, cpus=cpus)
    assert [s.cpus for s in slots] == [(0, 1, 2), (3, 4, 5)]
    both = plan_slots(None, 16, gpus_per_task=1, devices=FOUR, cpus_per_task=2, cpus=cpus)
    assert [(s.devices, s.cpus) for s in both] == [
        (("0",), (0, 1)), (("1",), (2, 3)), (("2",), (4, 5)), (("3",), (6, 7))]
    assert [s.slot for s in plan_slots(None, 3)] == [0, 1, 2]
    assert plan_slots(2, 3) == [SlotResources(0), SlotResources(1)]


@pytest.mark.parametrize("kwargs, option, words", [
    ({"proc": None, "gpus_per_task": 5, "devices": FOUR}, "--gpus-per-task",
     "has 4 (0,1,2,3 from CUDA_VISIBLE_DEVICES)"),
    ({"proc": None, "gpus_per_task": 1, "devices": Devices((), NVIDIA, "CUDA_VISIBLE_DEVICES")},
     "--gpus-per-task", "has none (CUDA_VISIBLE_DEVICES)"),
    ({"proc": 3, "gpus_per_task": 2, "devices": FOUR}, "--proc", "only 2 set(s)"),
    ({"proc": None, "cpus_per_task": 3, "cpus": [0, 1]}, "--cpus-per-task", "may use 2"),
    ({"proc": 2, "cpus_per_task": 2, "cpus": [0, 1]}, "--proc", "only 1 set(s)"),
])
def test_plan_impossible_requests(kwargs: dict, option: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        plan_slots(default_proc=16, **kwargs)
    assert caught.value.option == option
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_slot_variables_per_vendor_and_omp() -> None:
    slot = SlotResources(3, ("2", "3"), NVIDIA, (4, 5))
    assert slot.variables({}) == {"TASKFARMER_SLOT": "3", "CUDA_VISIBLE_DEVICES": "2,3",
                                  "OMP_NUM_THREADS": "2"}
    assert slot.variables({"OMP_NUM_THREADS": "8"}) == {"TASKFARMER_SLOT": "3",
                                                        "CUDA_VISIBLE_DEVICES": "2,3"}
    assert SlotResources(0, ("1",), AMD).variables({}) == {"TASKFARMER_SLOT": "0",
                                                          "ROCR_VISIBLE_DEVICES": "1"}
    assert set(SlotResources(0, ("1",), ANY).variables({})) == {
        "TASKFARMER_SLOT", "CUDA_VISIBLE_DEVICES", "ZE_AFFINITY_MASK", "GPU_DEVICE_ORDINAL"}
    assert SlotResources(1).environment({"A": "b"}) == {"A": "b", "TASKFARMER_SLOT": "1"}
