"""PyTaskFarmer 0.1.0 itself, from PyPI, in its own virtualenv: to compare with and to make
workdirs that ``farmer`` continues.

The virtualenv is built once (``python3 -m venv`` + ``pip install PyTaskFarmer==0.1.0``, about
10 s) into the pytest cache directory and reused by later sessions. PyTaskFarmer runs with
nothing of ours on its path: its ``taskfarmer`` package is its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

VERSION = "0.1.0"


@dataclass(frozen=True)
class PyTaskFarmer:
    """A virtualenv with PyTaskFarmer installed."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def script(self) -> Path:
        return self.root / "bin" / "pytaskfarmer.py"

    def package(self) -> Path:
        """Its ``taskfarmer`` package directory."""
        out = subprocess.run([str(self.python), "-c",
                              "import taskfarmer, os; print(os.path.dirname(taskfarmer.__file__))"],
                             capture_output=True, text=True, check=True, env=self.env({}),
                             cwd=self.root)  # not ours, in the current directory
        return Path(out.stdout.strip())

    def env(self, extra: Mapping[str, str], tmpdir: Path | None = None) -> dict[str, str]:
        """An environment for PyTaskFarmer: none of our ``PYTHONPATH``, its lock files in
        ``tmpdir`` (its ``lock_area``: ``SCRATCH``, else ``TMP``, else ``TMPDIR``)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SLURM") and k not in ("PYTHONPATH", "SCRATCH", "TMP",
                                                          "TMPDIR", "TASKFARMER_LOCK")}
        if tmpdir is not None:
            env["TMPDIR"] = str(tmpdir)
        env.update(extra)
        return env

    def argv(self, args: Sequence[str]) -> list[str]:
        """``python pytaskfarmer.py ARGS``."""
        return [str(self.python), str(self.script), *args]

    def run(self, args: Sequence[str], cwd: Path, env: Mapping[str, str],
            timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``pytaskfarmer.py ARGS`` to its end (``tmpdir`` for locks: ``cwd``)."""
        return subprocess.run(self.argv(args), cwd=cwd, env=self.env(env, cwd),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def start(self, args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> subprocess.Popen:
        """Start ``pytaskfarmer.py ARGS`` in the background (its own session)."""
        return subprocess.Popen(self.argv(args), cwd=cwd, env=self.env(env, cwd),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def build(cache: Path) -> PyTaskFarmer:
    """The virtualenv in ``cache/venv``, built there first if missing.

    Built in a sibling directory and renamed into place, so an interrupted build is never
    mistaken for a finished one and concurrent sessions do not mix.

    Raises:
        RuntimeError: venv or pip failed (the message has their output).
    """
    target = cache / f"venv-{VERSION}"
    found = PyTaskFarmer(target)
    if found.script.is_file():
        return found
    cache.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="venv-", dir=cache))
    try:
        for argv in ([sys.executable, "-m", "venv", str(building)],
                     [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet",
                      "--disable-pip-version-check", f"PyTaskFarmer=={VERSION}"]):
            result = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                                    env=PyTaskFarmer(building).env({}),
                                    stdin=subprocess.DEVNULL)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
        try:
            os.rename(building, target)
        except OSError:  # another session finished first
            pass
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return found
