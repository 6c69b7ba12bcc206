"""Reading a memory cgroup (v1 and v2) and the node's memory, against fake trees in tmp dirs;
``--mem-per-task`` sizes (:mod:`taskfarmer.hpc.memory`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfarmer.errors import UsageError
from taskfarmer.hpc.memory import Cgroup, NodeMemory, Room, find_cgroup, parse_size

MiB = 1 << 20
V1_NO_LIMIT = "9223372036854771712\n"


@pytest.mark.parametrize("text, size", [
    ("500M", 500 * MiB), ("2G", 2 << 30), ("2g", 2 << 30), ("1.5G", 3 << 29), ("2GiB", 2 << 30),
    ("512MB", 512 * MiB), ("1048576", MiB), ("64k", 64 << 10), ("1T", 1 << 40), (" 3M ", 3 * MiB),
])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text, reason", [
    ("nan", "not a size"), ("NaN", "not a size"), ("-1G", "not a size"), ("5X", "not a size"),
    ("", "not a size"), ("G", "not a size"), ("inf", "not a size"), ("1e400", "not a finite"),
    ("0", "at least one byte"), ("0.1", "at least one byte"),
])
def test_what_is_not_a_size_is_refused_in_one_line(text: str, reason: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_size(text)
    assert raised.value.argument == text and reason in raised.value.reason
    assert "\n" not in str(raised.value)


V1_MOUNTS = """\
25 1 0:23 / / rw - ext4 /dev/root rw
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_v1_memory_controller_first_on_a_hybrid_system() -> None:
    own = "9:cpu:/\n4:memory:/slurm/uid_1/job_7/step_0/task_0\n0::/\n"
    assert find_cgroup(own, V1_MOUNTS) == Cgroup(
        1, Path("/sys/fs/cgroup/memory/slurm/uid_1/job_7/step_0/task_0"),
        Path("/sys/fs/cgroup/memory"))


def test_v2_alone() -> None:
    mounts = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    assert find_cgroup("0::/user.slice/job.scope\n", mounts) == Cgroup(
        2, Path("/sys/fs/cgroup/user.slice/job.scope"), Path("/sys/fs/cgroup"))


def test_in_a_container_the_mount_root_is_the_cgroup_itself() -> None:
    mounts = "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
    assert find_cgroup("4:memory:/docker/abc\n", mounts) == Cgroup(
        1, Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/memory"))
    assert find_cgroup("4:memory:/docker/abc/sub\n", mounts).path == Path(  # type: ignore[union-attr]
        "/sys/fs/cgroup/memory/sub")


def test_escaped_mount_points_and_no_memory_hierarchy() -> None:
    mounts = r"35 31 0:32 / /cg\040mem rw - cgroup cgroup rw,memory" + "\n"
    assert find_cgroup("4:memory:/a\n", mounts) == Cgroup(1, Path("/cg mem/a"), Path("/cg mem"))
    cpu_only = "36 31 0:33 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
    assert find_cgroup("4:memory:/a\n9:cpu:/\n", cpu_only) is None
    assert find_cgroup("", V1_MOUNTS) is None


def write(directory: Path, **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("__", ".")).write_text(text)
    return directory


def meminfo(proc: Path, total_kib: int, available_kib: int) -> Path:
    write(proc, meminfo=f"MemTotal:       {total_kib} kB\nMemFree:  1 kB\n"
                        f"MemAvailable:   {available_kib} kB\n")
    return proc


def test_v1_the_least_limit_on_the_way_up_binds_and_cache_is_not_used(tmp_path: Path) -> None:
    top = write(tmp_path / "memory", memory__limit_in_bytes=V1_NO_LIMIT)
    job = write(top / "job", memory__limit_in_bytes=str(400 * MiB),
                memory__usage_in_bytes=str(300 * MiB),
                memory__stat=f"cache {99 * MiB}\ninactive_file 1\ntotal_cache {80 * MiB}\n"
                             f"total_inactive_file {50 * MiB}\ntotal_active_file {30 * MiB}\n")
    step = write(job / "step", memory__limit_in_bytes=str(900 * MiB),
                 memory__oom_control="oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    memory = NodeMemory(Cgroup(1, step, top), meminfo(tmp_path / "proc", 1 << 30, 1 << 29))
    assert memory.room() == Room(400 * MiB, 220 * MiB, confined=True)
    assert memory.oom_kills() == 3


def test_v2_max_is_no_limit_and_events_count_the_kills(tmp_path: Path) -> None:
    top = write(tmp_path / "unified")
    job = write(top / "job.slice", memory__max=f"{MiB * 256}\n", memory__current=str(200 * MiB),
                memory__stat=f"anon {150 * MiB}\nfile {50 * MiB}\nactive_file {10 * MiB}\n"
                             f"inactive_file {40 * MiB}\n")
    leaf = write(job / "task", memory__max="max\n",
                 memory__events="low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\noom_group_kill 0\n")
    memory = NodeMemory(Cgroup(2, leaf, top), meminfo(tmp_path / "proc", 1 << 30, 1 << 29))
    assert memory.room() == Room(256 * MiB, 150 * MiB, confined=True)
    assert memory.oom_kills() == 2


def test_without_a_limit_the_nodes_memory_counts(tmp_path: Path) -> None:
    top = write(tmp_path / "memory", memory__limit_in_bytes=V1_NO_LIMIT)
    leaf = write(top / "a", memory__limit_in_bytes=V1_NO_LIMIT,
                 memory__oom_control="oom_kill_disable 0\nunder_oom 0\n")  # before Linux 4.13
    proc = meminfo(tmp_path / "proc", 8 << 20, 6 << 20)
    memory = NodeMemory(Cgroup(1, leaf, top), proc)
    assert memory.room() == Room(8 << 30, 2 << 30, confined=False)
    assert memory.oom_kills() is None  # and no memory.failcnt either
    write(leaf, memory__failcnt="5\n")
    write(top, memory__failcnt="2\n")
    assert memory.oom_kills() == 7  # the limits hit on the way up stand in for the kills
    assert NodeMemory(None, proc).room() == Room(8 << 30, 2 << 30, confined=False)
    assert NodeMemory(None, proc).oom_kills() is None
    assert NodeMemory(None, tmp_path / "nowhere").room() is None


def test_current_reads_this_processs_cgroup_from_proc(tmp_path: Path) -> None:
    top = write(tmp_path / "memory", memory__limit_in_bytes=str(64 * MiB),
                memory__usage_in_bytes=str(MiB), memory__stat="")
    write(top / "job", memory__limit_in_bytes=V1_NO_LIMIT)
    proc = tmp_path / "proc"
    write(proc / "self", cgroup="4:memory:/job\n",
          mountinfo=f"35 31 0:32 / {top} rw - cgroup cgroup rw,memory\n")
    memory = NodeMemory.current(proc)
    assert memory.cgroup == Cgroup(1, top / "job", top)
    assert memory.room() == Room(64 * MiB, MiB, confined=True)
