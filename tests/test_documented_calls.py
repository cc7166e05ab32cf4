"""Every call the docs show works as written.

Each ``pack391 call pack391_X '{json}'`` in README.md and docs/*.md (a ``\\``-continued
command line included; no JSON means ``{}``, as the CLI sends) names a callable that
``main.py`` exports, and its JSON passes that callable's request model through the edge's
own parser (:func:`shared.edge.parse_request`: what a real call meets after
authorization). A failure names the file and line."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from shared.edge import EdgeSpec

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class DocCall:
    where: str
    name: str
    raw: str | None

    def __str__(self) -> str:
        return f"{self.where}: pack391 call {self.name} {self.raw or ''}".rstrip()


def documented_calls() -> list[DocCall]:
    found: list[DocCall] = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            start, text = i, lines[i]
            while text.rstrip().endswith("\\") and i + 1 < len(lines):  # continued
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            match = re.search(r"pack391 call (pack391_\w+)(.*)", text)
            if match is None:
                continue
            try:
                words = shlex.split(match[2], comments=True)
            except ValueError:
                words = []
            raw = next((w for w in words[:1] if not w.startswith("-")), None)
            where = f"{path.relative_to(ROOT)}:{start + 1}"
            found.append(DocCall(where, match[1], raw))
    return found


CALLS = documented_calls()


def callables() -> dict[str, EdgeSpec[Any]]:
    """Every callable of main.py -> what its decorator declared."""
    import main
    from shared.edge import edge_spec_of

    specs = {name: edge_spec_of(getattr(main, name)) for name in dir(main)}
    return {name: spec for name, spec in specs.items() if name.startswith("pack391") and spec}


def test_the_docs_show_calls() -> None:
    assert len(CALLS) >= 30, "the extraction found too few calls: is the pattern still right?"


@pytest.mark.parametrize("call", CALLS, ids=[c.where for c in CALLS])
def test_a_documented_call_works_as_written(call: DocCall) -> None:
    from shared.edge import parse_request
    from shared.errors import InvalidInput

    functions = callables()
    assert call.name in functions, f"{call}: no such callable in main.py"
    try:
        data = {} if call.raw is None else json.loads(call.raw)
    except json.JSONDecodeError as exc:
        pytest.fail(f"{call}: not JSON: {exc}")
    model = functions[call.name].request
    try:
        parse_request(model, data)
    except InvalidInput as exc:
        pytest.fail(f"{call}: INVALID_ARGUMENT {exc.details}")
