"""A private, throw-away Docker daemon for the test-suite.

The tests start their own ``dockerd`` instead of relying on a system daemon: no
``/var/run/docker.sock`` is touched, nothing is pulled from a registry, and several test
sessions (or a crashed earlier one) cannot collide, because every daemon lives in freshly
made unique directories.

The daemon is started the way that works on a plain Debian 12 box (root, no network, no
systemd)::

    dockerd -H unix://<short tmp>/docker.sock --data-root <dir> --exec-root <short tmp>/x
            --pidfile <short tmp>/docker.pid --iptables=false --ip-forward=false
            --ip-masq=false --bridge=none

There is no bridge network: start containers with ``--network none`` (they get only
loopback). Without it they still start, but the client prints "WARNING: IPv4 forwarding is
disabled. Networking will not work." on stderr, which pollutes captured output.

Typical use (outside pytest; the fixtures in ``conftest.py`` do the same)::

    with DockerDaemon(tmp_dir) as daemon:
        image = build_busybox_image(daemon)
        subprocess.run(["docker", "run", "--rm", "--network", "none", image, "true"],
                       env=daemon.env(), check=True)

Required Debian packages: ``docker.io`` (pulls in containerd, runc and tini, which provides
``docker-init`` for ``docker run --init``) and ``busybox-static``.

This module imports nothing from pytest, so it can be used from scripts and benchmarks too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Union

__all__ = [
    "APT_PACKAGES",
    "DEFAULT_IMAGE",
    "BusyboxNotInstalledError",
    "DockerDaemon",
    "DockerdError",
    "DockerdNotInstalledError",
    "build_busybox_image",
    "find_busybox",
    "find_docker_client",
    "find_dockerd",
    "reap_stale_daemons",
]

#: Name of the image that :func:`build_busybox_image` creates.
DEFAULT_IMAGE = "taskfarmer-test-busybox:latest"

#: The Debian packages that provide everything this module needs.
APT_PACKAGES = ("docker.io", "busybox-static")

_INSTALL_HINT = "apt-get install -y --no-install-recommends " + " ".join(APT_PACKAGES)

# containerd namespace that dockerd uses; needed to find stale shim sockets.
_CONTAINERD_NAMESPACE = "moby"
# Where containerd 1.6 puts its shim sockets (hard-coded there, not under --exec-root).
_SHIM_SOCKET_DIR = Path("/run/containerd/s")
# Unix socket paths are limited to 108 bytes; containerd nests sockets a few levels below
# the exec-root, so the directory holding it must be short.
_MAX_SHORT_TMP = 40
# In each run directory: a lock file held (flock) by the owning process from start() to
# stop(), and a note saying where the data-root is. A run directory whose lock nobody
# holds belongs to a test run that died: reap_stale_daemons() cleans it up.
_LOCK_NAME = "owner.lock"
_DATA_ROOT_NOTE = "data-root.txt"
_RUN_DIR_PREFIX = "tfd-"
_DATA_DIR_PREFIX = "dockerd-data-"

PathLike = Union[str, "os.PathLike[str]"]


class DockerdError(RuntimeError):
    """The private Docker daemon could not be started or used."""


class DockerdNotInstalledError(DockerdError):
    """``dockerd`` (or the ``docker`` client) is not installed."""


class BusyboxNotInstalledError(DockerdError):
    """No statically linked busybox is installed to build the test image from."""


def find_dockerd() -> str | None:
    """Return the path of ``dockerd``, or None if it is not installed.

    ``/usr/sbin`` is searched too, since it is not on every user's PATH.
    """
    found = shutil.which("dockerd")
    if found:
        return found
    for candidate in ("/usr/sbin/dockerd", "/usr/bin/dockerd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def find_docker_client() -> str | None:
    """Return the ``docker`` client the tests use, or None.

    This is deliberately the ``docker`` found on PATH, i.e. the same binary the farmer's
    DockerRunner will run. It may be newer than the daemon (e.g. ``/usr/local/bin/docker``
    28.x against Debian's 20.10 daemon); :meth:`DockerDaemon.env` pins
    ``DOCKER_API_VERSION`` to the daemon's API version, so that works. Debian's own client
    (``/usr/bin/docker``, same version as the daemon) is the fallback.
    """
    found = shutil.which("docker")
    if found:
        return found
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    return None


def _is_static_elf(path: str) -> bool:
    """True if *path* is an ELF executable without a program interpreter (PT_INTERP)."""
    try:
        with open(path, "rb") as fh:
            ident = fh.read(16)
            if len(ident) < 16 or ident[:4] != b"\x7fELF":
                return False
            is64 = ident[4] == 2
            endian = "<" if ident[5] == 1 else ">"
            if is64:
                header = fh.read(48)
                (phoff,) = struct.unpack_from(endian + "Q", header, 16)
                phentsize, phnum = struct.unpack_from(endian + "HH", header, 38)
            else:
                header = fh.read(36)
                (phoff,) = struct.unpack_from(endian + "I", header, 12)
                phentsize, phnum = struct.unpack_from(endian + "HH", header, 26)
            for index in range(phnum):
                fh.seek(phoff + index * phentsize)
                (p_type,) = struct.unpack(endian + "I", fh.read(4))
                if p_type == 3:  # PT_INTERP: dynamically linked
                    return False
            return True
    except (OSError, struct.error):
        return False


def find_busybox() -> str | None:
    """Return the path of a *statically linked* busybox, or None.

    Debian's ``busybox-static`` installs it as ``/bin/busybox``; the dynamically linked
    ``busybox`` package uses the same path but would not run inside an empty image.
    """
    candidates: list[str] = []
    which = shutil.which("busybox")
    if which:
        candidates.append(which)
    candidates += ["/bin/busybox", "/usr/bin/busybox"]
    for candidate in candidates:
        if os.access(candidate, os.X_OK) and _is_static_elf(candidate):
            return candidate
    return None


def _short_tmp_root() -> str:
    root = tempfile.gettempdir()
    return root if len(root) <= _MAX_SHORT_TMP else "/tmp"


def _decode_mountinfo_path(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out: list[str] = []
    index = 0
    while index < len(field):
        escape = field[index + 1 : index + 4]
        if field[index] == "\\" and len(escape) == 3 and escape.isdigit():
            out.append(chr(int(field[index + 1 : index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


def _mounts_under(roots: Sequence[Path]) -> list[str]:
    """Mount points below any of *roots* (inclusive), deepest first."""
    prefixes = [str(root) for root in roots]
    found: list[str] = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                fields = line.split(" ")
                if len(fields) < 5:
                    continue
                point = _decode_mountinfo_path(fields[4])
                if any(point == p or point.startswith(p + "/") for p in prefixes):
                    found.append(point)
    except OSError:
        return []
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def _proc_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _proc_ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses; the rest follows the last ')'.
    rest = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(rest[1])
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("utf-8", "replace")
    except OSError:
        return False
    state = stat[stat.rfind(")") + 2 :].split()[:1]
    return state != ["Z"]


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket, just enough for ``GET /_ping``."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class DockerDaemon:
    """A ``dockerd`` of our own, on a private unix socket, in unique temp directories.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.

    :param base_dir: directory that will hold the daemon's data-root (images, container
        layers) in a fresh unique subdirectory. It may be long, e.g. a pytest tmp path.
        Default: the short runtime directory below.
    :param dockerd: path of ``dockerd``; default :func:`find_dockerd`.
    :param docker: path of the ``docker`` client; default :func:`find_docker_client`.
    :param start_timeout: seconds to wait for the daemon to answer.
    :param stop_timeout: seconds to wait after SIGTERM before SIGKILL.
    :param storage_driver: e.g. ``"vfs"``; default: let dockerd choose (``overlay2`` on
        ext4/xfs, it falls back by itself where overlayfs cannot be used).
    :param shutdown_timeout: dockerd's ``--shutdown-timeout``: seconds running containers
        get to stop when the daemon is terminated (dockerd's default is 15).

    The socket, pidfile, exec-root and an empty client config dir live in a short unique
    directory ``/tmp/tfd-XXXXXXXX`` (unix socket paths are limited to 108 bytes).
    """

    def __init__(
        self,
        base_dir: PathLike | None = None,
        *,
        dockerd: str | None = None,
        docker: str | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        storage_driver: str | None = None,
        shutdown_timeout: int = 3,
    ) -> None:
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._dockerd = dockerd
        self._docker = docker
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.storage_driver = storage_driver
        self.shutdown_timeout = shutdown_timeout

        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None
        self._lock_fh: IO[bytes] | None = None
        self._run_dir: Path | None = None
        self._data_root: Path | None = None
        self._api_version: str | None = None
        #: Seconds from spawning dockerd until it answered (set by :meth:`start`).
        self.startup_seconds: float | None = None

    # ----------------------------------------------------------------- properties
    def _require_started(self) -> Path:
        if self._run_dir is None:
            raise DockerdError("the Docker daemon has not been started")
        return self._run_dir

    @property
    def run_dir(self) -> Path:
        """Short unique directory holding socket, pidfile, exec-root and log."""
        return self._require_started()

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def host(self) -> str:
        """The ``DOCKER_HOST`` value for this daemon, ``unix:///tmp/tfd-.../docker.sock``."""
        return f"unix://{self.socket_path}"

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "x"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "docker.pid"

    @property
    def log_path(self) -> Path:
        """dockerd's stdout and stderr (kept only while the daemon exists)."""
        return self.run_dir / "dockerd.log"

    @property
    def config_dir(self) -> Path:
        """An empty ``DOCKER_CONFIG`` so ``~/.docker/config.json`` cannot interfere."""
        return self.run_dir / "client-config"

    @property
    def data_root(self) -> Path:
        self._require_started()
        assert self._data_root is not None
        return self._data_root

    @property
    def api_version(self) -> str:
        """The daemon's API version, e.g. ``"1.41"``."""
        self._require_started()
        assert self._api_version is not None
        return self._api_version

    @property
    def docker_client(self) -> str:
        """Path of the ``docker`` client used by :meth:`docker`."""
        client = self._docker or find_docker_client()
        if client is None:
            raise DockerdNotInstalledError(
                f"no `docker` client found on PATH or in /usr/bin; install it: {_INSTALL_HINT}"
            )
        return client

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ----------------------------------------------------------------- environment
    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a ``docker`` client (or a farmer) that must use this daemon.

        A copy of *base* (default ``os.environ``) with ``DOCKER_HOST``,
        ``DOCKER_API_VERSION`` (pinned to the daemon's, so a newer client works too) and
        an empty ``DOCKER_CONFIG``, and with variables that would point the client
        elsewhere (``DOCKER_CONTEXT``, ``DOCKER_TLS*``, ``DOCKER_CERT_PATH``) removed.
        """
        env = dict(os.environ if base is None else base)
        for key in ("DOCKER_CONTEXT", "DOCKER_TLS", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            env.pop(key, None)
        env.update(self.env_overrides())
        return env

    def env_overrides(self) -> dict[str, str]:
        """Only the variables :meth:`env` sets (handy for ``monkeypatch.setenv``)."""
        return {
            "DOCKER_HOST": self.host,
            "DOCKER_API_VERSION": self.api_version,
            "DOCKER_CONFIG": str(self.config_dir),
        }

    def docker(
        self,
        *args: str,
        check: bool = False,
        timeout: float | None = 120.0,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS...`` against this daemon; stdout/stderr are captured as text."""
        proc = subprocess.run(
            [self.docker_client, *args],
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise DockerdError(
                f"`docker {' '.join(args)}` exited {proc.returncode}:\n{proc.stderr.strip()}"
            )
        return proc

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> DockerDaemon:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> DockerDaemon:
        """Start dockerd and wait (bounded) until it answers ``GET /_ping``."""
        if self._proc is not None:
            raise DockerdError("the Docker daemon is already running")
        dockerd = self._dockerd or find_dockerd()
        if dockerd is None:
            raise DockerdNotInstalledError(
                f"`dockerd` is not installed (not on PATH, not in /usr/sbin); "
                f"install it: {_INSTALL_HINT}"
            )
        self.docker_client  # noqa: B018 - fail early with a clear message if it is missing

        run_dir = tempfile.mkdtemp(prefix=_RUN_DIR_PREFIX, dir=_short_tmp_root())
        self._run_dir = Path(run_dir).resolve()  # mountinfo shows resolved paths
        try:
            lock_fh = open(self._run_dir / _LOCK_NAME, "wb")  # closed in stop()
            fcntl.flock(lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fresh file: cannot block
            self._lock_fh = lock_fh
            if self._base_dir is not None:
                self._base_dir.mkdir(parents=True, exist_ok=True)
                self._data_root = Path(
                    tempfile.mkdtemp(prefix=_DATA_DIR_PREFIX, dir=self._base_dir)
                ).resolve()
            else:
                self._data_root = self._run_dir / "data"
            (self._run_dir / _DATA_ROOT_NOTE).write_text(str(self._data_root))
            self.exec_root.mkdir()
            self.config_dir.mkdir()

            cmd = [
                dockerd,
                "--host", self.host,
                "--data-root", str(self._data_root),
                "--exec-root", str(self.exec_root),
                "--pidfile", str(self.pidfile),
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--shutdown-timeout", str(self.shutdown_timeout),
            ]  # fmt: skip
            if self.storage_driver:
                cmd += ["--storage-driver", self.storage_driver]

            log_fh = open(self.log_path, "wb")  # closed in stop()
            self._log_fh = log_fh
            started = time.monotonic()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C in the test run must not hit dockerd first
            )
            self._wait_until_ready(started)
            self.startup_seconds = time.monotonic() - started
            self._check_client()
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no dockerd log)"
        return "\n".join(text.splitlines()[-lines:])

    def _ping(self) -> str | None:
        """Return the API version if the daemon answers ``/_ping`` with OK, else None."""
        conn = _UnixHTTPConnection(str(self.socket_path), timeout=2.0)
        try:
            conn.request("GET", "/_ping")
            response = conn.getresponse()
            body = response.read()
            if response.status == 200 and body.strip() == b"OK":
                return response.getheader("Api-Version") or ""
            return None
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def _wait_until_ready(self, started: float) -> None:
        assert self._proc is not None
        deadline = started + self.start_timeout
        delay = 0.02
        while True:
            code = self._proc.poll()
            if code is not None:
                raise DockerdError(
                    f"dockerd exited with status {code} while starting "
                    f"(are you root?). Last lines of {self.log_path}:\n{self._log_tail()}"
                )
            if self.socket_path.exists():
                version = self._ping()
                if version is not None:
                    self._api_version = version or self._server_api_version()
                    return
            if time.monotonic() >= deadline:
                raise DockerdError(
                    f"dockerd did not answer on {self.socket_path} within "
                    f"{self.start_timeout:.0f}s. Last lines of its log:\n{self._log_tail()}"
                )
            time.sleep(delay)  # poll interval, bounded by the deadline above
            delay = min(delay * 2, 0.25)

    def _server_api_version(self) -> str:
        env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.config_dir))
        env.pop("DOCKER_API_VERSION", None)
        proc = subprocess.run(
            [self.docker_client, "version", "--format", "{{.Server.APIVersion}}"],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        version = proc.stdout.strip()
        if proc.returncode != 0 or not version:
            raise DockerdError(f"cannot read the daemon's API version: {proc.stderr.strip()}")
        return version

    def _check_client(self) -> None:
        """Make sure the chosen client really talks to the daemon with the pinned API."""
        proc = self.docker("version", "--format", "{{.Server.APIVersion}}", timeout=30)
        if proc.returncode != 0:
            raise DockerdError(
                f"{self.docker_client} cannot talk to the daemon (API {self._api_version}):\n"
                f"{proc.stderr.strip()}"
            )

    def stop(self) -> None:
        """Stop dockerd (SIGTERM, wait, SIGKILL) and remove everything it left behind.

        Safe to call more than once and after a failed :meth:`start`.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        self._proc = None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        if self._run_dir is not None:
            self._cleanup_leftovers()
        if self._lock_fh is not None:
            self._lock_fh.close()  # after the cleanup: nobody may reap a half-removed dir
            self._lock_fh = None
        self._run_dir = None
        self._data_root = None
        self._api_version = None

    @classmethod
    def _adopt(cls, run_dir: Path) -> DockerDaemon:
        """A handle on a daemon left behind in *run_dir* by a dead test run."""
        daemon = cls()
        daemon._run_dir = run_dir
        data_root = run_dir / "data"
        with contextlib.suppress(OSError):
            noted = Path((run_dir / _DATA_ROOT_NOTE).read_text().strip())
            # Only ever delete a directory that this module made.
            if noted.name.startswith(_DATA_DIR_PREFIX):
                data_root = noted
        daemon._data_root = data_root
        return daemon

    def _reap_orphan(self) -> None:
        """Stop an adopted daemon that is not our child, then clean up like stop()."""
        pid: int | None = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
        # Check the command line, so a recycled PID is never signalled.
        if pid is not None and _pid_alive(pid) and str(self.exec_root) in _proc_cmdline(pid):
            for sig, wait in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                deadline = time.monotonic() + wait
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not _pid_alive(pid):
                    break
        self.stop()

    # ----------------------------------------------------------------- cleanup
    def _container_ids(self) -> list[str]:
        containers = self.data_root / "containers"
        try:
            return [entry.name for entry in containers.iterdir() if entry.is_dir()]
        except OSError:
            return []

    def _leftover_pids(self) -> list[int]:
        """PIDs of processes our daemon started that outlived it, children first.

        These are containerd and containerd-shim processes (found by our unique exec-root
        on their command line) and everything below them (the containers' processes).
        """
        marker = str(self.exec_root)
        parents: dict[int, int | None] = {}
        roots: set[int] = set()
        own = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid == own:
                continue
            parents[pid] = _proc_ppid(pid)
            if marker in _proc_cmdline(pid):
                roots.add(pid)
        ordered: list[int] = []
        for root in roots:
            subtree = [root]
            frontier = [root]
            while frontier:
                current = frontier.pop()
                children = [pid for pid, ppid in parents.items() if ppid == current]
                subtree += children
                frontier += children
            ordered = subtree[::-1] + ordered  # deepest (container processes) first
        seen: set[int] = set()
        return [pid for pid in ordered if not (pid in seen or seen.add(pid))]

    def _cleanup_leftovers(self) -> None:
        container_ids = self._container_ids() if self._data_root is not None else []

        # 1. Processes that survived a killed dockerd (normally there are none).
        pids = self._leftover_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _pid_alive(pid)]
            if pids:
                time.sleep(0.05)

        # 2. Mounts (overlay layers, shm, netns, the data-root's own bind mount).
        roots = [p for p in (self._run_dir, self._data_root) if p is not None]
        for point in _mounts_under(roots):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)

        # 3. Shim sockets containerd keeps in /run/containerd/s (removed by a clean stop).
        address = str(self.exec_root / "containerd" / "containerd.sock")
        for cid in container_ids:
            digest = hashlib.sha256(
                os.path.join(address, _CONTAINERD_NAMESPACE, cid).encode()
            ).hexdigest()
            with contextlib.suppress(OSError):
                (_SHIM_SOCKET_DIR / digest).unlink()

        # 4. Our directories.
        for path in (self._data_root, self._run_dir):
            if path is None:
                continue
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():
                warnings.warn(f"could not remove {path}", RuntimeWarning, stacklevel=3)


def _busybox_applets(busybox: str) -> list[str]:
    proc = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, timeout=30, check=False
    )
    applets = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not applets:
        raise BusyboxNotInstalledError(f"`{busybox} --list` failed: {proc.stderr.strip()}")
    return applets


def build_busybox_image(
    daemon: DockerDaemon,
    name: str = DEFAULT_IMAGE,
    *,
    busybox: str | None = None,
) -> str:
    """Build a tiny busybox image with ``docker import`` (no registry needed); return its name.

    The root filesystem has ``/bin/busybox`` plus a relative symlink for every applet (sh,
    echo, cat, sleep, env, id, ...), empty ``/tmp`` (mode 1777), ``/data``, ``/work``,
    ``/etc``, ``/proc``, ``/sys`` and ``/dev``; the image sets ``PATH=/bin`` and
    ``CMD ["sh"]``. It runs as root by default (``-u UID:GID`` works); use
    ``--network none``.
    """
    path = busybox or find_busybox()
    if path is None:
        raise BusyboxNotInstalledError(
            f"no statically linked busybox found (/bin/busybox); install it: {_INSTALL_HINT}"
        )
    applets = _busybox_applets(path)
    with tempfile.TemporaryDirectory(prefix="busybox-rootfs-", dir=str(daemon.run_dir)) as tmp:
        rootfs = Path(tmp) / "rootfs"
        bindir = rootfs / "bin"
        bindir.mkdir(parents=True)
        for directory in ("data", "work", "etc", "proc", "sys", "dev", "root"):
            (rootfs / directory).mkdir()
        (rootfs / "tmp").mkdir()
        (rootfs / "tmp").chmod(0o1777)
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (rootfs / "etc" / "group").write_text("root:x:0:\n")
        shutil.copy2(path, bindir / "busybox")
        (bindir / "busybox").chmod(0o755)
        for applet in applets:
            target = bindir / Path(applet).name
            if target.name != "busybox" and not target.exists():
                target.symlink_to("busybox")
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        daemon.docker(
            "import",
            "--change", "ENV PATH=/bin",
            "--change", 'CMD ["sh"]',
            "--message", "taskfarmer test image (busybox rootfs)",
            str(tarball),
            name,
            check=True,
            timeout=300,
        )  # fmt: skip
    return name


def reap_stale_daemons(tmp_root: PathLike | None = None, *, min_age: float = 60.0) -> list[Path]:
    """Stop and remove daemons left behind by test runs that died without cleaning up.

    A run directory (``/tmp/tfd-*``) is stale when no process holds its lock file any more:
    its owner holds it from :meth:`DockerDaemon.start` until :meth:`DockerDaemon.stop`.
    Daemons of test sessions that are still running are left alone, so concurrent sessions
    are safe. A directory without a lock file is only touched once older than *min_age*
    seconds. Returns the run directories that were removed.

    Not required for correctness (every daemon has its own directories and socket); it
    only stops stale daemons from piling up.
    """
    root = Path(tmp_root) if tmp_root is not None else Path(_short_tmp_root())
    reaped: list[Path] = []
    for run_dir in sorted(root.glob(_RUN_DIR_PREFIX + "*")):
        if run_dir.is_symlink() or not run_dir.is_dir():
            continue
        try:
            lock_fh: IO[bytes] | None = open(run_dir / _LOCK_NAME, "rb")
        except FileNotFoundError:
            try:
                age = time.time() - run_dir.stat().st_mtime
            except OSError:
                continue
            if age < min_age:
                continue  # maybe being created right now
            lock_fh = None
        except OSError:
            continue
        try:
            if lock_fh is not None:
                try:
                    fcntl.flock(lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its owner is alive
            DockerDaemon._adopt(run_dir)._reap_orphan()
            reaped.append(run_dir)
        finally:
            if lock_fh is not None:
                lock_fh.close()
    return reaped
