"""Runners: how tasks are executed (plain shell, containers ...).

The class paths of PyTaskFarmer's runners (``taskfarmer.runners.BasicRunner`` ...) import from
here, so existing runner INI files keep working.
"""

from .base import Runner
from .basic import BasicRunner

__all__ = ["BasicRunner", "Runner"]
