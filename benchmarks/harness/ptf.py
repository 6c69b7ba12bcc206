"""PyTaskFarmer 0.1.0, installed on first use into its own virtualenv, never the repository's."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from .report import log

PTF_VERSION = "0.1.0"


def ptf_venv_dir(override: str | None) -> Path:
    """``--ptf-venv``, else ``~/.cache/taskfarmer-bench/pytaskfarmer-VERSION``."""
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
    """Our environment without PYTHONPATH and the like, for PyTaskFarmer.

    PyTaskFarmer's package is also called ``taskfarmer``: ours must stay off its sys.path.
    """
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(var, None)
    return env
