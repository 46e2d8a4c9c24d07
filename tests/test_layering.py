"""hac's import graph: every module imports, no module imports itself in a cycle, and sub-packages import
only the layers below them (read from the source with ``ast``, function-level imports included,
``if TYPE_CHECKING:`` blocks left out)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import hac

ROOT = Path(hac.__file__).parent

LAYERS = {
    "core": 0,
    "hub": 1,
    "models": 2, "codecs": 2,
    "attacks": 3, "defence": 3,
    "evaluation": 4, "rd": 4, "audit": 4,
    "training": 5,
    "cli": 6, "app": 6,
}
"""A sub-package may import its own layer's sub-packages and the ones below (``hac/__init__.py`` and
``hac/__main__.py`` sit above all). Same-layer pairs may not form a module cycle either (tested below)."""

KNOWN_WRONG_WAY: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = ["hac", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every import statement, at any depth, outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _import_nodes_of(child))
            continue
        yield from _import_nodes_of(node)


def _import_nodes_of(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _import_nodes(node)


def _imports(name: str) -> set[str]:
    """The hac modules ``name`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "hac")
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.split(".")[0] != "hac":
            continue
        for alias in node.names:
            found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
    return found - {name}


GRAPH = {name: _imports(name) for name in MODULES}


def _subpackage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_subpackage_has_a_layer():
    folders = {path.name for path in ROOT.iterdir() if (path / "__init__.py").is_file()}
    assert folders == set(LAYERS)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_import_cycle_between_modules():
    """Tarjan's strongly connected components of the module graph; each must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node]:
            if target not in MODULES:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in MODULES:
        if name not in index:
            visit(name)
    assert cycles == []


def test_subpackages_import_only_their_layer_and_below():
    wrong = set()
    for name, targets in GRAPH.items():
        source = _subpackage(name)
        for target in targets:
            destination = _subpackage(target)
            if source and destination and LAYERS[destination] > LAYERS[source]:
                wrong.add((name, target))
    assert sorted(wrong - KNOWN_WRONG_WAY) == []
    assert sorted(KNOWN_WRONG_WAY - wrong) == [], "an import listed as known is gone: remove it from KNOWN_WRONG_WAY"


def test_core_imports_nothing_of_hac_outside_core():
    assert {(n, t) for n, ts in GRAPH.items() if _subpackage(n) == "core" for t in ts if _subpackage(t) != "core"} == set()


def test_the_checker_sees_function_level_imports_and_skips_type_checking_blocks():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from hac.app import ui\n"
        "def f():\n    from hac.training import loop\n"
    )
    assert [node.module for node in _import_nodes(tree)] == ["typing", "hac.training"]
