"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# ==========================================================================================
# Docker fixtures: a private dockerd started by the tests themselves (see tests/helpers/dockerd.py)
# ==========================================================================================
#
# docker_daemon (session)  a running DockerDaemon (tests/helpers/dockerd.py). Use its .host, .env(),
#                          .env_overrides() and .docker(*args) (runs the docker client).
# docker_image  (session)  name of a busybox image made with `docker import`
#                          ("taskfarmer-test-busybox:latest"); sh, echo, sleep, ... in /bin.
# docker_env   (function)  sets DOCKER_HOST, DOCKER_API_VERSION and DOCKER_CONFIG in
#                          os.environ for one test only (monkeypatch), for code that runs
#                          `docker` without an explicit env=; returns those variables.
#
# DOCKER_HOST is deliberately NOT set for the whole session: non-docker tests stay
# untouched and a test that forgets to ask for the daemon fails loudly instead of talking
# to whatever daemon happens to exist. Pass `env=docker_daemon.env()` to subprocesses, or
# request `docker_env` when the code under test spawns `docker` itself.
#
# There is no bridge network: run containers with `--network none` (loopback only);
# without it they start, but the client writes a "IPv4 forwarding is disabled" WARNING to
# stderr.
#
# If `dockerd` is not installed the docker tests are skipped, except in CI (CI=true), where
# that is an error. Any other problem (not root, busybox-static missing, ...) is an error.
# Install: apt-get install -y --no-install-recommends docker.io busybox-static

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:  # `import helpers.…` works with every --import-mode
    sys.path.insert(0, _TESTS_DIR)

from helpers import cgroup as _cgroup  # noqa: E402
from helpers import dockerd as _dockerd  # noqa: E402
from helpers import tmpfs as _tmpfs  # noqa: E402
from helpers.clock import FakeClock  # noqa: E402


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`~helpers.clock.FakeClock` at 1000.0: pass it as ``clock=``/``monotonic=``, move
    it with ``tick(seconds)``."""
    return FakeClock()


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need(available: bool, reason: str) -> None:
    """Skip the test unless ``available``; under CI a missing install step fails instead."""
    if not available:
        if _in_ci():
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_dockerd.DockerDaemon]:
    """A private Docker daemon for the whole test session, stopped and removed at the end."""
    if _dockerd.find_dockerd() is None:
        reason = (
            "dockerd is not installed (apt-get install -y --no-install-recommends "
            + " ".join(_dockerd.APT_PACKAGES)
            + ")"
        )
        if _in_ci():
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    _dockerd.reap_stale_daemons()  # daemons of earlier, crashed runs (never live ones)
    with _dockerd.DockerDaemon(tmp_path_factory.mktemp("dockerd")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def docker_image(docker_daemon: _dockerd.DockerDaemon) -> str:
    """Name of the busybox test image, imported into the private daemon once per session."""
    return _dockerd.build_busybox_image(docker_daemon)


@pytest.fixture
def docker_env(
    docker_daemon: _dockerd.DockerDaemon, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Point this test's os.environ (and so every child process) at the private daemon."""
    for key in ("DOCKER_CONTEXT", "DOCKER_TLS", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(key, raising=False)
    overrides = docker_daemon.env_overrides()
    for key, value in overrides.items():
        monkeypatch.setenv(key, value)
    return overrides


# ==========================================================================================
# End of Docker fixtures
# ==========================================================================================


# ==========================================================================================
# Memory cgroups (tests/helpers/cgroup.py): a real limit, the real OOM killer
# ==========================================================================================


@pytest.fixture
def memory_cgroup() -> Iterator[Callable[[int], _cgroup.MemoryCgroup]]:
    """Makes memory cgroups with a limit in bytes (``memory_cgroup(400 << 20)``), removed
    after the test; skips where none can be made (not root, no memory controller), and fails
    under CI."""
    made: list[_cgroup.MemoryCgroup] = []

    def make(limit: int) -> _cgroup.MemoryCgroup:
        name = f"taskfarmer-test-{os.getpid()}-{len(made)}-{os.urandom(3).hex()}"
        cgroup, reason = _cgroup.create(name, limit)
        need(cgroup is not None, reason)
        assert cgroup is not None
        made.append(cgroup)
        return cgroup

    try:
        yield make
    finally:
        for cgroup in made:
            cgroup.remove()


# ==========================================================================================
# tmpfs mounts (tests/helpers/tmpfs.py): a full disk, a file-count quota
# ==========================================================================================


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[_tmpfs.Tmpfs]:
    """An empty mount point ``tmp_path/mnt``; mount it with :meth:`Tmpfs.mount`. Unmounted
    after the test."""
    need(os.geteuid() == 0 and shutil.which("mount") is not None, "mounting a tmpfs needs root")
    point = tmp_path / "mnt"
    point.mkdir()
    fs = _tmpfs.Tmpfs(point)
    try:
        yield fs
    finally:
        while os.path.ismount(point):
            fs.unmount()


# ==========================================================================================
# PyTaskFarmer 0.1.0 from PyPI in its own virtualenv (tests/helpers/pytaskfarmer_env.py)
# ==========================================================================================

from helpers import pytaskfarmer_env as _pytaskfarmer  # noqa: E402


@pytest.fixture(scope="session")
def pytaskfarmer(request: pytest.FixtureRequest) -> _pytaskfarmer.PyTaskFarmer:
    """PyTaskFarmer 0.1.0 in a virtualenv, built once into the pytest cache and reused.

    Building needs PyPI: without it the tests that use this are skipped, except in CI
    (CI=true), where that is an error.
    """
    try:
        return _pytaskfarmer.build(Path(request.config.cache.mkdir("pytaskfarmer")))
    except RuntimeError as error:
        if _in_ci():
            pytest.fail(f"CI=true but {error}", pytrace=False)
        pytest.skip(str(error).splitlines()[0])
