"""Kept for runner classes written against earlier releases: ``SlotResources`` is
:class:`taskfarmer.runners.SlotResources`."""

from .hpc.resources import SlotResources

__all__ = ["SlotResources"]
