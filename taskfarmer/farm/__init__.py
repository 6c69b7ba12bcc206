"""The farmer's processes: the main loop (:mod:`.farmer`) and its workers (:mod:`.worker`)."""

from .display import Display, Snapshot
from .farmer import Farm, FarmConfig, FarmReport

__all__ = ["Display", "Farm", "FarmConfig", "FarmReport", "Snapshot"]
