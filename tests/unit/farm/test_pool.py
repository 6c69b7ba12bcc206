"""A stop signal that reaches a worker just forked, before it has its own handlers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from taskfarmer.farm import Farm, FarmConfig, open_farm
from taskfarmer.runners import BasicRunner
from taskfarmer.tasks import ListTaskList


def farm_of(tasks: Path, workdir: Path) -> Farm:
    """A one-slot farm of ``tasks`` in ``workdir``, locked by flock."""
    config = FarmConfig(tasklist=tasks, workdir=workdir, proc=1, environ={})
    return open_farm(config, BasicRunner(), ListTaskList(), "flock")


def test_the_farmers_stop_handler_does_nothing_in_a_forked_worker(tmp_path: Path) -> None:
    tasks = tmp_path / "t"
    tasks.write_text("")
    farm = farm_of(tasks, tmp_path)
    sibling = farm.pool.context.Process(target=os._exit, args=(0,))
    sibling.start()
    farm.pool.workers[0] = sibling  # what a worker forked after it inherits
    pid = os.fork()
    if pid == 0:  # the inherited handler runs here (multiprocessing: "can only test a child")
        try:
            farm.pool.forward_stop()
        except BaseException:
            os._exit(1)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    sibling.join()


def test_a_worker_that_got_the_stop_before_its_handlers_takes_no_task(tmp_path: Path) -> None:
    tasks = tmp_path / "t"
    tasks.write_text("echo 0\necho 1\n")
    workdir = tmp_path / "w"
    farm = farm_of(tasks, workdir)
    store = farm.store
    store.prepare()
    with store.locked():
        store.import_list(tasks, farm.handler, starting=True)
    pid = os.fork()
    if pid == 0:  # the farmer's handler ran here, before the worker installed its own
        code = 1
        try:
            farm.stop.handle(signal.SIGTERM)
            farm.pool.worker_main(0)
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    assert (workdir / "claims").read_text() == ""  # stopped before taking a task
    assert os.listdir(workdir / "leases") == []
