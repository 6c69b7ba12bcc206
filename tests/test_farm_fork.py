"""A stop signal that reaches a worker just forked, before it has its own handlers."""

from __future__ import annotations

import os
from pathlib import Path

from taskfarmer.farm import Farm, FarmConfig
from taskfarmer.locking import make_lock
from taskfarmer.runners import BasicRunner
from taskfarmer.store import StateStore
from taskfarmer.tasks import ListTaskList
from taskfarmer.timeline import Timeline
from taskfarmer.worker import Parts


def test_the_farmers_stop_handler_does_nothing_in_a_forked_worker(tmp_path: Path) -> None:
    store = StateStore(tmp_path, make_lock(tmp_path, "flock", {}))
    parts = Parts(store, Timeline(tmp_path / "timeline.json"), BasicRunner(), ListTaskList())
    farm = Farm(FarmConfig(tasklist=tmp_path / "t", workdir=tmp_path, proc=1), parts)
    sibling = farm._context.Process(target=os._exit, args=(0,))
    sibling.start()
    farm.workers[0] = sibling  # what a worker forked after it inherits
    pid = os.fork()
    if pid == 0:  # the inherited handler runs here (multiprocessing: "can only test a child")
        try:
            farm._forward_stop()
        except BaseException:
            os._exit(1)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    sibling.join()
