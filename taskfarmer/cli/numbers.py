"""The numbers the ``farmer`` command takes, checked before anything happens.

Every numeric option is one of two kinds: a number of seconds (a finite decimal number: NaN and
infinity are refused, leaving an option out is "no limit"; at most :data:`MAX_SECONDS`) or a
whole number (a count or an ID). Each has a least value and may have a largest: ``--proc`` at
most :func:`max_proc` workers, ``--retries`` at most :data:`MAX_RETRIES`. The checks are the
pure functions :func:`seconds` and :func:`whole`, which raise ``ValueError`` with the reason;
:class:`Seconds` and :class:`Whole` are their click types, so a bad value is a one-line usage
error naming the option (exit 2), before the workdir is touched.
"""

from __future__ import annotations

import math
import os

import click

#: The longest time an option takes: a year (31,536,000 s). Leave the option out for no limit.
MAX_SECONDS = 365 * 24 * 3600
#: The most retries of a failed task.
MAX_RETRIES = 1000
#: Workers allowed per CPU of the node (``os.cpu_count()``), and at least this many on any node:
#: more than anyone runs (tasks that mostly wait), far fewer than exhaust the node's memory.
PROC_PER_CPU = 64
MIN_MAX_PROC = 256


def max_proc(cpus: int | None) -> int:
    """The largest ``--proc`` on a node of ``cpus`` CPUs (None: unknown)."""
    return max(MIN_MAX_PROC, PROC_PER_CPU * (cpus or 1))


def seconds(text: str, least: float, above: bool = False) -> float:
    """``text`` as a number of seconds: finite, at least ``least`` (more than it if
    ``above``), at most :data:`MAX_SECONDS`.

    Raises:
        ValueError: it is not; the message says why.
    """
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number of seconds (leave the option out "
                         "for no limit)")
    if value < least or (above and value == least):
        raise ValueError(f"{text} must be {'more than' if above else 'at least'} {least:g}")
    if value > MAX_SECONDS:
        raise ValueError(f"{text} is more than {MAX_SECONDS} seconds (365 days), the longest "
                         "allowed (leave the option out for no limit)")
    return value


def whole(text: str, least: int, most: int | None = None, why: str = "") -> int:
    """``text`` as a whole number from ``least`` to ``most`` (None: no largest); ``why``
    explains the largest in the message.

    Raises:
        ValueError: it is not; the message says why.
    """
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < least:
        raise ValueError(f"{value} must be at least {least}")
    if most is not None and value > most:
        raise ValueError(f"{value} is more than {most}{why}")
    return value


class Seconds(click.ParamType):
    """A number of seconds (:func:`seconds`)."""

    name = "seconds"

    def __init__(self, least: float = 0.0, above: bool = False) -> None:
        self.least = least
        self.above = above

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value  # a default
        try:
            return seconds(str(value), self.least, self.above)
        except ValueError as error:
            self.fail(str(error), param, ctx)


class Whole(click.ParamType):
    """A whole number (:func:`whole`); ``most`` None: no largest."""

    name = "whole number"

    def __init__(self, least: int, most: int | None = None, why: str = "") -> None:
        self.least = least
        self.most = most
        self.why = why

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value  # a default
        try:
            return whole(str(value), self.least, self.most, self.why)
        except ValueError as error:
            self.fail(str(error), param, ctx)


def proc_type() -> Whole:
    """``--proc``'s type on this node."""
    cpus = os.cpu_count()
    return Whole(1, max_proc(cpus), f", the most workers on a node of {cpus} CPU(s) "
                                   f"({PROC_PER_CPU} per CPU, at least {MIN_MAX_PROC})")
