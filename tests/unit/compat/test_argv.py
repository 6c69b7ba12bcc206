"""PyTaskFarmer command lines: ``-v`` values and argparse-style abbreviations."""

from __future__ import annotations

import pytest

from taskfarmer.compat.argv import translate
from taskfarmer.errors import UsageError

KNOWN = ["--proc", "--timeout", "--workdir", "--verbose", "--runner", "--tasklist", "--lease",
         "--retries", "--task-timeout", "--requeue-failed", "--lock", "--list-runners",
         "--list-tasklists", "--version", "--help"]


def test_pytaskfarmer_verbose_values() -> None:
    assert translate(["t", "-v", "True"], KNOWN) == ["t", "--verbose"]
    assert translate(["t", "--verbose", "0", "-n", "2"], KNOWN) == ["t", "-n", "2"]
    assert translate(["-v", "tasks.txt"], KNOWN) == ["--verbose", "tasks.txt"]
    assert translate(["t", "-v", "3"], KNOWN) == ["t", "--verbose"]  # PyTaskFarmer's VERB
    assert translate(["-v", "./3"], KNOWN) == ["--verbose", "./3"]
    assert translate(["--verbose=True", "t"], KNOWN) == ["--verbose", "t"]
    assert translate(["--verbose=0", "t"], KNOWN) == ["t"]
    # As pytaskfarmer.py, -v always takes a value, whatever it is (argparse did).
    assert translate(["-v", "yes please", "t"], KNOWN, True) == ["--verbose", "t"]
    assert translate(["-v", "tasks.txt", "t"], KNOWN, True) == ["--verbose", "t"]
    assert translate(["-vFalse", "t"], KNOWN, True) == ["t"]
    assert translate(["-v1", "t"], KNOWN, True) == ["--verbose", "t"]
    assert translate(["t", "--", "-v", "1"], KNOWN, True) == ["t", "--", "-v", "1"]


def test_argparse_style_abbreviations() -> None:
    assert translate(["--pro", "4", "--work", "w", "t"], KNOWN) == [
        "--proc", "4", "--workdir", "w", "t"]
    assert translate(["--pro=4", "--ti=9", "t"], KNOWN) == ["--proc=4", "--timeout=9", "t"]
    # Unambiguous in PyTaskFarmer stays so, though ours has more options.
    assert translate(["--ver", "1", "--task", "x", "t"], KNOWN, True) == [
        "--verbose", "--tasklist", "x", "t"]
    assert translate(["--req", "t"], KNOWN) == ["--requeue-failed", "t"]
    assert translate(["--nope", "t"], KNOWN) == ["--nope", "t"]  # click reports it
    with pytest.raises(UsageError, match="--t: ambiguous option: could be --tasklist, "
                                         "--timeout"):
        translate(["--t", "1", "t"], KNOWN)
    with pytest.raises(UsageError, match="could be --list-runners, --list-tasklists"):
        translate(["--list"], KNOWN)
