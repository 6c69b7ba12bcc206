"""The farmer's own stdout and stderr, when nobody reads them any more.

A farmer's output is for people (progress, per-task lines, the last summary); the farm's record
is the workdir. So a stream that fails (``farmer -v ... | head -1`` closed the pipe: EPIPE; the
terminal hung up: EIO; the log's disk is full: ENOSPC) is given up on, and the farm goes on:
the stream's descriptor is pointed at ``/dev/null`` (what is still buffered, later lines and the
interpreter's last flush then go nowhere, quietly), one warning goes to the other stream, and
the exit code still tells how the farm ended. A stream closed before the start (``>&-``) gets
``/dev/null`` at once: otherwise the first file the farmer opens would take descriptor 1 or 2
and receive the lines meant for the terminal.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any, Callable, TextIO

STREAMS = ("stdout", "stderr")


def _null_onto(fd: int) -> None:
    """Make descriptor ``fd`` a write-and-read handle on ``/dev/null``."""
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


class GuardedStream(io.TextIOBase):
    """A text stream that gives up on its descriptor at the first failed write or flush.

    Args:
        stream: the stream wrapped (``sys.stdout`` ...).
        name: ``stdout`` or ``stderr``, for the warning.
        warn: called once with the warning when the stream is given up on.
    """

    def __init__(self, stream: TextIO, name: str, warn: Callable[[str], None]) -> None:
        super().__init__()
        self._stream = stream
        self._name = name
        self._warn = warn
        self.failure: OSError | None = None

    def _give_up(self, error: OSError) -> None:
        if self.failure is not None:
            return
        self.failure = error
        try:
            _null_onto(self._stream.fileno())
            self._stream.flush()  # the lines still buffered go to /dev/null
        except (OSError, ValueError):
            pass
        self._warn(f"farmer: warning: {self._name}: {error.strerror or error}; writing no more "
                   f"there (the farm goes on; its record is the workdir)")

    def write(self, text: str) -> int:
        """Write ``text``; a failed write gives the stream up (the text is dropped)."""
        if self.failure is None:
            try:
                return self._stream.write(text)
            except OSError as error:
                self._give_up(error)
        return len(text)

    def flush(self) -> None:
        """Flush; a failed flush gives the stream up."""
        if self.failure is None:
            try:
                self._stream.flush()
            except OSError as error:
                self._give_up(error)

    def isatty(self) -> bool:
        """Whether the wrapped stream is a terminal (False once given up)."""
        return self.failure is None and self._stream.isatty()

    def fileno(self) -> int:
        """The wrapped stream's descriptor."""
        return self._stream.fileno()

    def writable(self) -> bool:
        """Always: failed writes are dropped."""
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The wrapped stream's encoding."""
        return self._stream.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        """The wrapped stream's error handler."""
        return self._stream.errors

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_standard_streams() -> None:
    """Give ``/dev/null`` to closed standard descriptors; guard ``sys.stdout`` and ``sys.stderr``.

    For the ``farmer`` command's process (its workers inherit the guarded streams).
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:  # closed (EBADF)
            _null_onto(fd)
    for fd, name in enumerate(STREAMS, start=1):
        stream = getattr(sys, name)
        if isinstance(stream, GuardedStream):
            continue
        if stream is None:  # the interpreter started with the descriptor closed
            stream = open(fd, "w", buffering=1, closefd=False)
        other = STREAMS[2 - fd]
        setattr(sys, name, GuardedStream(stream, name, _warner(other)))


def _warner(name: str) -> Callable[[str], None]:
    """Write a warning line to ``sys.<name>`` (itself guarded) as it is at the time."""
    def warn(text: str) -> None:
        stream = getattr(sys, name)
        if stream is not None:
            stream.write(text + "\n")
            stream.flush()
    return warn
