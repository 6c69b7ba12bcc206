"""Recording executions: ``finished``, ``failed``, ``attempts`` and ``--requeue-failed``."""

from __future__ import annotations

import enum
import os

from ..tasks import Task
from .files import StateFiles
from .ledger import Ledger
from .lines import append, lines, parse_task_line, task_line


class Outcome(enum.Enum):
    """What recording an execution did."""

    FINISHED = "finished"
    FAILED = "failed"
    RETRY = "retry"
    DISCARDED = "discarded"


class Results:
    """Where executions end up, and how often each task has failed."""

    def __init__(self, files: StateFiles, ledger: Ledger) -> None:
        self.files = files
        self.ledger = ledger
        self._attempts: dict[int, int] = {}
        self._attempts_read = 0

    def record(self, task: Task, succeeded: bool, retries: int) -> Outcome:
        """*locked* Record how an execution of ``task`` ended.

        Success goes to ``finished``. A failure goes to ``failed`` once the task has failed
        ``retries + 1`` times; before that, the attempt is counted in ``attempts`` and the task
        goes back to the end of ``toprocess``.
        """
        files = self.files
        line = task_line(task)
        if succeeded:
            append(files.fd(files.finished), files.finished, line)
            return Outcome.FINISHED
        attempt = self.attempt_count(task.id) + 1
        append(files.fd(files.attempts), files.attempts, b"%d %d\n" % (task.id, attempt))
        self._attempts[task.id] = attempt
        self._attempts_read = files.size(files.attempts)
        if attempt <= retries:
            append(files.fd(files.toprocess), files.toprocess, line)
            return Outcome.RETRY
        append(files.fd(files.failed), files.failed, line)
        return Outcome.FAILED

    def attempt_count(self, task_id: int) -> int:
        """*locked* How many times ``task_id`` has failed (reads only new ``attempts`` lines)."""
        fd = self.files.fd(self.files.attempts)
        size = os.fstat(fd).st_size
        if size < self._attempts_read:  # replaced: read again from the start
            self._attempts.clear()
            self._attempts_read = 0
        if size > self._attempts_read:
            data = os.pread(fd, size - self._attempts_read, self._attempts_read)
            complete = data[: data.rfind(b"\n") + 1]
            for line in complete.splitlines():
                head, _, count = line.partition(b" ")
                if head.isdigit() and count.isdigit():
                    self._attempts[int(head)] = int(count)
            self._attempts_read += len(complete)
        return self._attempts.get(task_id, 0)

    def requeue_failed(self) -> int:
        """*locked* Put every ``failed`` task back into ``toprocess`` with fresh retries.

        (1) ``failed`` is renamed to ``failed.requeue`` — atomic, the commit point; (2) an empty
        ``failed`` is created; (3) the tasks are appended to ``toprocess`` and their attempt
        counts reset; (4) ``failed.requeue`` is removed. After a crash, the next farmer's
        repair finds ``failed.requeue`` and redoes (2)-(4) (:meth:`finish_requeue_failed`),
        skipping tasks already back in ``toprocess``. Returns the number of tasks put back.
        """
        # Every line is checked first: a malformed one leaves ``failed`` as it is, to be
        # corrected there, rather than commit a requeue that no later run could finish.
        for offset, line in lines(self.files.failed):
            parse_task_line(line, self.files.failed, offset)
        try:
            os.rename(self.files.failed, self.files.failed_requeue)
        except FileNotFoundError:  # none yet (or another farmer, not locked out, was faster)
            return 0
        return self.finish_requeue_failed()

    def finish_requeue_failed(self) -> int:
        """*locked* Steps (2)-(4) of :meth:`requeue_failed`."""
        files = self.files
        files.forget(files.failed)  # ours, if any, is open on failed.requeue now
        files.create(files.failed)
        pending = self.ledger.queued_ids()
        tasks = [parse_task_line(line, files.failed_requeue, offset)
                 for offset, line in lines(files.failed_requeue)]
        tasks = [task for task in tasks if task.id not in pending]
        self.ledger.requeue(tasks)
        resets = b"".join(b"%d 0\n" % task.id for task in tasks)
        if resets:
            append(files.fd(files.attempts), files.attempts, resets)
        files.failed_requeue.unlink()
        return len(tasks)
