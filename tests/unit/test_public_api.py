"""The import paths users and their INI files name keep working (the public surface, pinned).

Runner INI files name ``taskfarmer.runners.X``, tasklist INI files ``taskfarmer.tasks.X`` or
PyTaskFarmer's ``taskfarmer.task.X`` / ``taskfarmer.atlas.X``; runner classes written for
earlier releases import ``taskfarmer.config.flag`` and ``taskfarmer.resources.SlotResources``.
Every dotted class path written in the shipped INI files, the docs and the examples resolves.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PUBLIC = {
    "taskfarmer.runners": {"ApptainerRunner", "BasicRunner", "DockerRunner", "NullRunner",
                           "Runner", "ShifterRunner", "SlotResources"},
    "taskfarmer.tasks": {"Task", "TaskList", "ListTaskList", "TemplateTaskList"},
    "taskfarmer.task": {"TaskList", "ListTaskList"},
    "taskfarmer.atlas": {"TransformTaskList", "AthenaTaskList"},
    "taskfarmer.errors": {"TaskfarmerError", "TasklistError", "StateError", "WorkdirError",
                          "FilesystemError", "LockError", "ConfigError", "UsageError",
                          "InstallError", "ExitCode"},
    "taskfarmer.ini": {"flag", "words"},
    "taskfarmer.config": {"flag", "words"},
    "taskfarmer.resources": {"SlotResources"},
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_import(module: str) -> None:
    loaded = importlib.import_module(module)
    assert {name for name in PUBLIC[module] if hasattr(loaded, name)} == PUBLIC[module]


def test_runners_exports_exactly_its_public_names() -> None:
    import taskfarmer.runners
    assert set(taskfarmer.runners.__all__) == PUBLIC["taskfarmer.runners"]


def test_aliases_are_the_same_objects() -> None:
    from taskfarmer import config, ini, resources, runners
    assert (config.flag, config.words) == (ini.flag, ini.words)
    assert resources.SlotResources is runners.SlotResources


def _class_paths() -> set[str]:
    texts = [path.read_text() for folder in ("runners.d", "tasklists.d", "docs", "examples")
             for path in sorted((REPO / folder).rglob("*")) if path.suffix in (".ini", ".md")]
    texts.append((REPO / "README.md").read_text())
    found = set()
    for text in texts:
        found.update(re.findall(r"\btaskfarmer(?:\.[a-z_]+)+\.[A-Z]\w+", text))
    return found


def test_docs_and_ini_files_name_some_classes() -> None:
    assert {"taskfarmer.runners.BasicRunner", "taskfarmer.tasks.TemplateTaskList"} <= \
        _class_paths()


@pytest.mark.parametrize("path", sorted(_class_paths()))
def test_every_class_path_in_docs_and_ini_files_resolves(path: str) -> None:
    module, _, name = path.rpartition(".")
    assert hasattr(importlib.import_module(module), name), path
