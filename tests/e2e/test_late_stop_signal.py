"""A stop signal that arrives while the farmer is already exiting must not change its exit code.

Inside SLURM a farmer often gets the same stop twice: SLURM sends SIGTERM to every process of
the job, and a batch script that traps it passes it on too (examples/slurm_requeue.sh). Python
puts back the default action of every signal it handled when the interpreter shuts down, so a
signal in that moment would kill the farmer and turn exit code 3 into 143 (128 + SIGTERM).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from helpers.farmer import start_farmer, wait_for, write_tasklist


def test_signals_while_exiting_keep_exit_code_3(tmp_path: Path) -> None:
    tasklist = write_tasklist(tmp_path / "tasks.txt", ["sleep 30", "sleep 30"])
    leases = tmp_path / "tasks.txt_workdir" / "leases"
    process = start_farmer([str(tasklist), "--proc", "2"], cwd=tmp_path)
    wait_for(lambda: leases.is_dir() and len(list(leases.iterdir())) == 2, what="2 tasks")
    process.send_signal(signal.SIGUSR1)
    while process.poll() is None:  # SIGTERM after SIGTERM until it has exited
        process.send_signal(signal.SIGTERM)
        time.sleep(0.001)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 3, out + err
    assert "stopped by SIGUSR1, work left" in out, out
