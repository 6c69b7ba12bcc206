"""What a plain farm run imports: start-up cost is paid per job step, thousands of times a day.

The status reader and view are only for ``--status``; ``importlib.metadata`` only finds the
shipped INI files of an installed (not checked-out) package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

#: Modules a plain ``farmer TASKLIST`` run must not import.
NOT_FOR_A_FARM_RUN = ("taskfarmer.status", "taskfarmer.status.reader", "taskfarmer.status.model",
                      "taskfarmer.cli.status_view", "importlib.metadata")

PROBE = """
import json, sys
sys.argv = ["farmer", sys.argv[1], "-n", "1"]
from taskfarmer.cli import main
try:
    main()
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded(*argv: str) -> tuple[int, set[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          env=env, timeout=120, stdin=subprocess.DEVNULL, check=True)
    result = json.loads(done.stdout.splitlines()[-1])
    return result["code"], set(result["modules"])


def test_a_farm_run_imports_no_status_code(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("true\ntrue\n")
    code, modules = loaded(str(tasks))
    assert code == 0
    assert (tmp_path / "tasks.txt_workdir" / "finished").read_text().count("\n") == 2
    assert "taskfarmer.farm.farmer" in modules  # the probe did run a farm
    assert not modules & set(NOT_FOR_A_FARM_RUN), modules & set(NOT_FOR_A_FARM_RUN)
