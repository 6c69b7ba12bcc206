"""Python side of ``cluster.sh``: a private 2-node SLURM cluster for the tests.

    cluster = SlurmCluster()          # state in a fresh temp dir under /tmp
    cluster.start()                   # ~1 s once slurm is installed
    job = cluster.sbatch("job.sh", "arg", nodes=2, output=str(tmp / "out"))
    info = cluster.wait_job(job, timeout=30)
    assert info.state == "COMPLETED" and info.exit_code == 0
    cluster.stop()

Every slurm command must run with :attr:`SlurmCluster.env` (it points ``SLURM_CONF`` at
this cluster's config); jobs inherit the submitting environment (``--export=ALL``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar, Union

CLUSTER_SH = Path(__file__).resolve().with_name("cluster.sh")
NODES = ("n1", "n2")

#: Job states after which a job does not change any more (barring a requeue).
TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)

# Client settings that must not leak in from the caller's environment, e.g. when the
# tests themselves run inside a job of a real cluster.
_SLURM_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SCANCEL_", "SINFO_")

_T = TypeVar("_T")
OptValue = Union[str, int, float, bool, None, Sequence[Union[str, int]]]


class SlurmError(RuntimeError):
    """A slurm command failed, or a job/cluster did not get where it was expected to."""


@dataclass(frozen=True)
class JobInfo:
    """One record of ``scontrol show job``: a job, or one task of an array job."""

    job_id: str  # "12", or "12_3" for task 3 of array job 12
    state: str  # JobState, e.g. PENDING, RUNNING, COMPLETED, FAILED, CANCELLED
    reason: str  # Reason, e.g. None, BeginTime, Resources
    exit_code: int  # exit status of the batch script
    signal: int  # signal that ended the batch script, 0 if none
    restarts: int  # number of requeues
    nodes: str  # NodeList, e.g. "n[1-2]" ("(null)" while pending)
    fields: Mapping[str, str] = field(repr=False)  # every key=value of the record

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def parse(cls, line: str) -> JobInfo:
        f = parse_record(line)
        if f.get("ArrayTaskId") and f.get("ArrayJobId"):
            job_id = f"{f['ArrayJobId']}_{f['ArrayTaskId']}"
        else:
            job_id = f.get("JobId", "?")
        code, _, sig = f.get("ExitCode", "0:0").partition(":")
        return cls(
            job_id=job_id,
            state=f.get("JobState", "UNKNOWN"),
            reason=f.get("Reason", ""),
            exit_code=int(code or 0),
            signal=int(sig or 0),
            restarts=int(f.get("Restarts", "0") or 0),
            nodes=f.get("NodeList", ""),
            fields=f,
        )


# A key is a word that may contain '/' or ':' (e.g. "CPUs/Task", "ReqB:S:C:T"); values
# run until the next " key=" and may contain spaces (Command=, WorkDir=, Comment=).
_RECORD_RE = re.compile(r"(?:^|\s)([A-Za-z][\w/:]*)=(.*?)(?=\s+[A-Za-z][\w/:]*=|\s*$)")


def parse_record(line: str) -> dict[str, str]:
    """Parse one line of ``scontrol -o show ...`` into a dict."""
    return {m.group(1): m.group(2) for m in _RECORD_RE.finditer(line.strip())}


def _sbatch_args(opts: Mapping[str, OptValue]) -> list[str]:
    """``nodes=2, requeue=True, export=["ALL", "X=1"]`` -> ``--nodes=2 --requeue ...``"""
    args: list[str] = []
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args.extend(f"{flag}={v}" for v in value)
        else:
            args.append(f"{flag}={value}")
    return args


def slurm_installed() -> bool:
    return all(shutil.which(p) for p in ("slurmctld", "slurmd", "sbatch", "munged"))


def slurm_installable() -> tuple[bool, str]:
    """Can ``cluster.sh`` install and run slurm here?  (ok, reason if not)"""
    if os.geteuid() != 0:
        return False, "not root (the test cluster runs SlurmUser=root and installs with apt)"
    if not slurm_installed() and not shutil.which("apt-get"):
        return False, "slurm is not installed and there is no apt-get to install it"
    return True, ""


class SlurmCluster:
    """A private cluster: munged, slurmctld and slurmd for nodes n1 and n2 (2 CPUs each).

    ``root`` holds config, state, spool and logs; by default a fresh ``/tmp/tfslurm-*``
    (short: unix socket paths are limited to 107 bytes), removed by :meth:`stop` unless
    ``keep`` is true.  ``extra_conf`` lines are appended to slurm.conf (later lines win,
    e.g. ``"KillWait=30"``).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        extra_conf: str = "",
        keep: bool = False,
    ) -> None:
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="tfslurm-", dir="/tmp")).resolve()
        self.extra_conf = extra_conf
        self.keep = keep
        self.conf = self.root / "etc" / "slurm.conf"
        self.started = False
        self.start_seconds: float | None = None
        self._exports: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------
    def start(self, timeout: float = 600) -> None:
        """Start the cluster; returns when both nodes are idle.

        ``timeout`` covers an ``apt-get install`` of slurm on the first run.
        """
        env = dict(self._clean_environ())
        if self.extra_conf:
            env["CLUSTER_EXTRA_CONF"] = self.extra_conf
        t0 = time.monotonic()
        proc = self._script("start", env=env, timeout=timeout)
        self.start_seconds = time.monotonic() - t0
        for line in proc.stdout.splitlines():
            m = re.match(r"export (\w+)=(.*)$", line.strip())
            if m:
                self._exports[m.group(1)] = m.group(2)
        if "SLURM_CONF" not in self._exports:
            raise SlurmError(f"cluster.sh start printed no SLURM_CONF:\n{proc.stdout}")
        self.started = True

    def stop(self) -> None:
        """Cancel all jobs, stop all daemons, kill leftover job processes."""
        if self.conf.parent.exists():
            self._script("stop", env=dict(self._clean_environ()), timeout=120)
        self.started = False
        if self._own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill_node(self, node: str, *, mark_down: bool = False) -> None:
        """Crash a node: SIGKILL its slurmd, slurmstepd and job processes.

        The controller notices only after SlurmdTimeout=30 s (up to ~45 s): node DOWN,
        its batch jobs requeued.  ``mark_down=True`` tells it at once instead (``scontrol
        update NodeName=.. State=DOWN``), with the same effect.
        """
        self._script("kill-node", node, env=self.env, timeout=60)
        if mark_down:
            self.scontrol("update", f"NodeName={node}", "State=DOWN", "Reason=killed")

    def start_node(self, node: str, timeout: float = 90) -> None:
        """Start a killed node's slurmd again; returns once the controller hears it."""
        self._script("start-node", node, env=self.env, timeout=timeout + 10)

    # -- running slurm commands ---------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """Environment for slurm commands (and so for jobs): ours plus ``SLURM_CONF``, and
        the directory of the Python running the tests first on ``PATH``: the jobs' ``farmer``
        is this checkout's (a virtual environment's ``bin``) whether or not it is activated."""
        if not self._exports:
            raise SlurmError("cluster not started")
        env = self._clean_environ()
        env.update(self._exports)
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        return env

    def run(
        self,
        *cmd: str | os.PathLike[str],
        check: bool = True,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command against this cluster; output captured as text."""
        full_env = self.env
        if env:
            full_env.update(env)
        argv = [os.fspath(c) for c in cmd]
        proc = subprocess.run(
            argv,
            env=full_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise SlurmError(
                f"{' '.join(argv)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def sbatch(
        self,
        script: str | os.PathLike[str] | None,
        *args: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        **opts: OptValue,
    ) -> str:
        """Submit a batch job, return its id.

        ``opts`` become sbatch options (``nodes=2`` -> ``--nodes=2``, ``requeue=True`` ->
        ``--requeue``, ``array="0-3"``, ``wrap="cmd"`` with ``script=None``).  ``args``
        go to the script.  ``env`` is added to the environment the job inherits; ``cwd``
        is where sbatch runs, and so the job's default working directory (``chdir=``
        overrides it) and where relative ``output=`` paths land.
        """
        argv: list[str | os.PathLike[str]] = ["sbatch", "--parsable", *_sbatch_args(opts)]
        if script is not None:
            argv += [script, *args]
        elif args:
            raise ValueError("script arguments without a script")
        out = self.run(*argv, env=env, cwd=cwd).stdout.strip()
        job_id = out.split(";")[0]  # "<id>" or "<id>;<cluster>"
        if not job_id.isdigit():
            raise SlurmError(f"unexpected sbatch output: {out!r}")
        return job_id

    def scancel(self, job_id: str, *args: str) -> None:
        self.run("scancel", *args, job_id)

    def scontrol(self, *args: str) -> str:
        return self.run("scontrol", *args).stdout

    def requeue(self, job_id: str, *, release: bool = False, timeout: float = 30) -> JobInfo:
        """``scontrol requeue`` a (``--requeue``-able) batch job; returns it PENDING.

        Slurm holds a requeued job for BeginTime = now + cred_expire + 1 s (6 s here, see
        cluster.sh; 121 s with slurm's default).  ``release=True`` then sets its
        StartTime to now + 2 s, so it starts again within about 2-3 s.
        """
        self.scontrol("requeue", job_id)
        # COMPLETING (old processes being killed) -> PENDING, Reason=BeginTime
        info = self.wait_job(job_id, states={"PENDING"}, timeout=timeout, poll=0.05)
        if release:
            # Not StartTime=now: the requeue revoked the job's old credential, and slurmd
            # refuses a launch credential whose (whole-second) time stamp is not later
            # than the revocation, so a restart within the same second is killed at once
            # ("Killing non-startable batch JobId=..: Job credential revoked", FAILED).
            self.scontrol("update", f"JobId={job_id}", "StartTime=now+2")
        return info

    # -- job state ----------------------------------------------------------------------
    def jobs(self, job_id: str) -> list[JobInfo]:
        """All records of a job (one per array task), [] once slurm forgot it.

        Finished jobs stay known for MinJobAge (300 s); there is no accounting (sacct).
        """
        proc = self.run("scontrol", "-o", "show", "job", job_id, check=False)
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:
                return []
            raise SlurmError(f"scontrol show job {job_id}: {proc.stderr.strip()}")
        return [JobInfo.parse(line) for line in proc.stdout.splitlines() if line.strip()]

    def job(self, job_id: str) -> JobInfo:
        """State, exit code etc. of a (non-array) job."""
        records = self.jobs(job_id)
        if not records:
            raise SlurmError(f"job {job_id} unknown to slurmctld")
        return records[0]

    def wait_jobs(
        self,
        job_id: str,
        states: Iterable[str] = ("COMPLETED",),
        timeout: float = 60,
        *,
        poll: float = 0.2,
    ) -> list[JobInfo]:
        """Wait until every record of the job (all array tasks) is in one of ``states``.

        Raises :class:`SlurmError` as soon as a record ends in another terminal state
        (e.g. FAILED while waiting for COMPLETED), TimeoutError after ``timeout``.
        """
        wanted = frozenset(states)
        last: list[JobInfo] = []

        def check() -> list[JobInfo] | None:
            nonlocal last
            last = self.jobs(job_id)
            if not last:
                raise SlurmError(f"job {job_id} unknown to slurmctld")
            bad = [j for j in last if j.terminal and j.state not in wanted]
            if bad:
                raise SlurmError(
                    f"job {job_id} ended {self._describe(bad)}, wanted {sorted(wanted)}"
                )
            if all(j.state in wanted for j in last):
                return last
            return None

        return self.wait_for(
            check,
            timeout,
            poll=poll,
            what=lambda: f"job {job_id} to reach {sorted(wanted)}: {self._describe(last)}",
        )

    def wait_job(
        self,
        job_id: str,
        states: Iterable[str] = ("COMPLETED",),
        timeout: float = 60,
        *,
        poll: float = 0.2,
    ) -> JobInfo:
        """:meth:`wait_jobs` for a plain job: returns its record."""
        return self.wait_jobs(job_id, states, timeout, poll=poll)[0]

    def queue(self) -> list[str]:
        """Ids of the jobs squeue lists (pending, running, completing)."""
        return self.run("squeue", "-h", "-o", "%i").stdout.split()

    def node_states(self) -> dict[str, str]:
        """Node -> sinfo's compact state, e.g. {"n1": "idle", "n2": "alloc"}."""
        out = self.run("sinfo", "-h", "-N", "-o", "%N %t").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def cancel_all(self, timeout: float = 60) -> None:
        """Cancel every job and wait until the queue is empty and both nodes idle."""
        ids = self.queue()
        if ids:
            self.run("scancel", *ids, check=False)

        def settled() -> bool:
            return not self.queue() and set(self.node_states().values()) == {"idle"}

        self.wait_for(
            settled,
            timeout,
            what=lambda: f"an empty queue and idle nodes: {self.queue()} {self.node_states()}",
        )

    # -- helpers ------------------------------------------------------------------------
    def wait_for(
        self,
        predicate: Callable[[], _T | None],
        timeout: float,
        *,
        poll: float = 0.2,
        what: str | Callable[[], str] = "condition",
    ) -> _T:
        """Poll ``predicate`` until it returns something truthy (returned), bounded."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                desc = what() if callable(what) else what
                raise TimeoutError(f"timed out after {timeout}s waiting for {desc}")
            time.sleep(poll)

    def logs(self, lines: int = 30) -> str:
        """Tails of the daemon logs, for failure messages."""
        parts = []
        for path in sorted((self.root / "log").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"==> {path} <==\n" + "\n".join(tail))
        return "\n".join(parts)

    @staticmethod
    def _describe(records: Sequence[JobInfo]) -> str:
        states = (
            f"{j.job_id}={j.state}({j.reason}, exit {j.exit_code}:{j.signal})" for j in records
        )
        return ", ".join(states) or "no records"

    @staticmethod
    def _clean_environ() -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith(_SLURM_ENV_PREFIXES)}

    def _script(
        self, command: str, *args: str, env: Mapping[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        argv = ["bash", str(CLUSTER_SH), command, str(self.root), *args]
        try:
            proc = subprocess.run(
                argv,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise SlurmError(f"{' '.join(argv)} timed out after {timeout}s\n{self.logs()}") from e
        if proc.returncode != 0:
            raise SlurmError(
                f"{' '.join(argv)} exited {proc.returncode}\n{proc.stderr}\n{self.logs()}"
            )
        return proc
