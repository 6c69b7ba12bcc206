"""Kept for runner classes written against earlier releases: use :mod:`taskfarmer.ini`."""

from .ini import flag, words

__all__ = ["flag", "words"]
