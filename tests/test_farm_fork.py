"""A stop signal that reaches a worker just forked, before it has its own handlers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from taskfarmer.farm.farmer import Farm, FarmConfig
from taskfarmer.farm.worker import Parts
from taskfarmer.runners import BasicRunner
from taskfarmer.store import StateStore
from taskfarmer.store.locking import make_lock
from taskfarmer.tasks import ListTaskList
from taskfarmer.timeline.file import Timeline


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


def test_a_worker_that_got_the_stop_before_its_handlers_takes_no_task(tmp_path: Path) -> None:
    tasks = tmp_path / "t"
    tasks.write_text("echo 0\necho 1\n")
    workdir = tmp_path / "w"
    store = StateStore(workdir, make_lock(workdir, "flock", {}))
    parts = Parts(store, Timeline(workdir / "timeline.json"), BasicRunner(), ListTaskList())
    farm = Farm(FarmConfig(tasklist=tasks, workdir=workdir, proc=1), parts)
    store.prepare()
    with store.locked():
        store.import_list(tasks, parts.handler, starting=True)
    pid = os.fork()
    if pid == 0:  # the farmer's handler ran here, before the worker installed its own
        code = 1
        try:
            farm.stop.handle(signal.SIGTERM)
            farm._worker_main(0)
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    assert (workdir / "claims").read_text() == ""  # stopped before taking a task
    assert os.listdir(workdir / "leases") == []
