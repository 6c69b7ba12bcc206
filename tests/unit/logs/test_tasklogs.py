"""Log layouts (``--logs``) in-process: the spread layout's directories."""

from __future__ import annotations

import os
from pathlib import Path

from taskfarmer.logs.tasklogs import TaskLogs


def test_spread_puts_a_thousand_logs_per_directory(tmp_path: Path) -> None:
    logs = TaskLogs(tmp_path, "spread", "w")
    for task_id in (5, 999, 1000, 123456):
        os.close(logs.open(task_id, "node", 0.0))
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("log_*")) == [
        "0/log_5", "0/log_999", "1/log_1000", "123/log_123456"]
