"""PyTaskFarmer's command line, translated into ours before click parses it.

``pytaskfarmer.py`` parsed its arguments with :mod:`argparse`, so job scripts may use what
argparse accepts and click does not:

* unambiguous prefixes of long options (``--pro 8``, ``--work DIR``, ``--verb=1``). A prefix
  is first matched against PyTaskFarmer's own options, so what was unambiguous there still is
  (``--ver`` is ``--verbose``, not ``--version``; ``--task`` is ``--tasklist``);
* ``--verbose VALUE`` / ``-v VALUE`` / ``-vVALUE`` / ``--verbose=VALUE``: PyTaskFarmer's
  verbose option took a value. A false word (``0``, ``false``, ``no``, ``off``, empty) leaves
  verbose output off, anything else turns it on.

As ``farmer``, ``-v`` is a flag: a following argument is taken as its value only if it is a
true or false word or a number (``farmer t.txt -v 3``; ``farmer -v tasks.txt`` keeps its
tasklist, and a tasklist named ``3`` is given as ``./3``). As ``pytaskfarmer.py``, ``-v``
always takes the next argument, as PyTaskFarmer did.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UsageError

#: PyTaskFarmer 0.1.0's long options.
PYTASKFARMER_OPTIONS = ("--help", "--proc", "--timeout", "--workdir", "--verbose", "--runner",
                        "--tasklist")

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def expand(option: str, known: Sequence[str]) -> str:
    """The long option that ``option`` (``--name``) abbreviates, or ``option`` itself if it is
    known or abbreviates nothing (click then reports it).

    Raises:
        UsageError: it abbreviates several options.
    """
    if option in known:
        return option
    for candidates in (PYTASKFARMER_OPTIONS, known):
        matches = sorted({name for name in candidates if name.startswith(option)})
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UsageError(option, f"ambiguous option: could be {', '.join(matches)}")
    return option


def translate(argv: Sequence[str], known: Sequence[str], always_value: bool = False
              ) -> list[str]:
    """``argv`` with abbreviations expanded and verbose values turned into the flag.

    Args:
        argv: the arguments (without the program name).
        known: every long option of the command.
        always_value: ``-v`` and ``--verbose`` always take a value (``pytaskfarmer.py``).

    Raises:
        UsageError: an ambiguous abbreviation.
    """
    out: list[str] = []
    items = list(argv)
    index = 0
    while index < len(items):
        item = items[index]
        index += 1
        if item == "--":
            out.extend(items[index - 1:])
            break
        value = None
        if item.startswith("--"):
            name, equals, value = item.partition("=")
            item = expand(name, known)
            if not equals:
                value = None
            elif item != "--verbose":
                item = f"{item}={value}"
        elif always_value and item.startswith("-v") and len(item) > 2:
            item, value = "-v", item[2:]
        if item not in ("-v", "--verbose"):
            out.append(item)
            continue
        if value is None and index < len(items):
            following = items[index].lower()
            if always_value or following in _TRUE or following in _FALSE or \
                    following.isdigit():
                value = items[index]
                index += 1
        if value is None or value.strip().lower() not in _FALSE:
            out.append("--verbose")
    return out
