"""Runners: how tasks are executed (plain shell, containers ...).

The class paths of PyTaskFarmer's runners (``taskfarmer.runners.BasicRunner``,
``taskfarmer.runners.ShifterRunner``) import from here, so existing runner INI files keep
working; ``DockerRunner`` and ``ApptainerRunner`` are new.
"""

from ..hpc.resources import SlotResources
from .apptainer import ApptainerRunner
from .base import Runner
from .basic import BasicRunner
from .docker import DockerRunner
from .null import NullRunner
from .shifter import ShifterRunner

__all__ = ["ApptainerRunner", "BasicRunner", "DockerRunner", "NullRunner", "Runner",
           "ShifterRunner", "SlotResources"]
