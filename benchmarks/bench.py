#!/usr/bin/env python3
"""Benchmark harness for taskfarmer.

Compares ``farmer`` with ``xargs -P`` (the floor), GNU parallel and PyTaskFarmer 0.1.0 on
trivial tasks, then measures how the farmer copes with a 1,000,000-line tasklist and with
several farmers sharing one workdir.  Standard library only; see benchmarks/README.md.

    python benchmarks/bench.py [--quick] [--json OUT] [--farmer-cmd CMD]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
PTF_VERSION = "0.1.0"
TOOLS = ("farmer", "xargs", "parallel", "pytaskfarmer")
SECTIONS = ("throughput", "scale", "contention")
TIMEOUT_EXIT = 3  # farmer's exit code when stopped by --timeout
SAMPLE_INTERVAL = 0.05  # RSS sampling period (s)
POLL_INTERVAL = 0.001  # marker / finished polling period (s)

# Every process started here, so that an interrupted run leaves nothing behind.
_LIVE: list[subprocess.Popen[bytes]] = []


# --------------------------------------------------------------------------- helpers


def log(msg: str = "") -> None:
    print(msg, flush=True)


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def count_lines(path: Path) -> int | None:
    """Number of lines in *path* (a last line without newline counts), None if missing."""
    try:
        with path.open("rb") as f:
            n = 0
            last = b"\n"
            for chunk in iter(lambda: f.read(1 << 20), b""):
                n += chunk.count(b"\n")
                last = chunk[-1:]
            return n + (last != b"\n")
    except OSError:
        return None


def line_stats(path: Path) -> tuple[int, int] | None:
    """(total, unique) non-empty lines of *path*, None if missing."""
    try:
        with path.open("rb") as f:
            lines = [ln.strip() for ln in f]
    except OSError:
        return None
    lines = [ln for ln in lines if ln]
    return len(lines), len(set(lines))


def write_tasklist(path: Path, n: int, fmt_line: Callable[[int], str], first: str = "") -> Path:
    """Write *n* lines (*first*, if given, replaces line 1) in 1 MB chunks."""
    with path.open("w") as f:
        start = 1
        if first:
            f.write(first + "\n")
            start = 2
        chunk = 50_000
        for lo in range(start, n + 1, chunk):
            hi = min(n, lo + chunk - 1)
            f.write("".join(fmt_line(i) + "\n" for i in range(lo, hi + 1)))
    return path


def first_line(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (out.stdout or out.stderr).strip() if out.returncode == 0 else ""
    return text.splitlines()[0] if text else ""


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = ln.split(":", 1)[1].strip()
                break
    mem_kb = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for ln in f:
            if ln.startswith("MemTotal:"):
                mem_kb = int(ln.split()[1])
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_gib": round(mem_kb / 2**20, 1) if mem_kb else None,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg_start": loadavg(),
    }


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(map(str, r)) for r in rows]
    widths = [len(h) for h in header]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------- processes


def launch(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    stdin_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start *argv* in its own session (so the whole tree can be signalled)."""
    with log_path.open("ab") as out:
        stdin = stdin_path.open("rb") if stdin_path else None
        try:
            p = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=stdin if stdin else subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if stdin:
                stdin.close()
    _LIVE.append(p)
    return p


def kill_tree(p: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL, the session started by :func:`launch`."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, sig)
        try:
            p.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue
    # Task processes may still linger in the group after the leader exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)


def reap(p: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ValueError):
        _LIVE.remove(p)


def wait_all(
    procs: Sequence[subprocess.Popen[bytes]], timeout: float
) -> tuple[list[int | None], bool]:
    """Wait for all *procs* until *timeout* s from now; kill the rest. -> (rcs, killed)."""
    deadline = time.monotonic() + timeout
    killed = False
    rcs: list[int | None] = []
    for p in procs:
        try:
            rcs.append(p.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            kill_tree(p)
            rcs.append(None)
            killed = True
        reap(p)
    return rcs, killed


def cleanup_live() -> None:
    for p in list(_LIVE):
        if p.poll() is None:
            kill_tree(p)
        reap(p)


class LineCounter:
    """Lines of a growing (append-only) file, reading only what was added since last time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        try:
            with self.path.open("rb") as f:
                if os.fstat(f.fileno()).st_size < self.offset:  # rewritten: start over
                    self.offset = self.lines = 0
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return self.lines
        end = data.rfind(b"\n") + 1  # count complete lines only
        self.lines += data.count(b"\n", 0, end)
        self.offset += end
        return self.lines


class TreeSampler:
    """Peak memory of the farmer's process tree, from /proc/<pid>/status.

    The tree is found through the ppid of every process (``/proc/*/task/*/children`` is often
    compiled out).  A process counts as *farmer* if its cmdline equals the root's (forked
    workers), or its argv[0] is a Python interpreter or the farmer executable (spawned
    workers); everything else (``sh`` running tasks, ``true``, ...) is ignored, and so is a
    child caught between fork() and exec() (seen in one sample only).  VmHWM is the
    kernel's per-process high-water mark, so a 50 ms sampling period only limits which
    short-lived processes are seen, not the peak of those that are.
    """

    def __init__(self, root: int, farmer_argv0: str) -> None:
        self.root = root
        self.farmer_base = os.path.basename(farmer_argv0)
        self.root_cmdline = self._cmdline(root)
        self.not_farmer: set[int] = set()
        self.previous: set[int] = set()
        self.peak_hwm_kb = 0
        self.peak_hwm_role = ""
        self.peak_total_rss_kb = 0
        self.max_farmer_procs = 0
        self.samples = 0

    @staticmethod
    def _cmdline(pid: int) -> list[str]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            return []
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]

    @staticmethod
    def _status(pid: int) -> tuple[int, int]:
        hwm = rss = 0
        try:
            with open(f"/proc/{pid}/status") as f:
                for ln in f:
                    if ln.startswith("VmHWM:"):
                        hwm = int(ln.split()[1])
                    elif ln.startswith("VmRSS:"):
                        rss = int(ln.split()[1])
                        break
        except (OSError, ValueError):
            pass
        return hwm, rss

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if len(fields) > 1:
                children.setdefault(int(fields[1]), []).append(int(name))
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, ()))
        return tree

    def _farmer_now(self, pid: int) -> bool:
        """Classify *pid* by its current cmdline; remember only 'not a farmer' (final)."""
        if pid == self.root:
            return True
        cmd = self._cmdline(pid)
        if not cmd:
            return False  # gone, or a zombie
        base = os.path.basename(cmd[0])
        farmer = cmd == self.root_cmdline or base.startswith("python") or base == self.farmer_base
        if not farmer:
            self.not_farmer.add(pid)
        return farmer

    def sample(self) -> None:
        self.samples += 1
        # The root may have exec'd since (wrapper scripts, pyenv shims): refresh its cmdline.
        self.root_cmdline = self._cmdline(self.root) or self.root_cmdline
        total = nprocs = 0
        current: set[int] = set()
        for pid in self._tree():
            if pid in self.not_farmer or not self._farmer_now(pid):
                continue
            current.add(pid)
            # A child between fork() and exec() of a task looks like the farmer (same cmdline,
            # parent's pages): count non-root processes only once seen in two samples in a row.
            if pid != self.root and pid not in self.previous:
                continue
            hwm, rss = self._status(pid)
            if hwm == 0 and rss == 0:
                continue
            nprocs += 1
            total += rss
            if hwm > self.peak_hwm_kb:
                self.peak_hwm_kb = hwm
                self.peak_hwm_role = "main" if pid == self.root else "worker"
        self.previous = current
        self.peak_total_rss_kb = max(self.peak_total_rss_kb, total)
        self.max_farmer_procs = max(self.max_farmer_procs, nprocs)


# --------------------------------------------------------------------------- tools


@dataclass
class Tool:
    name: str
    argv: Callable[[Path, Path, int], list[str]]  # (tasklist, workdir, proc) -> argv
    env: dict[str, str]
    line: Callable[[int], str]  # task number -> tasklist line
    max_tasks: int | None = None
    stdin_tasklist: bool = False  # tasklist is fed on stdin
    done: Callable[[Path], int | None] = lambda workdir: None  # tasks recorded as done
    note: str = ""
    version: str = ""


def _trivial(i: int) -> str:
    return f"true {i}"  # unique lines, so a farmer tracking tasks by content still works


def unshim(path: str) -> str:
    """The real script behind a pyenv shim, so each run does not pay for pyenv's bash."""
    if os.sep + "shims" + os.sep not in path:
        return path
    try:
        r = subprocess.run(
            ["pyenv", "which", os.path.basename(path)],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return path
    real = r.stdout.strip()
    return real if r.returncode == 0 and real and os.access(real, os.X_OK) else path


def resolve_farmer(cmd: str | None) -> tuple[list[str] | None, dict[str, str], str]:
    """-> (argv prefix, env, how it was found / why it is unavailable)."""
    env = dict(os.environ)
    if cmd:
        argv = shlex.split(cmd)
        if argv and shutil.which(argv[0]):
            argv[0] = unshim(shutil.which(argv[0]) or argv[0])
            return argv, env, f"--farmer-cmd {cmd!r}"
        if argv and os.access(argv[0], os.X_OK) and not os.path.isdir(argv[0]):
            return argv, env, f"--farmer-cmd {cmd!r}"
        return None, env, f"--farmer-cmd {cmd!r}: {argv[0] if argv else cmd!r} not found"
    found = shutil.which("farmer")
    if found:
        return [unshim(found)], env, f"console script {unshim(found)}"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    argv = [sys.executable, "-m", "taskfarmer"]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rc = subprocess.run(
                [*argv, "--help"],
                cwd=tmp,
                env=env,
                capture_output=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            ).returncode
        except (OSError, subprocess.TimeoutExpired):
            rc = -1
    if rc == 0:
        return argv, env, f"{shlex.join(argv)} (PYTHONPATH={REPO_ROOT})"
    return None, env, "no `farmer` on PATH and `python -m taskfarmer --help` fails"


def ptf_venv_dir(override: str | None) -> Path:
    if override:
        return Path(override).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "taskfarmer-bench" / f"pytaskfarmer-{PTF_VERSION}"


def ensure_pytaskfarmer(venv: Path) -> tuple[Path | None, str]:
    """Install PyTaskFarmer in its own virtualenv (reused if present). -> (python, reason)."""
    py, script = venv / "bin" / "python", venv / "bin" / "pytaskfarmer.py"
    env = ptf_env()

    def works() -> bool:
        if not (py.exists() and script.exists()):
            return False
        r = subprocess.run(
            [str(py), str(script), "--help"],
            capture_output=True,
            env=env,
            cwd=venv,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        return r.returncode == 0

    if works():
        return py, f"cached virtualenv {venv}"
    if venv.exists() and any(venv.iterdir()) and not (venv / "pyvenv.cfg").exists():
        return None, f"{venv} exists and is not a virtualenv"
    log(f"  installing pytaskfarmer=={PTF_VERSION} into {venv} ...")
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [
            str(py),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            f"pytaskfarmer=={PTF_VERSION}",
        ],
    ]
    for step in steps:
        try:
            r = subprocess.run(
                step,
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"{shlex.join(step)}: {e}"
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
            return None, f"{shlex.join(step)} failed: {tail[0]}"
    if works():
        return py, f"installed into {venv}"
    return None, f"pytaskfarmer.py --help fails in {venv}"


def ptf_env() -> dict[str, str]:
    # PyTaskFarmer's package is also called `taskfarmer`: keep ours off its sys.path.
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(var, None)
    return env


def build_tools(args: argparse.Namespace) -> tuple[list[Tool], dict[str, str]]:
    """Available tools, and the reason each missing one is skipped."""
    tools: list[Tool] = []
    skipped: dict[str, str] = {}
    wanted = args.tools

    if "farmer" in wanted:
        argv, env, how = resolve_farmer(args.farmer_cmd)
        if argv is None:
            skipped["farmer"] = how
        else:
            prefix = argv
            tools.append(
                Tool(
                    name="farmer",
                    argv=lambda tl, wd, n: [
                        *prefix,
                        str(tl),
                        "--proc",
                        str(n),
                        "--workdir",
                        str(wd),
                    ],
                    env=env,
                    line=_trivial,
                    done=lambda wd: count_lines(wd / "finished"),
                    note=how,
                    version=first_line([*prefix, "--version"], env),
                )
            )

    if "xargs" in wanted:
        xargs = shutil.which("xargs")
        if xargs is None:
            skipped["xargs"] = "xargs not on PATH"
        else:
            tools.append(
                Tool(
                    name="xargs",
                    argv=lambda tl, wd, n: [
                        xargs,
                        "-d",
                        "\\n",
                        "-P",
                        str(n),
                        "-n",
                        "1",
                        "sh",
                        "-c",
                    ],
                    env=dict(os.environ),
                    line=_trivial,
                    stdin_tasklist=True,
                    note="floor: no bookkeeping",
                    version=first_line([xargs, "--version"]),
                )
            )

    if "parallel" in wanted:
        par = shutil.which("parallel")
        version = first_line([par, "--version"]) if par else ""
        if par is None:
            skipped["parallel"] = "GNU parallel not on PATH (apt-get install -y parallel)"
        elif "GNU parallel" not in version:
            skipped["parallel"] = f"{par} is not GNU parallel ({version})"
        else:

            # parallel buffers each job's output in 2 temp files that it creates and deletes.
            # On a journal-less ext4 (this machine's /tmp), creating a file skips inodes freed
            # in the last 30 s (dirty_expire_centisecs), scanning past each one: 8,000 deletions
            # made every log file the next tool created cost up to 0.8 ms instead of 22 us.
            # Its buffers go to tmpfs, which only speeds parallel up.
            shm = ["--tmpdir", "/dev/shm"] if os.access("/dev/shm", os.W_OK) else []

            def par_argv(tl: Path, wd: Path, n: int) -> list[str]:
                return [par, "--will-cite", "-j", str(n), "--joblog", str(wd / "joblog"), *shm]

            def par_done(wd: Path) -> int | None:
                try:
                    rows = (wd / "joblog").read_text().splitlines()[1:]
                except OSError:
                    return None
                return sum(1 for r in rows if len(r.split("\t")) > 6 and r.split("\t")[6] == "0")

            tools.append(
                Tool(
                    name="parallel",
                    argv=par_argv,
                    env={**os.environ, "PARALLEL_SHELL": "/bin/sh"},  # each line -> /bin/sh -c LINE
                    line=_trivial,
                    stdin_tasklist=True,
                    done=par_done,
                    note="--joblog in the workdir" + (", buffers in /dev/shm" if shm else ""),
                    version=version,
                )
            )

    if "pytaskfarmer" in wanted:
        py, how = ensure_pytaskfarmer(ptf_venv_dir(args.ptf_venv))
        if py is None:
            skipped["pytaskfarmer"] = how
            log(f"  skipping PyTaskFarmer: {how}")
        else:
            script = py.parent / "pytaskfarmer.py"
            tools.append(
                Tool(
                    name="pytaskfarmer",
                    argv=lambda tl, wd, n: [
                        str(py),
                        str(script),
                        str(tl),
                        "--proc",
                        str(n),
                        "--workdir",
                        str(wd),
                    ],
                    env=ptf_env(),
                    # its default runner does command.split() without a shell: add the sh -c
                    line=lambda i: f"sh -c true {i}",
                    max_tasks=args.ptf_tasks,
                    done=lambda wd: count_lines(wd / "finished"),
                    note=f"{how}; quadratic in the task count",
                    version=PTF_VERSION,
                )
            )
    return tools, skipped


# --------------------------------------------------------------------------- sections


@dataclass
class RunRecord:
    tool: str
    round: int
    tasks: int
    wall_s: float
    rc: int | None
    done: int | None
    ok: bool
    rate: float | None
    note: str = ""


@dataclass
class Bench:
    args: argparse.Namespace
    base: Path
    results: dict[str, Any] = field(default_factory=dict)
    _serial: int = 0

    def rundir(self, label: str) -> Path:
        self._serial += 1
        d = self.base / f"run{self._serial:04d}-{label}"
        (d / "work").mkdir(parents=True)
        return d

    # ---- 1. throughput

    def one_run(self, tool: Tool, tasklist: Path, n: int, rnd: int, timeout: float) -> RunRecord:
        d = self.rundir(tool.name)
        wd = d / "work"
        t0 = time.perf_counter()
        p = launch(
            tool.argv(tasklist, wd, self.args.proc),
            cwd=d,
            env=tool.env,
            log_path=d / "output.log",
            stdin_path=tasklist if tool.stdin_tasklist else None,
        )
        (rc,), killed = wait_all([p], timeout)
        wall = time.perf_counter() - t0
        done = tool.done(wd)
        notes = []
        if killed:
            notes.append(f"killed after {timeout:.0f}s")
        elif rc != 0:
            notes.append(f"exit {rc}")
        if done is not None and done != n:
            notes.append(f"{done}/{n} recorded done")
        ok = not notes
        if notes:
            tail = (d / "output.log").read_text(errors="replace").strip().splitlines()[-3:]
            if tail:
                notes.append("output: " + " / ".join(tail))
        rate = n / wall if ok else (done / wall if done else None)
        return RunRecord(tool.name, rnd, n, wall, rc, done, ok, rate, "; ".join(notes))

    def throughput(self, tools: list[Tool], skipped: dict[str, str]) -> None:
        a = self.args
        log(
            f"## 1. Throughput: trivial tasks (`true`, via `sh -c`), --proc {a.proc}, "
            f"{a.rounds} round(s), round-robin\n"
        )
        lists: dict[str, tuple[Path, int]] = {}
        for t in tools:
            n = min(a.tasks, t.max_tasks) if t.max_tasks else a.tasks
            path = self.base / f"tasks-{t.name}-{n}.txt"
            lists[t.name] = (write_tasklist(path, n, t.line), n)
            log(f"  {t.name}: {n} tasks, {t.note}" + (f" [{t.version}]" if t.version else ""))
        for name, why in skipped.items():
            log(f"  {name}: SKIPPED ({why})")
        # warm-up (page cache, imports): a few tasks per tool, not counted
        for t in tools:
            wl = write_tasklist(self.base / f"warmup-{t.name}.txt", 2 * a.proc, t.line)
            self.one_run(t, wl, 2 * a.proc, 0, a.run_timeout)
        runs: list[RunRecord] = []
        for rnd in range(1, a.rounds + 1):
            shift = (rnd - 1) % len(tools) if tools else 0
            for t in tools[shift:] + tools[:shift]:  # rotate the order every round
                tl, n = lists[t.name]
                r = self.one_run(t, tl, n, rnd, a.run_timeout)
                runs.append(r)
                status = "ok" if r.ok else f"FAILED ({r.note})"
                log(
                    f"  round {rnd} {t.name:<13} {n:>6} tasks {r.wall_s:8.2f} s "
                    f"{fmt(r.rate):>9} tasks/s  {status}"
                )
        summary: dict[str, dict[str, Any]] = {}
        for t in tools:
            mine = [r for r in runs if r.tool == t.name]
            good = [r.rate for r in mine if r.ok and r.rate]
            summary[t.name] = {
                "tasks": lists[t.name][1],
                "runs": len(mine),
                "runs_ok": len(good),
                "median_wall_s": statistics.median([r.wall_s for r in mine if r.ok])
                if good
                else None,
                "median_rate": statistics.median(good) if good else None,
                "min_rate": min(good) if good else None,
                "max_rate": max(good) if good else None,
                "note": t.note,
                "version": t.version,
            }
        ref = summary.get("farmer", {}).get("median_rate")
        for s in summary.values():
            s["ratio_to_farmer"] = s["median_rate"] / ref if ref and s["median_rate"] else None
        rows = []
        for name, s in summary.items():
            rows.append(
                [
                    name,
                    f"{s['tasks']:,}",
                    f"{s['runs_ok']}/{s['runs']}",
                    fmt(s["median_wall_s"], 2),
                    fmt(s["median_rate"]),
                    f"{fmt(s['min_rate'])} - {fmt(s['max_rate'])}",
                    f"{s['ratio_to_farmer']:.2f}x" if s["ratio_to_farmer"] else "n/a",
                ]
            )
        for name in skipped:
            rows.append([name, "-", "skipped", "-", "-", "-", "-"])
        log("")
        log(
            markdown_table(
                [
                    "tool",
                    "tasks",
                    "runs ok",
                    "median wall (s)",
                    "median tasks/s",
                    "range tasks/s",
                    "vs farmer",
                ],
                rows,
            )
        )
        if "pytaskfarmer" in summary:
            log(
                f"\nPyTaskFarmer is quadratic in the task count: its rate is at "
                f"{summary['pytaskfarmer']['tasks']:,} tasks and drops at larger lists."
            )
        log("")
        self.results["throughput"] = {
            "proc": a.proc,
            "rounds": a.rounds,
            "summary": summary,
            "skipped": skipped,
            "runs": [asdict(r) for r in runs],
        }

    # ---- 2. scale

    def window_run(self, farmer: Tool, lines: int, marker: Path, tasklist: Path) -> dict[str, Any]:
        """Run the farmer with --timeout WINDOW, sampling start, progress and memory."""
        a = self.args
        d = self.rundir(f"scale{lines}")
        wd = d / "work"
        finished = LineCounter(wd / "finished")
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        argv = [*farmer.argv(tasklist, wd, a.proc), "--timeout", f"{a.window:g}"]
        t0 = time.perf_counter()
        p = launch(argv, cwd=d, env=farmer.env, log_path=d / "output.log")
        sampler = TreeSampler(p.pid, argv[0])
        t_start = t_done = None
        at_window: float | None = None  # tasks finished by t = window (interpolated)
        prev = (0.0, 0)
        next_sample = 0.0
        deadline = a.window + a.scale_grace
        killed = False
        while True:
            now = time.perf_counter() - t0
            if t_start is None and os.path.exists(marker):
                t_start = now
            if now >= next_sample:
                sampler.sample()
                count = finished.count()
                if t_done is None and count:
                    t_done = now
                if at_window is None and now >= a.window:
                    (t1, c1), span = prev, now - prev[0]
                    at_window = c1 + (count - c1) * ((a.window - t1) / span if span else 1.0)
                prev = (now, count)
                next_sample = now + SAMPLE_INTERVAL
            if p.poll() is not None:
                break
            if now > deadline:
                kill_tree(p)
                killed = True
                break
            time.sleep(POLL_INTERVAL)
        wall = time.perf_counter() - t0
        rc = p.returncode
        reap(p)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)  # stray task processes, if any
        if t_start is None and marker.exists():
            t_start = wall
        done = finished.count()
        notes = []
        if killed:
            notes.append(f"did not stop: killed after {deadline:.0f}s")
        elif rc == 0:
            notes.append("finished every task before the window ended")
        elif rc != TIMEOUT_EXIT:
            notes.append(f"unexpected exit {rc} (expected {TIMEOUT_EXIT} on --timeout)")
        if notes and not killed and rc not in (0, TIMEOUT_EXIT):
            tail = (d / "output.log").read_text(errors="replace").strip().splitlines()[-3:]
            notes.extend(tail)
        if at_window is None:  # exited before the window ended: rate over its own wall time
            in_window, span = float(done), wall
        else:
            in_window, span = at_window, a.window
        return {
            "lines": lines,
            "window_s": a.window,
            "rc": rc,
            "wall_s": wall,
            "stop_after_window_s": wall - a.window if at_window is not None else None,
            "time_to_first_start_s": t_start,
            "time_to_first_finished_s": t_done,
            "finished_in_window": in_window,
            "finished": done,
            "rate_window": in_window / span if span else None,
            "rate_after_start": (
                in_window / (span - t_start)
                if t_start is not None and in_window and span > t_start
                else None
            ),
            "peak_rss_largest_farmer_proc_mib": sampler.peak_hwm_kb / 1024,
            "peak_rss_largest_role": sampler.peak_hwm_role,
            "peak_rss_total_farmer_mib": sampler.peak_total_rss_kb / 1024,
            "farmer_procs": sampler.max_farmer_procs,
            "rss_samples": sampler.samples,
            "note": "; ".join(notes),
        }

    def scale(self, farmer: Tool | None, reason: str) -> None:
        a = self.args
        log(
            f"## 2. Scale: {a.scale_lines:,}-line vs {a.scale_small:,}-line tasklist, "
            f"`--timeout {a.window:g}` window, --proc {a.proc}\n"
        )
        if farmer is None:
            log(f"  SKIPPED: farmer unavailable ({reason})\n")
            self.results["scale"] = {"skipped": reason}
            return
        sizes = (a.scale_lines, a.scale_small)
        lists: dict[int, tuple[Path, Path]] = {}
        for lines in sizes:
            marker = self.base / f"started-{lines}"
            t = time.perf_counter()
            tl = write_tasklist(
                self.base / f"scale-{lines}.txt",
                lines,
                _trivial,
                first=f"touch {shlex.quote(str(marker))}",
            )
            lists[lines] = (tl, marker)
            log(
                f"  wrote {lines:,}-line tasklist ({tl.stat().st_size / 2**20:.1f} MiB) "
                f"in {time.perf_counter() - t:.1f} s"
            )
        runs: list[dict[str, Any]] = []
        for rnd in range(1, a.scale_rounds + 1):
            for lines in sizes if rnd % 2 else sizes[::-1]:
                tl, marker = lists[lines]
                r = self.window_run(farmer, lines, marker, tl)
                r["round"] = rnd
                runs.append(r)
                log(
                    f"  round {rnd} {lines:>9,} lines: exit {r['rc']}, first task started "
                    f"after {fmt(r['time_to_first_start_s'], 3)} s, "
                    f"{fmt(r['finished_in_window'], 0)} finished in the window "
                    f"({fmt(r['rate_window'])}/s), stopped {fmt(r['stop_after_window_s'], 2)} s "
                    f"after it, peak RSS {r['peak_rss_largest_farmer_proc_mib']:.1f} MiB"
                    + (f"  [{r['note']}]" if r["note"] else "")
                )
        for tl, _ in lists.values():
            tl.unlink()

        def med(xs: list[Any]) -> float | None:
            xs = [x for x in xs if x is not None]
            return statistics.median(xs) if xs else None

        summary: dict[int, dict[str, Any]] = {}
        for lines in sizes:
            mine = [r for r in runs if r["lines"] == lines]
            biggest = max(mine, key=lambda r: r["peak_rss_largest_farmer_proc_mib"])
            summary[lines] = {
                "lines": lines,
                "runs": len(mine),
                "exit_codes": [r["rc"] for r in mine],
                "time_to_first_start_s": med([r["time_to_first_start_s"] for r in mine]),
                "time_to_first_finished_s": med([r["time_to_first_finished_s"] for r in mine]),
                "finished_in_window": med([r["finished_in_window"] for r in mine]),
                "finished": med([r["finished"] for r in mine]),
                "wall_s": med([r["wall_s"] for r in mine]),
                "stop_after_window_s": med([r["stop_after_window_s"] for r in mine]),
                "rate_window": med([r["rate_window"] for r in mine]),
                "rate_after_start": med([r["rate_after_start"] for r in mine]),
                "peak_rss_largest_farmer_proc_mib": biggest["peak_rss_largest_farmer_proc_mib"],
                "peak_rss_largest_role": biggest["peak_rss_largest_role"],
                "peak_rss_total_farmer_mib": max(r["peak_rss_total_farmer_mib"] for r in mine),
                "farmer_procs": max(r["farmer_procs"] for r in mine),
                "completed_early": any(r["rc"] == 0 for r in mine),
            }
        rows = [
            [
                f"{r['lines']:,}",
                fmt(r["time_to_first_start_s"], 3),
                fmt(r["time_to_first_finished_s"], 3),
                fmt(r["finished_in_window"], 0),
                fmt(r["rate_window"]),
                fmt(r["rate_after_start"]),
                fmt(r["stop_after_window_s"], 2),
                f"{r['peak_rss_largest_farmer_proc_mib']:.1f} "
                f"({r['peak_rss_largest_role'] or 'n/a'})",
                f"{r['peak_rss_total_farmer_mib']:.1f}",
                str(r["farmer_procs"]),
                ",".join(map(str, r["exit_codes"])),
            ]
            for r in summary.values()
        ]
        log("")
        log(f"Medians over {a.scale_rounds} run(s) per size; peak RSS is the maximum.\n")
        log(
            markdown_table(
                [
                    "tasklist lines",
                    "first task started (s)",
                    "first in finished (s)",
                    "finished in window",
                    "tasks/s (window)",
                    "tasks/s after start",
                    "stop after window (s)",
                    "peak RSS largest farmer proc (MiB)",
                    "peak RSS all farmer procs (MiB)",
                    "farmer procs",
                    "exit",
                ],
                rows,
            )
        )
        big, small = summary[a.scale_lines], summary[a.scale_small]

        def quotient(key: str) -> float | None:
            return big[key] / small[key] if big[key] and small[key] else None

        ratio, ratio_after = quotient("rate_window"), quotient("rate_after_start")
        log(
            f"\ntasks/s {big['lines']:,} lines / {small['lines']:,} lines: "
            f"{f'{ratio_after:.2f}x' if ratio_after else 'n/a'} once started (the cost per "
            f"task), {f'{ratio:.2f}x' if ratio else 'n/a'} over the whole window (start "
            "included) (1.00x = no slowdown with list size)"
        )
        if small["completed_early"]:
            log(
                "note: the small list finished before the window ended; its rate is over its "
                "own (shorter) wall time."
            )
        log("")
        self.results["scale"] = {
            "window_s": a.window,
            "proc": a.proc,
            "summary": {str(k): v for k, v in summary.items()},
            "rate_ratio_big_to_small": ratio,
            "rate_after_start_ratio_big_to_small": ratio_after,
            "runs": runs,
        }

    # ---- 3. contention

    def contention_run(
        self, farmer: Tool, farmers: int, proc: int, tl: Path, n: int
    ) -> dict[str, Any]:
        d = self.rundir(f"cont{farmers}x{proc}")
        wd = d / "work"
        argvs = [farmer.argv(tl, wd, proc) for _ in range(farmers)]
        t0 = time.perf_counter()
        procs = [
            launch(argv, cwd=d, env=farmer.env, log_path=d / f"output{i}.log")
            for i, argv in enumerate(argvs)
        ]
        rcs, killed = wait_all(procs, self.args.run_timeout)
        wall = time.perf_counter() - t0
        stats = line_stats(wd / "finished")
        total, unique = stats if stats else (0, 0)
        notes = []
        if killed:
            notes.append(f"killed after {self.args.run_timeout:.0f}s")
        if any(rc not in (0, None) for rc in rcs):
            notes.append(f"exit codes {rcs}")
            bad = rcs.index(next(rc for rc in rcs if rc not in (0, None)))
            tail = (d / f"output{bad}.log").read_text(errors="replace").strip().splitlines()
            if tail:
                notes.append("output: " + " / ".join(tail[-3:]))
        if total != n or unique != n:
            notes.append(f"finished has {total} lines, {unique} unique, expected {n}")
        ok = not killed and all(rc == 0 for rc in rcs)
        return {
            "farmers": farmers,
            "proc": proc,
            "tasks": n,
            "wall_s": wall,
            "rcs": rcs,
            "ok": ok,
            "finished_lines": total,
            "finished_unique": unique,
            "rate": n / wall if ok else (unique / wall if unique else None),
            "note": "; ".join(notes),
        }

    def contention(self, farmer: Tool | None, reason: str) -> None:
        a = self.args
        k = a.contention_farmers
        log(
            f"## 3. Contention: {k} farmers x --proc 1 on one workdir vs 1 farmer x --proc {k}, "
            f"{a.contention_tasks:,} tasks, {a.rounds} round(s)\n"
        )
        if farmer is None:
            log(f"  SKIPPED: farmer unavailable ({reason})\n")
            self.results["contention"] = {"skipped": reason}
            return
        n = a.contention_tasks
        tl = write_tasklist(self.base / f"contention-{n}.txt", n, _trivial)
        configs = [(k, 1), (1, k)]
        runs: list[dict[str, Any]] = []
        for rnd in range(1, a.rounds + 1):
            for farmers, proc in configs if rnd % 2 else configs[::-1]:
                r = self.contention_run(farmer, farmers, proc, tl, n)
                r["round"] = rnd
                runs.append(r)
                log(
                    f"  round {rnd} {farmers} x --proc {proc}: {r['wall_s']:7.2f} s "
                    f"{fmt(r['rate']):>9} tasks/s" + (f"  [{r['note']}]" if r["note"] else "")
                )
        summary = {}
        for farmers, proc in configs:
            mine = [r for r in runs if r["farmers"] == farmers and r["proc"] == proc]
            good = [r["rate"] for r in mine if r["ok"] and r["rate"]]
            summary[f"{farmers}x{proc}"] = {
                "farmers": farmers,
                "proc": proc,
                "runs": len(mine),
                "runs_ok": len(good),
                "median_rate": statistics.median(good) if good else None,
                "median_wall_s": statistics.median([r["wall_s"] for r in mine if r["ok"]])
                if good
                else None,
                "notes": sorted({r["note"] for r in mine if r["note"]}),
            }
        many, one = summary[f"{k}x1"], summary[f"1x{k}"]
        ratio = (
            many["median_rate"] / one["median_rate"]
            if many["median_rate"] and one["median_rate"]
            else None
        )
        rows = [
            [
                f"{s['farmers']} farmer(s) x --proc {s['proc']}",
                f"{s['runs_ok']}/{s['runs']}",
                fmt(s["median_wall_s"], 2),
                fmt(s["median_rate"]),
                " / ".join(s["notes"]) or "ok",
            ]
            for s in summary.values()
        ]
        log("")
        log(
            markdown_table(
                ["config", "runs ok", "median wall (s)", "median tasks/s", "notes"], rows
            )
        )
        log(
            f"\n{k}x1 / 1x{k} tasks/s: {f'{ratio:.2f}x' if ratio else 'n/a'} "
            "(1.00x = sharing a workdir costs nothing)\n"
        )
        self.results["contention"] = {
            "tasks": n,
            "summary": summary,
            "ratio_many_to_one": ratio,
            "runs": runs,
        }


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark taskfarmer against xargs, GNU parallel and PyTaskFarmer.",
    )
    p.add_argument(
        "--quick", action="store_true", help="1 round, fewer tasks, shorter windows (about 20 s)"
    )
    p.add_argument(
        "--farmer-cmd",
        metavar="CMD",
        help="farmer command line prefix (shell-split), e.g. 'python -m taskfarmer'; "
        "default: `farmer` on PATH, else `python -m taskfarmer`",
    )
    p.add_argument("--json", metavar="OUT", help="write every number to OUT as JSON")
    p.add_argument(
        "--proc", type=int, default=2, help="parallelism for throughput and scale (default 2)"
    )
    p.add_argument("--rounds", type=int, help="round-robin rounds (default 3, quick 1)")
    p.add_argument("--tasks", type=int, help="tasks per throughput run (default 4000, quick 500)")
    p.add_argument(
        "--ptf-tasks", type=int, help="cap on PyTaskFarmer's task count (default 1000, quick 200)"
    )
    p.add_argument(
        "--scale-lines", type=int, default=1_000_000, help="big tasklist size (default 1000000)"
    )
    p.add_argument(
        "--scale-small", type=int, default=10_000, help="small tasklist size (default 10000)"
    )
    p.add_argument(
        "--window",
        type=float,
        help="--timeout given to the farmer in the scale runs (default 5, quick 3; shorter "
        "than the small list takes, so both lists run the whole window)",
    )
    p.add_argument(
        "--scale-rounds", type=int, help="runs per tasklist size, alternating (default 2, quick 1)"
    )
    p.add_argument(
        "--scale-grace",
        type=float,
        default=60.0,
        help="kill a scale run this long after its window if it has not stopped (default 60)",
    )
    p.add_argument(
        "--contention-tasks", type=int, help="tasks per contention run (default 6000, quick 400)"
    )
    p.add_argument(
        "--contention-farmers",
        type=int,
        default=4,
        help="farmers sharing a workdir, vs 1 farmer with this --proc (default 4)",
    )
    p.add_argument(
        "--run-timeout",
        type=float,
        default=180.0,
        help="kill a throughput/contention run after this many seconds (default 180)",
    )
    p.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help=f"comma-separated subset of {','.join(TOOLS)} (default all)",
    )
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default all)",
    )
    p.add_argument(
        "--ptf-venv",
        metavar="DIR",
        help="PyTaskFarmer virtualenv (default ~/.cache/taskfarmer-bench/...)",
    )
    p.add_argument("--tmpdir", help="where run directories are created (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep run directories and tasklists")
    a = p.parse_args(argv)
    defaults = {
        "rounds": (3, 1),
        "tasks": (4000, 500),
        "ptf_tasks": (1000, 200),
        "window": (5.0, 3.0),
        "scale_rounds": (2, 1),
        "contention_tasks": (6000, 400),
    }
    for key, (full, quick) in defaults.items():
        if getattr(a, key) is None:
            setattr(a, key, quick if a.quick else full)
    a.tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    for name, allowed in (("tools", TOOLS), ("sections", SECTIONS)):
        bad = set(getattr(a, name)) - set(allowed)
        if bad:
            p.error(f"--{name}: unknown {sorted(bad)}; choose from {', '.join(allowed)}")
    if (
        min(
            a.proc,
            a.rounds,
            a.scale_rounds,
            a.tasks,
            a.ptf_tasks,
            a.contention_tasks,
            a.contention_farmers,
        )
        < 1
    ):
        p.error("counts must be >= 1")
    if a.scale_lines < 2 or a.scale_small < 2:
        p.error("--scale-lines/--scale-small must be >= 2")
    return a


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Run directories and child sessions are cleaned up on SIGTERM/SIGHUP as on Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    started = time.perf_counter()
    info = machine_info()
    command = shlex.join([sys.executable, *sys.argv])
    log("# taskfarmer benchmark\n")
    log(f"command: `{command}`\n")
    log(f"- nproc: {info['nproc']} (cpu_count {info['cpu_count']})")
    log(f"- CPU: {info['cpu_model']}")
    log(f"- memory: {info['mem_total_gib']} GiB")
    log(f"- kernel: {info['kernel']} ({info['os']})")
    log(f"- Python: {info['python']} ({info['python_executable']})")
    log(f"- date: {info['date']}")
    log(f"- load average (1, 5, 15 min): {info['loadavg_start']}  (other load skews results)\n")

    base = Path(tempfile.mkdtemp(prefix="taskfarmer-bench-", dir=args.tmpdir))
    bench = Bench(args, base)
    bench.results.update(
        machine=info, command=command, config={k: v for k, v in vars(args).items() if k != "json"}
    )
    rc = 0
    try:
        if "throughput" in args.sections:
            tools, skipped = build_tools(args)
        else:
            tools, skipped = build_tools(argparse.Namespace(**{**vars(args), "tools": ["farmer"]}))
        farmer = next((t for t in tools if t.name == "farmer"), None)
        reason = skipped.get("farmer", "excluded by --tools")
        if farmer:
            log(f"farmer: {farmer.note}" + (f" [{farmer.version}]" if farmer.version else ""))
        else:
            log(f"farmer: unavailable ({reason})")
        log("")
        bench.results["farmer"] = {"how": farmer.note if farmer else None, "reason": reason}
        if "throughput" in args.sections:
            bench.throughput(tools, skipped)
        if "scale" in args.sections:
            bench.scale(farmer, reason)
        if "contention" in args.sections:
            bench.contention(farmer, reason)
    except KeyboardInterrupt:
        log("\ninterrupted")
        rc = 130
    finally:
        cleanup_live()
        # Run directories are removed only now, never between runs: deleting thousands of log
        # files would charge the next run for it (ext4's inode allocator skips inodes freed in
        # the last 30 s on a journal-less ext4: `recently_deleted` in a kernel profile), and only
        # the farmers keep per-task files, so it would bias the comparison.
        if args.keep:
            log(f"run directories kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    total = time.perf_counter() - started
    bench.results["total_runtime_s"] = total
    bench.results["loadavg_end"] = loadavg()
    log(f"total runtime: {total:.0f} s; load average now {loadavg()}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(bench.results, f, indent=2, default=str)
            f.write("\n")
        log(f"results written to {args.json}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
