"""Sizes a reader can hold: no module of the bundle or the tooling (functions/, shared/,
stack/, bench/, main.py) over 500 lines, and no class over 250. A module or class that
grows past them is split along its responsibilities (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_MAX_LINES = 500
CLASS_MAX_LINES = 250


def _sources() -> list[Path]:
    found = [ROOT / "main.py"]
    for top in ("functions", "shared", "stack", "bench"):
        found += sorted(p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)
    return found


def test_the_scan_sees_the_tree() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _sources()}
    assert {"main.py", "shared/edge.py", "functions/ddos/edges.py", "stack/cli/serve.py"} <= names


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_over_500_lines_and_no_class_over_250(path: Path) -> None:
    text = path.read_text()
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    assert lines <= MODULE_MAX_LINES, f"{lines} lines: split it along its responsibilities"
    big = [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ClassDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > CLASS_MAX_LINES
    ]
    assert big == [], big
