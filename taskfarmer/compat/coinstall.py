"""PyTaskFarmer installed in the same environment as taskfarmer.

Both distributions ship a top-level ``taskfarmer`` package, so installing one over the other
replaces files of the other: PyTaskFarmer's empty ``__init__.py``, its ``task.py`` and
``atlas.py`` replace ours, its ``runners.py`` lands next to our ``runners/`` package. Neither
works reliably after that, so the command refuses to run and says how to repair it: uninstall
PyTaskFarmer, then reinstall taskfarmer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import InstallError

#: What to do about it.
REPAIR = ("PyTaskFarmer is installed here too and both ship the package 'taskfarmer': run "
          "'pip uninstall PyTaskFarmer' then 'pip install --force-reinstall taskfarmer'")


def pytaskfarmer_file(package: Path, path: Sequence[str]) -> Path | None:
    """A file of PyTaskFarmer's next to our ``package`` directory or on ``path``, or None.

    Looks for its ``taskfarmer/runners.py`` module (we ship a ``runners`` package instead) and
    for its ``PyTaskFarmer-*.dist-info`` in every ``sys.path`` directory: a few directory
    listings, no metadata scan.
    """
    module = package / "runners.py"
    if module.exists():
        return module
    for entry in path:
        try:
            with os.scandir(entry or ".") as listing:
                for item in listing:
                    if (item.name.lower().startswith("pytaskfarmer-")
                            and item.name.endswith((".dist-info", ".egg-info"))):
                        return Path(item.path)
        except OSError:  # a zip file, a missing directory
            continue
    return None


def check(package: Path, path: Sequence[str]) -> None:
    """Raise if PyTaskFarmer's files are installed alongside.

    Raises:
        InstallError: naming the file found.
    """
    found = pytaskfarmer_file(package, path)
    if found is not None:
        raise InstallError(found, REPAIR)
