"""An installed (not editable) taskfarmer finds the runner and tasklist definitions it ships."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

REPO = Path(__file__).resolve().parents[2]
#: What an sdist holds: enough to build the package.
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "taskfarmer", "runners.d", "tasklists.d")

PROBE = """
from pathlib import Path
import taskfarmer
from taskfarmer.registry.catalog import RUNNERS, TASKLISTS, Catalog, search_directories
print(taskfarmer.__file__)
for kind in (RUNNERS, TASKLISTS):
    directories = search_directories(kind, {"HOME": "/nonexistent"}, Path.cwd())
    print(directories[0])
    print(" ".join(sorted(Catalog.load(kind, directories).definitions)))
"""


def run(*argv: object, cwd: Path) -> str:
    # Without PYTHONPATH: tests run with PYTHONPATH=checkout, which would shadow the install.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_installed_package_finds_shipped_definitions(tmp_path: Path) -> None:
    pytest.importorskip("wheel", reason="building a wheel offline needs the wheel package "
                                        "(pip install -e '.[test]')")
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--wheel-dir", tmp_path / "dist", source, cwd=tmp_path)
    [built] = (tmp_path / "dist").glob("taskfarmer-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", built,
        cwd=tmp_path)
    # The dependencies (click, rich) from this test's environment, as a path only:
    # its .pth files (the editable install of the checkout) are not read from there.
    [site] = venv.glob("lib/python3*/site-packages")
    (site / "dependencies.pth").write_text(str(Path(click.__file__).parent.parent) + "\n")
    shutil.rmtree(source)  # nothing may come from the copy the wheel was built from

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    module, runners, runner_names, tasklists, tasklist_names = run(
        python, "-c", PROBE, cwd=elsewhere).splitlines()
    assert Path(module).resolve().is_relative_to(venv.resolve())
    assert Path(runners) == (venv / "share" / "taskfarmer" / "runners.d").resolve()
    assert Path(tasklists) == (venv / "share" / "taskfarmer" / "tasklists.d").resolve()
    assert runner_names.split() == ["apptainer-example", "docker-example", "podman-example",
                                    "shifter-example"]
    assert tasklist_names.split() == ["template-example"]
    # PyTaskFarmer's command name is installed too, as the same CLI.
    for command in ("farmer", "pytaskfarmer.py"):
        script = (venv / "bin" / command).read_text()
        assert "from taskfarmer.cli import" in script, script
    assert "pytaskfarmer_main" in (venv / "bin" / "pytaskfarmer.py").read_text()
