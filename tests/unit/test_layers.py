"""The package's architecture, pinned: which part may import which, and no import cycle.

Each top-level part of ``taskfarmer`` (a sub-package or a top-level module) sits in a layer and
imports only from layers below it; parts of one layer are independent of each other. Imports
under ``if TYPE_CHECKING:`` are annotations only and do not count. The order is the one in
README.md's package map (bottom first).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "taskfarmer"

#: Bottom to top. A part may import from any part of a lower layer, never from a higher one
#: or from another part of its own layer.
LAYERS: list[set[str]] = [
    {"errors", "__init__"},
    {"ini"},
    {"hpc"},
    {"tasks"},
    {"store"},
    {"logs", "timeline"},
    {"runners"},
    {"farm", "status"},
    # what exists for PyTaskFarmer users and for plugins written against earlier releases
    {"compat", "task", "atlas", "config", "resources"},
    {"registry"},
    {"cli"},
    {"__main__"},
]
LAYER = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            for other in node.orelse:
                yield from _imports(other)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The ``taskfarmer`` modules that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from . import x``: x may be a module of the package
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("taskfarmer") and target != name:
                found.add(target)
    return found


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


@functools.cache
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def test_every_part_has_a_layer() -> None:
    assert {part(name) for name in modules()} <= set(LAYER)


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_go_down_the_layers(module: str) -> None:
    mine = LAYER[part(module)]
    wrong = sorted(target for target in graph()[module]
                   if part(target) != part(module) and LAYER[part(target)] >= mine
                   and target != "taskfarmer")
    assert not wrong, f"{module} (layer {mine}) imports {wrong}"


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if target == "taskfarmer":
                continue
            if state.get(target) == 1:
                cycle = [*path[path.index(target):], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


#: One class, one job: a class longer than this is doing more than one (split it along a job,
#: not by moving whatever fits).
MAX_CLASS_LINES = 300
#: At most this many modules at the top of the package; the rest lives in sub-packages.
MAX_TOP_MODULES = 10


def test_no_class_is_over_the_size_limit() -> None:
    big = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    big.append(f"{name}.{node.name}: {length} lines")
    assert not big, big


def test_few_modules_at_the_top() -> None:
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
