"""The farmer's processes: the main loop (:mod:`.farmer`) and its workers (:mod:`.worker`).

:func:`open_farm` is the composition root: it builds the lock, the store, the timeline and
the :class:`Farm` from a :class:`FarmConfig`, a runner and a tasklist handler.
"""

from __future__ import annotations

from ..runners.base import Runner
from ..store import StateFiles, StateStore, coherent_io, make_lock
from ..tasks import TaskList
from ..timeline.file import Timeline
from .display import Display, DisplayFactory, Snapshot, quiet
from .farmer import Farm, FarmConfig
from .report import FarmReport
from .worker import Parts

__all__ = ["Display", "Farm", "FarmConfig", "FarmReport", "Snapshot", "open_farm"]


def open_farm(config: FarmConfig, runner: Runner, handler: TaskList, lock_kind: str,
              display: DisplayFactory = quiet) -> Farm:
    """The farm of ``config``: its workdir's lock, state files and timeline, ready to run.

    Args:
        config: the farmer's options (``config.environ`` also configures the lock and the
            state files' discipline).
        runner: how a task becomes a process.
        handler: how to read the tasklist.
        lock_kind: ``flock`` or ``soft`` (see :mod:`taskfarmer.store.locking`).
        display: makes what the farm shows (default: nothing).

    Raises:
        TaskfarmerError: the tasklist cannot be read and no workdir holds its tasks yet, or
            the lock or the workdir's filesystem cannot be used.
    """
    workdir = config.workdir
    if not config.tasklist.is_file() and not StateFiles(workdir).toprocess.exists():
        # Opens it: a missing tasklist fails before the workdir exists.
        handler.lines(config.tasklist)
    coherent = coherent_io(workdir, config.environ)
    store = StateStore(workdir, make_lock(workdir, lock_kind, config.environ), coherent)
    parts = Parts(store, Timeline(StateFiles(workdir).timeline, coherent), runner, handler)
    return Farm(config, parts, display=display)
