"""The job log, ``WORKDIR/joblog``: one tab-separated line per execution of a task.

GNU parallel's ``--joblog`` columns, plus ours, after a header line (:data:`COLUMNS`):

``id``
    the task ID.
``attempt``
    which execution of the task this was: 1, then 2, ... after failed attempts (``--retries``).
``node``, ``farmer``, ``slot``
    where it ran: the node, the farmer (the prefix of its lease names) and the worker slot.
``start``
    when it started, milliseconds since the epoch (the worker's clock).
``runtime``
    how long it ran, seconds with three decimals.
``exit``, ``signal``
    its exit code, and the signal that killed it (0 if none; then ``exit`` is 128 + signal,
    the shell's convention).
``outcome``
    what became of it: ``finished``, ``failed``, ``timed out`` (failed by ``--task-timeout``),
    ``out of memory`` (failed: the OOM killer killed it while it ran alone), ``retry``
    (failed, back in ``toprocess`` for another attempt), ``stopped`` (cut short by a stop,
    back in ``toprocess``: not an attempt), ``oom`` (killed by the OOM killer while other tasks
    ran) and ``evicted`` (killed by its farmer as memory ran short), both back in ``toprocess``
    and not an attempt, ``discarded`` (its farmer's lease was taken over while it ran: the task
    went back to ``toprocess`` and the result was not recorded), ``quarantined`` (failed fast on
    a node that quarantined itself: handed back to ``toprocess``, not an attempt; see
    :mod:`taskfarmer.farm.quarantine`).
``maxrss``
    its peak memory in KiB: the largest resident set of its leader and of the children the
    leader waited for (``ru_maxrss``); 0 where unknown (no process, or a line written before
    this column existed: such lines have one column less, and a job log begun then keeps its
    old header).
``command``
    the command that ran; tabs and newlines in it are written ``\\t`` and ``\\n``.

Guarantees, and why. Each batch of lines is one ``write(2)`` to a descriptor opened
``O_APPEND``, made under the workdir lock: lines never interleave or tear. A line is written
*after* the state change it reports (recorded in ``finished``/``failed``/``attempts``, or put
back into ``toprocess``), in the same lock hold: so the joblog never claims an outcome the state
does not have. A farmer killed between the two writes leaves that one execution without a line:
the joblog is a log of the state, which alone is exactly-once. A result that was not recorded
says so (``discarded``, ``stopped``). Appending costs O(1) per execution; nothing reads the
file on the farmers' hot path (``--status`` reads its tail: :func:`read_backward`,
:func:`recent_executions`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from ..errors import FilesystemError, operation
from ..hpc.walltime import DurationSource
from ..store import append_lines

COLUMNS = ("id", "attempt", "node", "farmer", "slot", "start", "runtime", "exit", "signal",
           "outcome", "maxrss", "command")
HEADER = ("\t".join(COLUMNS) + "\n").encode()
#: Outcomes that end a task (it is in ``finished`` or ``failed``).
FINAL = ("finished", "failed", "timed out", "out of memory")
#: Block size of backward reads.
TAIL_CHUNK = 256 * 1024
#: :func:`recent_peak` looks at this many of the last lines.
PEAK_LINES = 100


@dataclass(frozen=True)
class Entry:
    """One line of the job log."""

    id: int
    attempt: int
    node: str
    farmer: str
    slot: int
    start: float  # epoch seconds
    runtime: float
    exit: int
    signal: int
    outcome: str
    command: str
    maxrss: int = 0  # KiB

    @property
    def end(self) -> float:
        """When the execution ended (epoch seconds)."""
        return self.start + self.runtime


def format_line(entry: Entry) -> bytes:
    """The job log line of ``entry`` (with its newline)."""
    command = entry.command.replace("\t", "\\t").replace("\n", "\\n")
    fields = (str(entry.id), str(entry.attempt), entry.node, entry.farmer, str(entry.slot),
              str(round(entry.start * 1000)), f"{entry.runtime:.3f}", str(entry.exit),
              str(entry.signal), entry.outcome, str(entry.maxrss), command)
    return ("\t".join(fields) + "\n").encode("utf-8", "surrogateescape")


def parse_line(line: bytes) -> Entry | None:
    """The entry of one line (without newline), with or without the ``maxrss`` column; None
    for the header or a malformed line."""
    fields = line.decode("utf-8", "replace").split("\t")
    if len(fields) == len(COLUMNS) - 1:  # written before the maxrss column existed
        fields.insert(COLUMNS.index("maxrss"), "0")
    if len(fields) != len(COLUMNS) or not fields[0].isdigit():
        return None
    try:
        return Entry(int(fields[0]), int(fields[1]), fields[2], fields[3], int(fields[4]),
                     int(fields[5]) / 1000, float(fields[6]), int(fields[7]), int(fields[8]),
                     fields[9], fields[11], int(fields[10]))
    except ValueError:
        return None


def exit_and_signal(returncode: int) -> tuple[int, int]:
    """``(exit, signal)`` columns of a ``Popen`` return code (negative: killed by a signal)."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, 0


class JobLog:
    """Appends lines to ``WORKDIR/joblog``. Each process opens its own descriptor (fork).

    ``coherent`` (a workdir shared between nodes; see "The store" in ``docs/design.md``): the
    descriptor is closed after each append, inside the lock hold, so that ``close(2)``
    writes the lines back to the server before another node appends, and the next append opens
    the file again (revalidating its size) instead of appending at a size cached long ago.
    """

    def __init__(self, path: Path, coherent: bool = False) -> None:
        self.path = path
        self.coherent = coherent
        self._fd: int | None = None
        self._pid = -1

    def append(self, entries: list[Entry]) -> None:
        """*locked* Append the lines of ``entries`` in one ``write(2)``.

        The header is written with the first line, by whoever finds the file empty: under the
        lock, so exactly once. A short write (disk full) is truncated away.
        """
        if not entries:
            return
        try:
            self._append(entries)
        finally:
            if self.coherent:
                self.close()

    def _append(self, entries: list[Entry]) -> None:
        fd = self._descriptor()
        data = b"".join(format_line(entry) for entry in entries)
        try:
            empty = os.fstat(fd).st_size == 0
        except OSError as error:
            raise FilesystemError.from_oserror(self.path, "append", error) from None
        append_lines(fd, self.path, HEADER + data if empty else data)

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as error:
                raise FilesystemError.from_oserror(self.path, "open", error) from None
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        """Close this process's descriptor."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def read_backward(path: Path, max_bytes: int) -> Iterator[Entry]:
    """Entries of the job log from the last one backwards, reading at most ``max_bytes``.

    Lines still being written (no newline yet) are skipped; so is the header.
    """
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        end = os.fstat(handle.fileno()).st_size
        position = end
        carry = b""  # the start of a line whose beginning lies before ``position``
        aligned = False  # found the newline that ends the last complete line
        while position > 0 and end - position < max_bytes:
            start = max(0, position - TAIL_CHUNK)
            block = os.pread(handle.fileno(), position - start, start) + carry
            position = start
            if not aligned:
                cut = block.rfind(b"\n")
                if cut < 0:
                    continue  # all of it belongs to a line still being written
                block, aligned = block[: cut + 1], True
            if start > 0:
                first = block.find(b"\n") + 1
                carry, block = block[:first], block[first:]
            for raw in reversed(block.split(b"\n")[:-1]):
                entry = parse_line(raw)
                if entry is not None:
                    yield entry


def recent_peak(path: Path, lines: int = PEAK_LINES) -> int:
    """The largest peak memory (bytes) among the last ``lines`` lines of the job log; 0 if
    none says one, or if it cannot be read (a hint, read before the workdir is checked: its
    errors are reported by whoever needs it) (reads a block or two from its end)."""
    try:
        return max((entry.maxrss for entry in islice(read_backward(path, TAIL), lines)),
                   default=0) * 1024
    except OSError:
        return 0


@dataclass(frozen=True)
class Recent:
    """The executions that ended within a window before now, as the job log shows them."""

    done: int  # finished, failed, timed out or out of memory
    span: float  # seconds: the window, or less if the first of them started later
    per_farmer: dict[str, int]  # executions (of any outcome) per farmer


def recent_executions(path: Path, now: float, window: float) -> Recent:
    """What ended in the last ``window`` seconds; reads only those lines (a binary search on
    the times finds the first)."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return Recent(0, 0.0, {})
    with handle:
        size = os.fstat(handle.fileno()).st_size
        begin = _first_line_after(handle, size, now - window)
        region = os.pread(handle.fileno(), size - begin, begin)
    region = region[: region.rfind(b"\n") + 1]
    if not region:
        return Recent(0, 0.0, {})
    first = parse_line(region[: region.find(b"\n")])
    span = now - max(now - window, first.start if first else now - window)
    done = sum(region.count(b"\t%s\t" % outcome.encode()) for outcome in FINAL)
    per_farmer: dict[str, int] = {}
    for line in region.split(b"\n")[:-1]:
        fields = line.split(b"\t", 4)
        if len(fields) == 5:
            farmer = fields[3].decode("utf-8", "replace")
            per_farmer[farmer] = per_farmer.get(farmer, 0) + 1
    return Recent(done, span, per_farmer)


def _first_line_after(handle: BinaryIO, size: int, when: float) -> int:
    """Offset of about the first line that ended at or after ``when`` (lines are appended in
    about the order their executions end, so a binary search comes close)."""
    low, high = 0, size
    while high - low > 4096:
        middle = (low + high) // 2
        data = os.pread(handle.fileno(), 4096, middle)
        newline = data.find(b"\n")
        end = data.find(b"\n", newline + 1)
        entry = parse_line(data[newline + 1: end]) if 0 <= newline < end else None
        if entry is None or entry.end >= when:
            high = middle
        else:
            low = middle + newline + 1
    data = os.pread(handle.fileno(), high - low + 4096, low)
    offset = low
    for line in data.split(b"\n")[:-1]:
        entry = parse_line(line)
        if entry is not None and entry.end >= when:
            return offset
        offset += len(line) + 1
    return offset


#: Bytes read from the end of ``joblog`` at first: enough for
#: :data:`~taskfarmer.hpc.walltime.KEEP` lines of up to a kilobyte each, whatever the file's size.
TAIL = 1 << 20


class JobLogTail:
    """The lines appended to ``WORKDIR/joblog`` since the last call, of at most the newest
    ``tail`` bytes.

    The job log only grows, by whole lines (one ``write(2)`` each batch, under the lock), so
    each call reads the bytes appended since the last one and keeps an incomplete last line
    for the next. The first call, and one after more than ``tail`` bytes were appended, reads
    only the last ``tail`` bytes (from the first line that starts in them): what a reader of
    the tail wants is recent.
    """

    def __init__(self, path: Path, tail: int = TAIL) -> None:
        self.path = path
        self.tail = tail
        self.offset: int | None = None

    @operation("read", lambda self: self.path)
    def new(self) -> list[Entry]:
        """The entries logged since the last call, oldest first."""
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, 2)
                offset = self.offset
                # the first call, the log replaced, or far behind: its tail only
                skip = offset is None or offset > size or size - offset > self.tail
                start = max(0, size - self.tail) if skip or offset is None else offset
                handle.seek(start)
                data = handle.read(size - start)
        except FileNotFoundError:
            return []
        if start and skip:  # from a line's start
            cut = data.find(b"\n") + 1
            start, data = start + cut, data[cut:]
        complete = data[: data.rfind(b"\n") + 1]
        self.offset = start + len(complete)
        return [entry for entry in (parse_line(line) for line in complete.splitlines())
                if entry is not None]


class JobLogDurations(DurationSource):
    """Run times of the ``finished`` executions in ``WORKDIR/joblog`` (:class:`JobLogTail`)."""

    def __init__(self, path: Path, tail: int = TAIL) -> None:
        self.lines = JobLogTail(path, tail)

    def new(self) -> list[float]:
        """Run times of the ``finished`` executions logged since the last call."""
        return [entry.runtime for entry in self.lines.new() if entry.outcome == "finished"]
