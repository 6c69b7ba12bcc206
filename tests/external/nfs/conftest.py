"""Fixtures for tests on real NFS (see README.md in this directory).

``nfs_lab`` (session): one lab for the run: a ganesha server and two UML nodes, A and B,
    with the export mounted (NFSv4.2 at first); stopped and removed at the end.
``nfs`` (function): the same lab, mounted as the test asks through indirect
    parametrization (``@pytest.mark.parametrize("nfs", [MountOptions(vers="3")],
    indirect=True, ids=str)``; default NFSv4.2); after the test no process of it is left on
    either node.
``nfs_dir`` (function): a new, empty directory in the export (a host path; the nodes see it
    at ``nfs.node_path(nfs_dir)``).

Skipped, with the reason, only where a program cannot be found or the tests do not run as
root; with CI=true that is a failure instead.  Tests in this directory get the ``nfs`` marker.
``TASKFARMER_KEEP_NFS=1`` keeps the lab's directory (ganesha.log, the nodes' consoles).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lab import APT_PACKAGES, MountOptions, NfsLab, missing_requirements

_HERE = Path(__file__).resolve().parent

#: Measurements reported at the end of the run ("name" -> seconds).
TIMINGS: dict[str, float] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.nfs)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("NFS lab timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name:<45} {seconds:7.2f} s")


@pytest.fixture(scope="session")
def nfs_lab() -> Iterator[NfsLab]:
    missing = missing_requirements()
    if missing:
        message = (f"cannot run the NFS lab: missing {', '.join(missing)} (apt-get install "
                   f"--no-install-recommends {' '.join(APT_PACKAGES)}; run as root)")
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(message + " (CI=true: not skipping)", pytrace=False)
        pytest.skip(message)
    keep = bool(os.environ.get("TASKFARMER_KEEP_NFS"))
    # Not pytest's tmp dir: the nodes mount their directory by path, so keep it short.
    root = Path(tempfile.mkdtemp(prefix="tfnfs-"))
    lab = NfsLab(root)
    try:
        lab.start()
        assert lab.start_seconds is not None
        TIMINGS["lab start (server, 2 nodes booted, mounted)"] = lab.start_seconds
        yield lab
    finally:
        lab.stop()
        if keep:
            print(f"NFS lab kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def nfs(nfs_lab: NfsLab, request: pytest.FixtureRequest) -> Iterator[NfsLab]:
    nfs_lab.mount(getattr(request, "param", MountOptions()))
    yield nfs_lab
    nfs_lab.reset()


@pytest.fixture
def nfs_dir(nfs: NfsLab, request: pytest.FixtureRequest) -> Path:
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:50] + "-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=nfs.export))
