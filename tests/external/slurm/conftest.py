"""Fixtures for tests that need a real SLURM cluster.

``slurm_cluster`` (session): one private 2-node cluster for the whole test session,
    started on first use (installing slurm-wlm and munge with apt-get if needed),
    stopped at the end.
``slurm`` (function): the same cluster, with every job cancelled after the test and
    both nodes idle again, so tests do not see each other's jobs.

Set TASKFARMER_KEEP_SLURM=1 to keep the cluster's directory (config, logs) after the
run.  Skipped, with the reason, only where slurm cannot be installed (not root, or no
apt-get); under CI (CI=true) that is a failure instead.  Any other problem (install or
start failing) is an error.  Tests in this directory get the ``slurm`` marker.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import SlurmCluster, slurm_installable

_HERE = Path(__file__).resolve().parent


#: Measurements reported at the end of the run ("name" -> seconds), see slurm_timings.
TIMINGS: dict[str, float] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.slurm)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("SLURM test cluster timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name:<45} {seconds:7.2f} s")


@pytest.fixture(scope="session")
def slurm_timings() -> dict[str, float]:
    """Record a duration here (name -> seconds) to have it printed after the run."""
    return TIMINGS


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    ok, reason = slurm_installable()
    if not ok:
        message = f"cannot run a SLURM test cluster here: {reason}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: not skipping)", pytrace=False)
        pytest.skip(message)
    cluster = SlurmCluster(keep=bool(os.environ.get("TASKFARMER_KEEP_SLURM")))
    try:
        cluster.start()
    except BaseException:
        with contextlib.suppress(Exception):
            cluster.stop()  # whatever did start
        raise
    assert cluster.start_seconds is not None
    TIMINGS["cluster start (incl. any apt install)"] = cluster.start_seconds
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    yield slurm_cluster
    slurm_cluster.cancel_all()
