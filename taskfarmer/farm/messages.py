"""Lines from the workers to the farmer's main process, through one pipe.

A worker says what it does in plain lines (the display shows them as they are), and the error
it stops on as data: a line that starts with :data:`ERROR_MARK`, which the farmer reports as
its own error rather than show.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TaskfarmerError, as_error

#: A worker's message line that starts with this carries the error it stopped on.
ERROR_MARK = "\x01error\x01"
#: A line is cut to this many bytes: one ``write(2)`` of at most ``PIPE_BUF`` (4096) bytes to a
#: pipe is atomic, so the lines of different workers never interleave.
LINE_MAX = 4000


def worker_error(error: TaskfarmerError | OSError, where: Path) -> str:
    """The message line a worker sends when it stops on ``error``."""
    return ERROR_MARK + str(as_error(error, where))


def carried_error(line: str) -> str | None:
    """The error a worker's message ``line`` carries; None if it is a plain line."""
    if not line.startswith(ERROR_MARK):
        return None
    return line[len(ERROR_MARK):]


class MessagePipe:
    """The pipe the workers write their lines to; the farmer's main process reads it."""

    def __init__(self) -> None:
        self.reader, self._writer = os.pipe()
        os.set_blocking(self.reader, False)
        self._partial = b""

    def send(self, text: str) -> None:
        """In a worker: send one line (cut to :data:`LINE_MAX` bytes; a failure is ignored)."""
        data = (text.rstrip("\n") + "\n").encode()[:LINE_MAX]
        try:
            os.write(self._writer, data)
        except OSError:
            pass

    def close_reader(self) -> None:
        """In a worker (after fork): the reading end is the main process's."""
        os.close(self.reader)

    def lines(self) -> list[str]:
        """In the main process: the whole lines sent since; a partial last line waits."""
        while True:
            try:
                data = os.read(self.reader, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        return [line.decode(errors="replace") for line in lines]
