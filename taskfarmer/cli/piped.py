"""A tasklist on standard input: ``find ... | farmer - --workdir WORKDIR``.

A farm reads its list more than once (at every start, and for lines appended while it runs),
which a pipe does not allow. So standard input is first read to its end into a temporary file
(in ``$TMPDIR``, removed when the command ends), each line checked as it is read (its length
first: memory stays bounded whatever comes in), and the farm runs on that file. The workdir
keeps a copy of what was imported, as for any list: the same command with the same input
continues the farm, different input is refused like an edited list. A stop signal while
standard input is being read ends the command (exit 2) and removes the file.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import TasklistError
from ..farm.signals import STOP_SIGNALS
from ..tasks import TaskList, raw_lines

#: The TASKLIST argument that means standard input.
STDIN = Path("-")
#: How standard input is named in messages about its lines.
STDIN_NAME = Path("<stdin>")


@contextmanager
def spooled(source: BinaryIO) -> Iterator[Path]:
    """``source`` read to its end into a temporary file, whose path is yielded.

    Raises:
        TasklistError: a line of it is not a task line (too long, NUL byte, not UTF-8), or
            the farm found it different from what its workdir imported: named ``<stdin>:N``.
        KeyboardInterrupt: a stop signal came while reading.
    """
    directory = Path(tempfile.mkdtemp(prefix="farmer-stdin-"))
    try:
        path = directory / "stdin"
        _read_into(source, path)
        try:
            yield path
        except TasklistError as error:  # the farm's (a list that differs): name it <stdin>
            if error.path != path:
                raise
            raise TasklistError(STDIN_NAME, error.reason, error.line) from None
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _read_into(source: BinaryIO, path: Path) -> None:
    """Copy ``source`` to ``path``, checking each line; a stop signal (one not ignored, as
    SIGHUP under ``nohup``) raises ``KeyboardInterrupt`` meanwhile, so the file is removed."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig, handler in previous.items():
        if handler != signal.SIG_IGN:
            signal.signal(sig, signal.default_int_handler)
    try:
        with open(path, "wb") as out:
            def copied() -> Iterator[bytes]:
                for raw in raw_lines(source):
                    out.write(raw)
                    yield raw
            for _ in TaskList.parse(STDIN_NAME, copied()):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
