"""Devices and CPUs per worker slot: ``--gpus-per-task`` and ``--cpus-per-task``.

:func:`discover_devices` finds the node's GPUs (the farmer's ``CUDA_VISIBLE_DEVICES`` or
``ROCR_VISIBLE_DEVICES``, else SLURM's ``SLURM_STEP_GPUS``, ``SLURM_JOB_GPUS`` or
``GPU_DEVICE_ORDINAL``, else ``nvidia-smi -L`` or ``rocm-smi --showid``); :func:`plan_slots`
splits them, and the CPUs of the farmer's affinity mask, into disjoint sets, one per worker
slot, and settles ``--proc``. A worker applies its slot's :class:`SlotResources`: it pins
itself (and so every task it starts) to the slot's CPUs, and each task gets the slot's
environment (:meth:`SlotResources.environment`): ``TASKFARMER_SLOT`` always, the device
variables of the vendor, ``OMP_NUM_THREADS`` when CPUs are assigned and the user did not set it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import ConfigError

NVIDIA = "nvidia"
AMD = "amd"
#: Devices SLURM named without saying whose: their tasks get every vendor's variable.
ANY = "any"

#: The variables that select a task's devices, per vendor. HIP applies ``CUDA_VISIBLE_DEVICES``
#: on top of ``ROCR_VISIBLE_DEVICES`` (indices into the devices ROCr left), so AMD tasks get
#: only ``ROCR_VISIBLE_DEVICES``; for devices of unknown vendor (SLURM's variables without
#: ``CUDA_``/``ROCR_VISIBLE_DEVICES``) the NVIDIA, Intel (Level Zero) and OpenCL ones.
DEVICE_VARIABLES: dict[str, tuple[str, ...]] = {
    NVIDIA: ("CUDA_VISIBLE_DEVICES",),
    AMD: ("ROCR_VISIBLE_DEVICES",),
    ANY: ("CUDA_VISIBLE_DEVICES", "ZE_AFFINITY_MASK", "GPU_DEVICE_ORDINAL"),
}

#: Where devices are looked for, in order: (variable, vendor).
_VARIABLES = (("CUDA_VISIBLE_DEVICES", NVIDIA), ("ROCR_VISIBLE_DEVICES", AMD),
              ("SLURM_STEP_GPUS", ANY), ("SLURM_JOB_GPUS", ANY), ("GPU_DEVICE_ORDINAL", ANY))
#: Then these commands: (argument vector, pattern whose group 1 is a device index, vendor).
_COMMANDS = ((("nvidia-smi", "-L"), re.compile(r"^GPU (\d+):", re.MULTILINE), NVIDIA),
             (("rocm-smi", "--showid"), re.compile(r"^GPU\[(\d+)\]", re.MULTILINE), AMD))
#: What SLURM puts in a device variable when the job has no devices.
_NO_DEVICES = {"", "NoDevFiles", "none", "None"}
#: Seconds a device-listing command may take.
COMMAND_TIMEOUT = 20.0

CommandOutput = Callable[[Sequence[str]], Optional[str]]


@dataclass(frozen=True)
class Devices:
    """The GPUs a farmer may hand out.

    Attributes:
        ids: device indices or UUIDs, as the source wrote them.
        vendor: :data:`NVIDIA`, :data:`AMD` or :data:`ANY`.
        source: where they were found (a variable name or a command), for messages.
    """

    ids: tuple[str, ...]
    vendor: str
    source: str


@dataclass(frozen=True)
class SlotResources:
    """What one worker slot owns.

    Attributes:
        slot: the worker slot, 0..proc-1 (``TASKFARMER_SLOT``).
        devices: the slot's device ids (empty without ``--gpus-per-task``).
        vendor: the devices' vendor (selects the variables set).
        cpus: the slot's CPUs (empty without ``--cpus-per-task``).
    """

    slot: int
    devices: tuple[str, ...] = ()
    vendor: str = NVIDIA
    cpus: tuple[int, ...] = ()

    def device_variables(self) -> dict[str, str]:
        """The variables that select the slot's devices (none without devices)."""
        if not self.devices:
            return {}
        return {name: ",".join(self.devices) for name in DEVICE_VARIABLES[self.vendor]}

    def variables(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The variables a task of this slot gets on top of ``environ``."""
        added = {"TASKFARMER_SLOT": str(self.slot), **self.device_variables()}
        if self.cpus and "OMP_NUM_THREADS" not in environ:
            added["OMP_NUM_THREADS"] = str(len(self.cpus))
        return added

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``environ`` with :meth:`variables` set."""
        return {**environ, **self.variables(environ)}


def _split(value: str) -> tuple[str, ...]:
    """Device ids of a variable: comma-separated; SLURM's "no devices" markers are none."""
    if value.strip() in _NO_DEVICES:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


def command_output(argv: Sequence[str]) -> str | None:
    """The standard output of ``argv``, or None if it is missing, fails or hangs."""
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def discover_devices(environ: Mapping[str, str],
                     run: CommandOutput = command_output) -> Devices:
    """The node's GPUs, from the first source that is present (see the module docstring).

    A set variable decides, even if it names no device (SLURM gave the job none): no
    device commands run then.
    """
    for name, vendor in _VARIABLES:
        if name in environ:
            return Devices(_split(environ[name]), vendor, name)
    for argv, pattern, vendor in _COMMANDS:
        output = run(argv)
        if output is not None:
            ids = tuple(dict.fromkeys(pattern.findall(output)))  # ordered, no repeats
            return Devices(ids, vendor, " ".join(argv))
    return Devices((), NVIDIA, "no CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES, SLURM GPU "
                               "variable, nvidia-smi or rocm-smi")


def _sets(items: Sequence, size: int) -> list[tuple]:
    """Consecutive disjoint groups of ``size`` items (the rest is left over)."""
    return [tuple(items[i:i + size]) for i in range(0, len(items) - size + 1, size)]


def plan_slots(proc: int | None, default_proc: int, gpus_per_task: int | None = None,
               devices: Devices | None = None, cpus_per_task: int | None = None,
               cpus: Sequence[int] = ()) -> list[SlotResources]:
    """One :class:`SlotResources` per worker slot; their number is ``--proc``.

    ``--proc`` defaults to the number of device sets and/or CPU sets (the smaller), else to
    ``default_proc``. Raises :class:`ConfigError` naming the option for a request that
    cannot be met: more devices or CPUs per task than there are, or a ``--proc`` larger
    than the number of sets.
    """
    device_sets: list[tuple] | None = None
    cpu_sets: list[tuple] | None = None
    limits = []
    if gpus_per_task is not None:
        found = devices.ids if devices is not None else ()
        where = devices.source if devices is not None else "nowhere"
        if len(found) < gpus_per_task:
            have = f"{len(found)} ({','.join(found)} from {where})" if found else \
                f"none ({where})"
            raise ConfigError(f"{gpus_per_task} GPU(s) per task, but this node has {have}",
                              option="--gpus-per-task")
        device_sets = _sets(found, gpus_per_task)
        limits.append((len(device_sets), f"--gpus-per-task {gpus_per_task} with "
                                         f"{len(found)} GPU(s) from {where}"))
    if cpus_per_task is not None:
        if len(cpus) < cpus_per_task:
            raise ConfigError(f"{cpus_per_task} CPU(s) per task, but this process may use "
                              f"{len(cpus)}", option="--cpus-per-task")
        cpu_sets = _sets(sorted(cpus), cpus_per_task)
        limits.append((len(cpu_sets), f"--cpus-per-task {cpus_per_task} with "
                                      f"{len(cpus)} CPU(s)"))
    if proc is None:
        proc = min(count for count, _ in limits) if limits else default_proc
    for count, what in limits:
        if proc > count:
            raise ConfigError(f"{proc} worker(s), but {what} make only {count} set(s)",
                              option="--proc")
    vendor = devices.vendor if devices is not None else NVIDIA
    return [SlotResources(slot,
                          devices=device_sets[slot] if device_sets is not None else (),
                          vendor=vendor,
                          cpus=cpu_sets[slot] if cpu_sets is not None else ())
            for slot in range(proc)]


def pin(resources: SlotResources) -> None:
    """Restrict this process, and so every process it starts, to the slot's CPUs (if any)."""
    if resources.cpus:
        os.sched_setaffinity(0, resources.cpus)
