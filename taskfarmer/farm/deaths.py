"""Workers that die while their farm is not stopping: their tasks back, the task to blame.

Something killed the worker: most often the task it ran (``kill -9 $PPID``, ``pkill python``),
else the OOM killer or a person. Its farmer takes the worker's lease over at once
(:meth:`~.takeover.Takeover.revoke_worker`), killing the task's process group if it still runs,
and puts the worker's tasks back into ``toprocess``. The rule for the task the worker was
running (:class:`Strikes`): the first death while a farmer's worker runs it is not held against
it (the cause may have been another); from the second on, each counts as a failed attempt of
that task (``--retries`` applies; its job log line says ``retry`` or ``failed``, with the
worker's exit status). No other task is blamed, and none runs again and again beside a culprit:
a worker records the results it holds before it starts a task that ran before (:mod:`.worker`).
A farm gives up after :data:`~.pool.MAX_WORKER_CRASHES` deaths not charged to a task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..hpc.groups import TaskGroup
from ..logs.joblog import Entry, JobLog, exit_and_signal
from ..store import Outcome, Revocation, StateStore
from ..tasks import Task
from .pool import MAX_WORKER_CRASHES, Exit
from .takeover import Takeover


@dataclass
class Strikes:
    """The tasks during which a worker of this farm died once."""

    struck: set[int] = field(default_factory=set)

    def blame(self, task: int | None) -> int | None:
        """The task to charge with a worker's death while it ran ``task``: None the first
        time (and when no task ran), ``task`` from the second time on."""
        if task is None:
            return None
        if task in self.struck:
            return task
        self.struck.add(task)
        return None


@dataclass(frozen=True)
class Where:
    """What a job log line names of this farm: its node and name, and ``--retries``."""

    node: str
    farmer: str
    retries: int


class WorkerDeaths:
    """The unexpected deaths of one farm's workers.

    Args:
        takeover: takes the dead worker's lease over.
        store: the state files (for the lock).
        where: this farm's node, name and ``--retries``.
        command: the command a task runs (for its job log line).
        clock: the wall clock (seconds since the epoch).
        say: shows a farmer line.
    """

    def __init__(self, takeover: Takeover, store: StateStore, where: Where,
                 command: Callable[[Task], str], clock: Callable[[], float],
                 say: Callable[[str], None]) -> None:
        self._takeover = takeover
        self._store = store
        self._where = where
        self._command = command
        self._clock = clock
        self._say = say
        self._strikes = Strikes()
        # Closed after each append (the coherent mode): a death is rare, and the main process
        # then holds no job log descriptor to close at its end.
        self._joblog = JobLog(store.files.joblog, coherent=True)
        #: Deaths charged to no task (none ran, or it was its first).
        self.uncharged = 0

    @property
    def gave_up(self) -> bool:
        """Whether the farm must stop: too many deaths no task was charged with."""
        return self.uncharged > MAX_WORKER_CRASHES

    def settle(self, gone: Exit, track: int) -> None:
        """Take over the lease of worker ``gone``, which died while the farm was not stopping
        (marked on ``track``); charge the task it ran, the second time."""
        blame = self._strikes.blame(gone.task)
        self.uncharged += blame is None
        how = f"signal {-gone.code}" if gone.code is not None and gone.code < 0 else \
            f"exit code {gone.code}"
        charged: tuple[Revocation, int] | None = None
        if not self._store.lock_failed:  # else handed over by StateStore.abandon
            with self._store.locked():
                for revocation, group in self._takeover.revoke_worker(
                        gone.slot, gone.pid, track, blame, self._where.retries):
                    if revocation.blamed is not None:
                        charged = revocation, self._log(gone, group, revocation)
        running = f" while running task {gone.task}" if gone.task is not None else ""
        if charged is None:
            again = "" if gone.task is None else \
                f" (a second such death counts as a failed attempt of task {gone.task})"
            self._say(f"worker {gone.slot} died ({how}){running}; its tasks are back in "
                      f"toprocess{again}")
            return
        revocation, attempt = charged
        if revocation.outcome is Outcome.FAILED:
            what = "it is recorded failed"
        else:
            what = f"back in toprocess (attempt {attempt} of {self._where.retries + 1})"
        self._say(f"worker {gone.slot} died ({how}){running}, as one did before: a failed "
                  f"attempt of task {gone.task}, {what}")

    def _log(self, gone: Exit, group: TaskGroup | None, revocation: Revocation) -> int:
        """*locked* The job log line of the charged task (``group``: what its worker's task
        record said); its attempt number."""
        task = revocation.blamed
        assert task is not None and revocation.outcome is not None
        attempt = self._store.attempt_count(task.id)
        now = self._clock()
        start = group.began if group is not None and group.task == task.id else now
        code, signum = exit_and_signal(gone.code or 0)
        self._joblog.append([Entry(
            task.id, attempt, self._where.node, self._where.farmer, gone.slot, start,
            max(0.0, now - start), code, signum, revocation.outcome.value,
            self._command(task))])
        return attempt
