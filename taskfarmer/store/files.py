"""The files of a workdir, and this process's descriptors of them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Tuple

from ..errors import StateError, WorkdirError


class StateFiles:
    """Where each state file of ``workdir`` lives, and descriptors opened on demand.

    Each process opens its own descriptors (lazily, so a store survives ``fork``).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.toprocess = workdir / "toprocess"
        self.toprocess_new = workdir / "toprocess.new"
        self.claims = workdir / "claims"
        self.finished = workdir / "finished"
        self.failed = workdir / "failed"
        self.torn = workdir / "torn"
        self.attempts = workdir / "attempts"
        self.failed_requeue = workdir / "failed.requeue"
        self.leases = workdir / "leases"
        self.logs = workdir / "logs"
        self._fds: Dict[Path, Tuple[int, int]] = {}  # path -> (fd, pid that opened it)
        self._toprocess_ino = -1

    def fd(self, path: Path) -> int:
        """This process's ``O_APPEND`` read-write descriptor of ``path`` (created if missing)."""
        entry = self._fds.get(path)
        if entry is not None and entry[1] == os.getpid():
            return entry[0]
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise StateError(path, f"cannot open: {error.strerror}") from None
        self._fds[path] = (fd, os.getpid())
        return fd

    def size(self, path: Path) -> int:
        """The size of ``path`` as seen through our descriptor."""
        return os.fstat(self.fd(path)).st_size

    def forget(self, path: Path) -> None:
        """Drop (and close) this process's descriptor of ``path``, replaced or renamed away."""
        entry = self._fds.pop(path, None)
        if entry is not None and entry[1] == os.getpid():
            os.close(entry[0])

    def close(self) -> None:
        """Close this process's descriptors."""
        for fd, pid in self._fds.values():
            if pid == os.getpid():
                os.close(fd)
        self._fds.clear()

    def begin_hold(self) -> None:
        """*locked* Drop a descriptor of a ``toprocess`` that a compaction renamed away."""
        try:
            ino = os.stat(self.toprocess).st_ino
        except FileNotFoundError:
            ino = -1
        if ino != self._toprocess_ino:
            self.forget(self.toprocess)
            self._toprocess_ino = ino

    @staticmethod
    def create(path: Path) -> None:
        """Create ``path`` empty unless it exists."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as error:
            raise WorkdirError(path, f"cannot create: {error.strerror}") from None
        os.close(fd)
