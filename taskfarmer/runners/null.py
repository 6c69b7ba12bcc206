"""A runner that runs nothing: every task succeeds at once.

For measuring what the farm itself costs per task (claiming, recording, the lock, the state
files, the timeline and job log), without the cost of starting a process, the way HyperQueue
measures its scheduler: ``benchmarks/`` uses it through a runner definition of its own
(``Runner = taskfarmer.runners.NullRunner``). No log file is written.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Runner


class NullRunner(Runner):
    """Starts no process; the worker records every task as succeeded (exit 0) at once."""

    executes: ClassVar[bool] = False

    def argv(self, task_id: int, command: str) -> list[str]:
        """The empty vector: nothing is executed."""
        return []
