"""Runners written for PyTaskFarmer: ``run(taskid, command, logfh)`` and ``terminate()``.

Such a runner blocks in ``run`` until its task ends and is stopped by ``terminate``, called
from a signal handler; ours start a process that the worker waits for and kills. The adapter,
:class:`LegacyRunner`, gives each task a small Python helper process: it builds the user's
runner from its class path and INI arguments, calls ``run`` with the task log as ``logfh``
(``PROC_NUMBER`` is in its environment) and exits with the code ``run`` returned. A stop
signal reaching the helper calls ``terminate``; the worker kills the helper's process group
after its grace period as for any task.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any, List, Mapping, NoReturn, Optional

from ..config import import_object
from ..signals import STOP_SIGNALS
from .base import Runner

#: The helper's program: same ``sys.path`` as the farmer, then :func:`serve`.
_BOOTSTRAP = ("import json, sys; spec = json.loads(sys.argv[1]); sys.path[:] = spec['path']; "
              "from taskfarmer.runners.legacy import serve; serve(spec)")


def is_legacy(runner_class: type) -> bool:
    """True for a class written for PyTaskFarmer: it defines its own ``run``."""
    own = getattr(runner_class, "run", None)
    return callable(own) and own is not Runner.run


class LegacyRunner(Runner):
    """Runs each task through a PyTaskFarmer-style runner class in a helper process.

    Args:
        class_path: ``module.Class`` of the PyTaskFarmer-style runner.
        arguments: its constructor's keyword arguments (the INI values).
    """

    def __init__(self, class_path: str, arguments: Mapping[str, str]) -> None:
        self.class_path = class_path
        self.arguments = dict(arguments)
        self.path = list(sys.path)

    def argv(self, task_id: int, command: str) -> List[str]:
        """``python -c BOOTSTRAP SPEC``: the helper, with everything it needs in ``SPEC``."""
        spec = {"class": self.class_path, "arguments": self.arguments, "path": self.path,
                "task_id": task_id, "command": command}
        return [sys.executable, "-c", _BOOTSTRAP, json.dumps(spec)]


def serve(spec: Mapping[str, Any]) -> NoReturn:
    """The helper process: run one task through the user's runner and exit with its code.

    ``None`` (a ``run`` that returns nothing) is a failure, as it was in PyTaskFarmer; a
    negative code (killed by signal N, in :mod:`subprocess` terms) ends the helper by signal N.
    """
    runner = import_object(spec["class"])(**spec["arguments"])  # type: ignore[operator]
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: runner.terminate())
    returncode: Optional[int] = runner.run(spec["task_id"], spec["command"], sys.stdout)
    sys.stdout.flush()
    if returncode is None:
        sys.exit(1)
    if returncode < 0:
        try:
            signal.signal(-returncode, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL and SIGSTOP have no handler to reset
            pass
        os.kill(os.getpid(), -returncode)
    sys.exit(min(returncode, 255) if returncode >= 0 else 128 - returncode)
