"""``shared.thresholds`` is one package with a module per area, and every number in it
ships for a reason.

- Every module of the package is star-imported by its ``__init__``, every constant of a
  module is in its ``__all__``, and no name is defined twice: ``t.X`` reaches them all.
- Every constant has its docstring.
- Every constant is used by the deployed bundle (``functions/``, ``shared/``, ``main.py``).
  A number only the local stack, the benchmarks or the tests use belongs in
  :mod:`stack.constants`; one used nowhere is deleted.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import thresholds
from tests.conftest import ROOT

PACKAGE = "shared.thresholds"
PACKAGE_DIR = ROOT / "shared" / "thresholds"
AREA_MODULES = sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)]))


def _assignments(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Module-level constants (UPPER_CASE names) and the index of their statement."""
    for index, node in enumerate(tree.body):
        targets: list[ast.expr] = []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Assign):
            targets = list(node.targets)
        for target in targets:
            if isinstance(target, ast.Name) and target.id.isupper():
                yield target.id, index


def _module_tree(name: str) -> ast.Module:
    return ast.parse((PACKAGE_DIR / f"{name}.py").read_text(encoding="utf-8"))


def _defined() -> dict[str, list[str]]:
    """constant -> the modules of the package that define it."""
    found: dict[str, list[str]] = {}
    for module in AREA_MODULES:
        for name, _ in _assignments(_module_tree(module)):
            found.setdefault(name, []).append(module)
    return found


def test_the_package_has_the_area_modules() -> None:
    assert set(AREA_MODULES) == {
        "backup", "common", "ddos", "deploy", "load", "market", "ops", "scaling", "slo",
    }  # fmt: skip


def test_init_star_imports_every_module_of_the_package() -> None:
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text(encoding="utf-8"))
    star_imported = {
        node.module.removeprefix(f"{PACKAGE}.")
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        and node.module is not None
        and node.module.startswith(f"{PACKAGE}.")
        and [alias.name for alias in node.names] == ["*"]
    }
    assert star_imported == set(AREA_MODULES)
    defines = [name for name, _ in _assignments(tree)]
    assert defines == [], f"define constants in an area module, not in __init__: {defines}"


@pytest.mark.parametrize("module", AREA_MODULES)
def test_every_constant_of_a_module_is_exported_and_reachable(module: str) -> None:
    loaded = importlib.import_module(f"{PACKAGE}.{module}")
    constants = {name for name, _ in _assignments(_module_tree(module))}
    exported = set(getattr(loaded, "__all__", ()))
    assert constants - exported == set(), f"add to {module}.__all__"
    assert exported - constants == set(), f"{module}.__all__ names what it does not define"
    for name in constants:
        assert getattr(thresholds, name) is getattr(loaded, name), name


def test_no_constant_is_defined_twice() -> None:
    twice = {name: where for name, where in _defined().items() if len(where) > 1}
    assert twice == {}


@pytest.mark.parametrize("module", AREA_MODULES)
def test_every_constant_has_its_docstring(module: str) -> None:
    tree = _module_tree(module)
    undocumented = [
        name
        for name, index in _assignments(tree)
        if not (
            index + 1 < len(tree.body)
            and isinstance(doc := tree.body[index + 1], ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        )
    ]
    assert undocumented == []


def _bundle_files() -> Iterator[Path]:
    yield ROOT / "main.py"
    for top in ("functions", "shared"):
        yield from sorted((ROOT / top).rglob("*.py"))


def _names_used(path: Path) -> set[str]:
    """Names of ``shared.thresholds`` that ``path`` reads: imported from the package (or
    one of its modules), read as an attribute of the package, or (inside the package) read
    by another constant's definition."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if path.is_relative_to(PACKAGE_DIR):
        return {
            node.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
        }
    aliases: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module == PACKAGE or node.module.startswith(f"{PACKAGE}."):
                used.update(alias.name for alias in node.names)
            elif node.module == "shared":
                aliases.update(
                    alias.asname or alias.name for alias in node.names if alias.name == "thresholds"
                )
        elif isinstance(node, ast.Import):
            aliases.update(alias.asname for alias in node.names if alias.asname == PACKAGE)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        by_alias = isinstance(owner, ast.Name) and owner.id in aliases
        by_path = (
            isinstance(owner, ast.Attribute)
            and owner.attr == "thresholds"
            and isinstance(owner.value, ast.Name)
            and owner.value.id == "shared"
        )
        if by_alias or by_path:
            used.add(node.attr)
    return used


def test_every_constant_is_used_by_the_bundle() -> None:
    used: set[str] = set()
    for path in _bundle_files():
        used |= _names_used(path)
    unused = sorted(set(_defined()) - used)
    assert unused == [], (
        f"{unused}: used by no module of functions/ or shared/. A number only the local "
        "stack, the benchmarks or the tests use goes to stack/constants.py; delete a dead one."
    )
