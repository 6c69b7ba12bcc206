"""Compaction: at rest, ``toprocess`` holds exactly the tasks left to do, in task order."""

from __future__ import annotations

import os
from typing import BinaryIO

from .files import StateFiles
from .ledger import Ledger
from .lines import LINE_ID, READ_CHUNK, copy, lines, parse_task_line


class Compactor:
    """Cuts ``toprocess`` down to its untaken tail and empties ``claims``."""

    def __init__(self, files: StateFiles, ledger: Ledger) -> None:
        self.files = files
        self.ledger = ledger

    def compact(self) -> None:
        """*locked* Replace ``toprocess`` by its untaken tail, in task-ID order, and empty
        ``claims``.

        Put-back tasks were appended at the end; sorting them back among the others restores
        the tasklist's order (users put long tasks first). The untaken part is a sorted run
        followed by an appended tail: only the tail is sorted in memory, and it is merged into
        the run by binary search and byte copies, so compacting a million lines takes a
        fraction of a second (it runs when a farmer stops).

        Two files change, so the order matters: (1) write ``toprocess.new`` and fsync it;
        (2) append ``- compact`` to ``claims`` — the commit point; (3) rename ``toprocess.new``
        over ``toprocess`` (atomic); (4) truncate ``claims``. A crash before (2) leaves an
        unused ``toprocess.new``; after it, whoever reads the cursor next sees the mark and
        finishes (3) and (4) (:meth:`Ledger.finish_compaction`).
        """
        toprocess = self.files.toprocess
        cursor = self.ledger.cursor()
        size = self.files.size(toprocess)
        run_end = self._sorted_run_end(cursor, size)
        tail = sorted((parse_task_line(line, toprocess, offset).id, line)
                      for offset, line in lines(toprocess, start=run_end))
        with open(toprocess, "rb") as source, open(self.files.toprocess_new, "wb") as out:
            position = cursor
            for task_id, line in tail:
                insert = self._insertion_point(source, position, run_end, task_id)
                copy(source, out, position, insert)
                out.write(line + b"\n")
                position = insert
            copy(source, out, position, run_end)
            out.flush()
            os.fsync(out.fileno())
        self.ledger.commit_compaction()

    def _sorted_run_end(self, start: int, size: int) -> int:
        """End of the run of lines from ``start`` whose IDs strictly increase."""
        previous = -1
        offset = start
        with open(self.files.toprocess, "rb") as source:
            source.seek(start)
            carry = b""
            while offset < size:
                block = carry + source.read(min(READ_CHUNK * 16, size - offset - len(carry)))
                cut = block.rfind(b"\n") + 1
                if cut == 0:
                    return size  # no complete line left
                complete, carry = block[:cut], block[cut:]
                found = [int(x) for x in LINE_ID.findall(complete)]
                if (len(found) != complete.count(b"\n") or (found and found[0] <= previous)
                        or found != sorted(set(found))):
                    return offset + self._first_disorder(complete, previous)
                if found:
                    previous = found[-1]
                offset += cut
        return offset

    @staticmethod
    def _first_disorder(block: bytes, previous: int) -> int:
        """Offset in ``block`` of the first line that is malformed or not above ``previous``."""
        position = 0
        for line in block.split(b"\n")[:-1]:
            head = line.partition(b" ")[0]
            if not head.isdigit() or int(head) <= previous:
                return position
            previous = int(head)
            position += len(line) + 1
        return position

    @staticmethod
    def _insertion_point(source: BinaryIO, low: int, high: int, task_id: int) -> int:
        """Byte offset of the first line in ``[low, high)`` (a sorted run) with ID > task_id."""
        while low < high:
            middle = (low + high) // 2
            source.seek(middle)
            if middle > low:
                source.readline()  # to the start of the next line
            line_start = source.tell()
            if line_start >= high:
                high = middle
                continue
            head = source.readline().partition(b" ")[0]
            if int(head) > task_id:
                high = line_start
            else:
                low = source.tell()
        return low
