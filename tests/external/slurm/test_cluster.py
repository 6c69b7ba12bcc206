"""Smoke tests of the private SLURM cluster itself: the behaviour the farmer relies on.

Each test documents one fact about this slurm (22.05, Debian) as configured by
cluster.sh, so a farmer test failing can be told apart from a cluster not behaving.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .cluster import SlurmCluster, SlurmError

pytestmark = pytest.mark.slurm


def _wait_file(
    cluster: SlurmCluster, path: Path, timeout: float = 30, lines: int = 1, contains: str = ""
) -> str:
    """Wait until ``path`` exists with at least ``lines`` lines and the text ``contains``;
    return its text."""

    def ready() -> list[str] | None:
        if not path.exists():
            return None
        text = path.read_text()
        return [text] if len(text.splitlines()) >= lines and contains in text else None

    return cluster.wait_for(ready, timeout, what=f"{lines} line(s) {contains!r} in {path}")[0]


def _write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return path


def test_cluster_is_up(slurm: SlurmCluster) -> None:
    assert slurm.node_states() == {"n1": "idle", "n2": "idle"}
    assert "UP" in slurm.run("scontrol", "ping").stdout


def test_trivial_job_turnaround(
    slurm: SlurmCluster, tmp_path: Path, slurm_timings: dict[str, float]
) -> None:
    t0 = time.monotonic()
    job = slurm.sbatch(None, wrap="true", output=str(tmp_path / "out"))
    info = slurm.wait_job(job, timeout=30, poll=0.05)
    slurm_timings["trivial job: sbatch -> COMPLETED"] = time.monotonic() - t0
    assert (info.state, info.exit_code) == ("COMPLETED", 0)


def test_job_on_both_nodes(slurm: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = slurm.sbatch(
        None,
        nodes=2,
        output=str(out),
        # single quotes: with "echo $SLURMD_NODENAME" the batch shell (on n1) would
        # expand it before srun runs, and both tasks would print n1
        wrap="srun --ntasks-per-node=1 sh -c 'echo $SLURMD_NODENAME'",
    )
    info = slurm.wait_job(job, timeout=30)
    assert info.nodes == "n[1-2]"
    assert sorted(out.read_text().split()) == ["n1", "n2"]


def test_failed_job_exit_code(slurm: SlurmCluster, tmp_path: Path) -> None:
    job = slurm.sbatch(None, wrap="exit 3", output=str(tmp_path / "out"))
    info = slurm.wait_job(job, states={"FAILED"}, timeout=30)
    assert (info.exit_code, info.signal) == (3, 0)
    with pytest.raises(SlurmError, match="FAILED"):
        slurm.wait_job(job, timeout=5)  # waiting for COMPLETED fails at once


def test_job_inherits_submit_environment(slurm: SlurmCluster, tmp_path: Path) -> None:
    # This is how a job finds `farmer`: PATH (and everything else) is exported.
    out = tmp_path / "out"
    job = slurm.sbatch(
        None,
        wrap='echo "$TF_PROBE"; echo "$PATH"',
        output=str(out),
        env={"TF_PROBE": "hello from the submitter"},
    )
    slurm.wait_job(job, timeout=30)
    probe, path = out.read_text().splitlines()
    assert probe == "hello from the submitter"
    assert path == slurm.env["PATH"]


def test_array_job(slurm: SlurmCluster, tmp_path: Path) -> None:
    job = slurm.sbatch(
        None,
        array="0-3",
        output=str(tmp_path / "out-%a"),
        wrap=f'echo "$SLURMD_NODENAME" > {tmp_path}/task-$SLURM_ARRAY_TASK_ID',
    )
    records = slurm.wait_jobs(job, timeout=60)
    assert sorted(r.job_id for r in records) == [f"{job}_{i}" for i in range(4)]
    assert all(r.exit_code == 0 for r in records)
    for i in range(4):
        assert (tmp_path / f"task-{i}").read_text().strip() in ("n1", "n2")


def test_signals(slurm: SlurmCluster, tmp_path: Path) -> None:
    """Who gets ``scancel --signal=USR1``: steps only; --batch: the batch shell only;
    --full: the batch shell, its plain children and the steps."""
    d = tmp_path
    script = _write_script(
        d / "job.sh",
        f"""
trap 'echo batch >> {d}/batch.flag' USR1
# a job step (srun) and a plain child of the batch shell, each trapping USR1
srun -n1 bash -c "trap 'echo step >> {d}/step.flag' USR1
                  touch {d}/step.ready; while :; do sleep 0.1; done" &
bash -c "trap 'echo child >> {d}/child.flag' USR1
         touch {d}/child.ready; while :; do sleep 0.1; done" &
touch {d}/batch.ready
while :; do wait; done   # wait returns on each trapped signal
""",
    )
    job = slurm.sbatch(script, output=str(d / "out"))
    for name in ("batch", "step", "child"):
        _wait_file(slurm, d / f"{name}.ready", lines=0)

    def counts() -> dict[str, int]:
        return {
            n: len((d / f"{n}.flag").read_text().split()) if (d / f"{n}.flag").exists() else 0
            for n in ("batch", "step", "child")
        }

    def settle(expected: dict[str, int]) -> None:
        slurm.wait_for(lambda: counts() == expected, 20, what=f"signal counts {expected}")
        time.sleep(1)  # and nothing else arrives late
        assert counts() == expected

    slurm.scancel(job, "--signal=USR1")
    settle({"batch": 0, "step": 1, "child": 0})
    slurm.scancel(job, "--batch", "--signal=USR1")
    settle({"batch": 1, "step": 1, "child": 0})
    slurm.scancel(job, "--full", "--signal=USR1")
    # srun also gets it and forwards it to the step: the step sees it once more
    settle({"batch": 2, "step": 2, "child": 1})
    assert slurm.job(job).state == "RUNNING"


def _requeue_script(tmp_path: Path) -> tuple[Path, Path]:
    """A job that counts its runs in ``counter`` (its pid in ``pid``), then sleeps."""
    counter = tmp_path / "counter"
    script = _write_script(
        tmp_path / "job.sh",
        f"""
echo $$ > {tmp_path}/pid
n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 ))
echo "$n" > {counter}
echo "run $n restart_count=${{SLURM_RESTART_COUNT:-0}} node=$SLURMD_NODENAME"
sleep 300
""",
    )
    return script, counter


@pytest.mark.parametrize("release", [False, True], ids=["plain", "released"])
def test_requeue_runs_job_again(
    slurm: SlurmCluster, tmp_path: Path, slurm_timings: dict[str, float], release: bool
) -> None:
    script, counter = _requeue_script(tmp_path)
    out = tmp_path / "out"
    # --open-mode=append: a requeued job otherwise truncates its output file
    job = slurm.sbatch(script, requeue=True, open_mode="append", output=str(out))
    _wait_file(slurm, out, lines=1)
    assert counter.read_text().strip() == "1"

    t0 = time.monotonic()
    # COMPLETING -> PENDING (Reason=BeginTime: held for cred_expire + 1 s, unless
    # released) -> RUNNING
    pending = slurm.requeue(job, release=release)
    assert pending.reason == "BeginTime", pending
    # (not the output file: slurmstepd appends "*** JOB .. CANCELLED .. DUE TO JOB
    # REQUEUE ***" to it)
    slurm.wait_for(lambda: counter.read_text().strip() == "2", 60, what="the second run")
    elapsed = time.monotonic() - t0
    how = "+ StartTime=now+2" if release else "(cred_expire=5)"
    slurm_timings[f"requeue {how} -> running again"] = elapsed
    if release:
        assert elapsed < 6  # about 3 s: before the unreleased BeginTime (6 s)
    else:
        assert 5 <= elapsed < 30  # about 6 s

    text = _wait_file(slurm, out, timeout=10, contains="run 2 ")
    assert "run 1 restart_count=0 " in text
    assert "run 2 restart_count=1 " in text
    assert "DUE TO JOB REQUEUE" in text
    info = slurm.job(job)
    assert (info.state, info.restarts) == ("RUNNING", 1)


@pytest.mark.chaos
def test_kill_and_restart_node(slurm: SlurmCluster, tmp_path: Path) -> None:
    """A crashed node's job processes die with it; its requeueable job runs again."""
    script, counter = _requeue_script(tmp_path)
    job = slurm.sbatch(script, requeue=True, nodelist="n2", output=str(tmp_path / "out"))
    slurm.wait_for(lambda: counter.exists(), 30, what="the first run")
    batch_shell = Path("/proc", (tmp_path / "pid").read_text().strip())
    assert batch_shell.exists()

    slurm.kill_node("n2", mark_down=True)
    assert not batch_shell.exists() or "\nState:\tZ" in (batch_shell / "status").read_text()
    assert slurm.node_states()["n2"].startswith("down")
    info = slurm.wait_job(job, states={"PENDING"}, timeout=30)
    assert info.restarts == 1

    slurm.start_node("n2")
    slurm.wait_for(lambda: counter.read_text().strip() == "2", 60, what="the second run")
    assert slurm.job(job).nodes == "n2"
