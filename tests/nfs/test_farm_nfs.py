"""Farmers on two NFS client nodes sharing one workdir: exactly-once, takeover, bad locks.

Each scenario runs the real farmer on the lab's nodes (see README.md here) against a workdir
on the export, and checks the files on the server's disk.  Task counts stay small: a node has
one vCPU and forks slowly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .farmers import (
    assert_exactly_once,
    ids,
    no_nul,
    start_farmers,
    wait_all,
    write_tasks,
)
from .lab import NODE_LOCAL, MountOptions, NfsLab

V42 = MountOptions()
V3 = MountOptions(vers="3")
V3_NOLOCK = MountOptions(vers="3", lock=False)

TASKS = 120


def tasks(count: int, failing: int = -1) -> list:
    """``true`` tasks (task ``failing`` fails)."""
    return ["false" if i == failing else "true" for i in range(count)]


@pytest.mark.parametrize("lock", ["flock", "soft"])
@pytest.mark.parametrize("nfs", [V42, V3], indirect=True, ids=str)
def test_two_farmers_on_each_of_two_nodes_run_each_task_exactly_once(
        nfs: NfsLab, nfs_dir: Path, lock: str) -> None:
    tasklist = write_tasks(nfs_dir / "t", tasks(TASKS, failing=7))
    farmers = start_farmers(nfs, tasklist, ["-n", "2", "--lock", lock])
    results = wait_all(farmers)
    for result in results:
        assert result.rc == 1, result  # all done, one failed
        assert "Traceback" not in result.err
    assert_exactly_once(nfs_dir / "t_workdir", TASKS, failed=[7])
