"""The numbers the ``farmer`` command takes, checked before anything happens.

Every numeric option is one of two kinds: a number of seconds (a finite decimal number: NaN and
infinity are refused, leaving an option out is "no limit"; at most :data:`MAX_SECONDS`) or a
whole number (a count or an ID). Each has a least value and may have a largest: ``--proc`` at
most :func:`max_proc` workers, ``--retries`` at most :data:`MAX_RETRIES`. The checks are the
pure functions :func:`seconds` and :func:`whole`, which raise ``ValueError`` with the reason;
:func:`seconds_type` and :func:`whole_type` make their click types, so a bad value is a
one-line usage error naming the option (exit 2), before the workdir is touched.
"""

from __future__ import annotations

import math
import os
from functools import partial
from typing import Callable

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


#: What leaving out an option without a default means, said with a refused infinity.
NO_LIMIT = " (leave the option out for no limit)"


def seconds(text: str, least: float, above: bool = False, unset: str = NO_LIMIT) -> float:
    """``text`` as a number of seconds: finite, at least ``least`` (more than it if
    ``above``), at most :data:`MAX_SECONDS`. ``unset``: what the messages add about leaving the
    option out (an option with a default: nothing).

    Raises:
        ValueError: it is not; the message says why.
    """
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number of seconds{unset}")
    if value < least or (above and value == least):
        raise ValueError(f"{text} must be {'more than' if above else 'at least'} {least:g}")
    if value > MAX_SECONDS:
        raise ValueError(f"{text} is more than {MAX_SECONDS} seconds (365 days), the longest "
                         f"allowed{unset}")
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


class Checked(click.ParamType):
    """A click type that checks its value with ``check`` (:func:`seconds` or :func:`whole`
    with their bounds: see :func:`seconds_type` and :func:`whole_type`)."""

    def __init__(self, name: str, check: Callable[[str], float]) -> None:
        self.name = name
        self.check = check

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return value  # a default
        try:
            return self.check(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


def seconds_type(least: float = 0.0, above: bool = False, unset: str = NO_LIMIT) -> Checked:
    """A number of seconds (:func:`seconds`)."""
    return Checked("seconds", partial(seconds, least=least, above=above, unset=unset))


def whole_type(least: int, most: int | None = None, why: str = "") -> Checked:
    """A whole number (:func:`whole`); ``most`` None: no largest."""
    return Checked("whole number", partial(whole, least=least, most=most, why=why))


def proc_type() -> Checked:
    """``--proc``'s type on this node."""
    cpus = os.cpu_count()
    return whole_type(1, max_proc(cpus), f", the most workers on a node of {cpus} CPU(s) "
                                   f"({PROC_PER_CPU} per CPU, at least {MIN_MAX_PROC})")
