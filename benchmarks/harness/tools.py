"""The tools compared: how each is found (or installed), run and checked for completed tasks."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .files import count_lines
from .ptf import PTF_VERSION, ensure_pytaskfarmer, ptf_env, ptf_venv_dir
from .report import log

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Tool:
    """One tool: its command line, environment, tasklist format and record of completed tasks."""

    name: str
    argv: Callable[[Path, Path, int], list[str]]  # (tasklist, workdir, proc) -> argv
    env: dict[str, str]
    line: Callable[[int], str]  # task number -> tasklist line
    max_tasks: int | None = None
    stdin_tasklist: bool = False  # tasklist is fed on stdin
    done: Callable[[Path], int | None] = lambda workdir: None  # tasks recorded as done
    note: str = ""
    version: str = ""


def trivial(i: int) -> str:
    """Tasklist line *i* of a trivial task, as every shell-running tool gets it."""
    return f"true {i}"  # unique lines, so a farmer tracking tasks by content still works


def first_line(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    """The first line *argv* prints (e.g. its version), empty if it fails."""
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


def _farmer(args: argparse.Namespace) -> Tool | str:
    """The farmer under test (``--farmer-cmd``), or why it is unavailable."""
    return _farmer_tool("farmer", args.farmer_cmd)


def _baseline(args: argparse.Namespace) -> Tool | str:
    """Another farmer to compare with in the same run (``--baseline-cmd``: e.g. the previous
    commit's checkout, ``env PYTHONPATH=/path/to/old python -m taskfarmer``)."""
    return _farmer_tool("baseline", args.baseline_cmd)


def _farmer_tool(name: str, cmd: str | None) -> Tool | str:
    """A farmer run by the command line prefix ``cmd`` (see :func:`resolve_farmer`)."""
    argv, env, how = resolve_farmer(cmd)
    if argv is None:
        return how
    prefix = argv
    return Tool(
        name=name,
        argv=lambda tl, wd, n: [*prefix, str(tl), "--proc", str(n), "--workdir", str(wd)],
        env=env,
        line=trivial,
        done=lambda wd: count_lines(wd / "finished"),
        note=how,
        version=first_line([*prefix, "--version"], env),
    )


def _xargs(args: argparse.Namespace) -> Tool | str:
    """``xargs -P``, the floor: it keeps no records."""
    xargs = shutil.which("xargs")
    if xargs is None:
        return "xargs not on PATH"
    return Tool(
        name="xargs",
        argv=lambda tl, wd, n: [xargs, "-d", "\\n", "-P", str(n), "-n", "1", "sh", "-c"],
        env=dict(os.environ),
        line=trivial,
        stdin_tasklist=True,
        note="floor: no bookkeeping",
        version=first_line([xargs, "--version"]),
    )


def _parallel_done(wd: Path) -> int | None:
    """Jobs that GNU parallel's joblog records with exit value 0."""
    try:
        rows = (wd / "joblog").read_text().splitlines()[1:]
    except OSError:
        return None
    return sum(1 for r in rows if len(r.split("\t")) > 6 and r.split("\t")[6] == "0")


def _parallel(args: argparse.Namespace) -> Tool | str:
    """GNU parallel with ``--joblog`` in the workdir, or why it is unavailable."""
    par = shutil.which("parallel")
    version = first_line([par, "--version"]) if par else ""
    if par is None:
        return "GNU parallel not on PATH (apt-get install -y parallel)"
    if "GNU parallel" not in version:
        return f"{par} is not GNU parallel ({version})"
    # parallel buffers each job's output in 2 temp files that it creates and deletes.
    # On a journal-less ext4 (this machine's /tmp), creating a file skips inodes freed
    # in the last 30 s (dirty_expire_centisecs), scanning past each one: 8,000 deletions
    # made every log file the next tool created cost up to 0.8 ms instead of 22 us.
    # Its buffers go to tmpfs, which only speeds parallel up.
    shm = ["--tmpdir", "/dev/shm"] if os.access("/dev/shm", os.W_OK) else []

    def par_argv(tl: Path, wd: Path, n: int) -> list[str]:
        return [par, "--will-cite", "-j", str(n), "--joblog", str(wd / "joblog"), *shm]

    return Tool(
        name="parallel",
        argv=par_argv,
        env={**os.environ, "PARALLEL_SHELL": "/bin/sh"},  # each line -> /bin/sh -c LINE
        line=trivial,
        stdin_tasklist=True,
        done=_parallel_done,
        note="--joblog in the workdir" + (", buffers in /dev/shm" if shm else ""),
        version=version,
    )


def _pytaskfarmer(args: argparse.Namespace) -> Tool | str:
    """PyTaskFarmer in its own virtualenv (installed on first use), or why it is unavailable."""
    py, how = ensure_pytaskfarmer(ptf_venv_dir(args.ptf_venv))
    if py is None:
        log(f"  skipping PyTaskFarmer: {how}")
        return how
    script = py.parent / "pytaskfarmer.py"
    return Tool(
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


_BUILDERS: dict[str, Callable[[argparse.Namespace], Tool | str]] = {
    "farmer": _farmer,
    "baseline": _baseline,
    "xargs": _xargs,
    "parallel": _parallel,
    "pytaskfarmer": _pytaskfarmer,
}
TOOLS = tuple(_BUILDERS)


def build_tools(args: argparse.Namespace) -> tuple[list[Tool], dict[str, str]]:
    """The tools of ``--tools`` that are available, in :data:`TOOLS` order, and why each
    other one is skipped."""
    tools: list[Tool] = []
    skipped: dict[str, str] = {}
    for name in TOOLS:
        if name not in args.tools or (name == "baseline" and not args.baseline_cmd):
            continue
        tool = _BUILDERS[name](args)
        if isinstance(tool, Tool):
            tools.append(tool)
        else:
            skipped[name] = tool
    return tools, skipped
