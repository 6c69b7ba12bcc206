"""A tmpfs mount for one test: a full disk (``size=``) or a file-count quota (``nr_inodes=``).

``mount -o remount`` grows it in place, as freeing space or raising a quota would. Mounting
needs root (the test machine and CI run as root); the ``tmpfs`` fixture (conftest.py) skips
elsewhere, and fails under CI.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


class Tmpfs:
    """A tmpfs mounted at ``path`` for one test; :meth:`remount` changes its limits."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mount(self, options: str) -> None:
        """Mount with ``options`` (``size=200k``, ``nr_inodes=60``, ``ro``...)."""
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)],
                       check=True, capture_output=True)

    def remount(self, options: str) -> None:
        """Change the limits in place (files kept): the disk was cleaned, the quota raised."""
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True,
                       capture_output=True)

    def unmount(self) -> None:
        """Unmount (lazily: a farmer killed by a failed test may still hold files)."""
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
