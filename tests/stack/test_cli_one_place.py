"""Every argparse parser of stack/ is built in stack/cli/ alone: ``pack391``'s commands
(stack/cli/__init__.py and its command modules) and the processes' entry points
(stack/cli/processes.py). A module elsewhere holds the work, never the parser."""

from __future__ import annotations

import ast

from stack import cli
from tests.conftest import ROOT

BUILDS = {"ArgumentParser", "add_parser", "add_subparsers"}
"""The calls that build a parser: ``ArgumentParser(...)``, ``sub.add_parser(...)``,
``parser.add_subparsers(...)``."""


def builders() -> dict[str, list[str]]:
    """Each module of stack/ that builds a parser, with the calls that do (path: calls)."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "stack").rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        calls = [
            f"{name}() line {node.lineno}"
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Call)
            and (name := _called(node.func)) in BUILDS
            and (name == "ArgumentParser" or isinstance(node.func, ast.Attribute))
        ]
        if calls:
            found[path.relative_to(ROOT).as_posix()] = calls
    return found


def _called(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def test_the_scan_finds_the_parsers_of_stack_cli() -> None:
    found = builders()
    commands = {m.replace(".", "/") + ".py" for m in cli.COMMAND_GROUPS}
    assert {"stack/cli/__init__.py", "stack/cli/processes.py"} | commands <= set(found)


def test_no_module_outside_stack_cli_builds_a_parser() -> None:
    offenders = {
        path: calls for path, calls in builders().items() if not path.startswith("stack/cli/")
    }
    assert offenders == {}, (
        "build the parser in stack/cli/ (a command module, or stack/cli/processes.py for a "
        "process's entry point) and keep only the work here"
    )
