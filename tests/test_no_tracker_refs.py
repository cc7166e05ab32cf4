"""The bundle's names and docs stand alone: no file of ``functions/``, ``shared/``,
``main.py``, ``stack/``, ``bench/``, ``tests/``, ``docs/`` or ``README.md`` points to the project's
issue tracker (an issue's number, in brackets or not), which a reader of the code does not
have. Say the behaviour or the reason instead.

A static scan of every text file (Python, Lua, Markdown, anything else that is not a
cache)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCANNED = [
    ROOT / "main.py",
    ROOT / "shared",
    ROOT / "functions",
    ROOT / "stack",
    ROOT / "bench",
    ROOT / "tests",
    ROOT / "docs",
    ROOT / "README.md",
]

SELF = Path(__file__).resolve()
"""Left out of the scan: this file's examples of the pattern are references on purpose."""

TRACKER_REF = re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE)


def _files() -> Iterator[Path]:
    for top in SCANNED:
        if top.is_file():
            yield top
            continue
        for path in sorted(top.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path == SELF:
                continue
            yield path


def _references(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:  # not text: nothing a reader reads
        return []
    return [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        if TRACKER_REF.search(line)
    ]


def test_the_pattern_finds_what_it_is_meant_to() -> None:
    for ref in ("(issue 21)", "Issue 13", "issues 4", "issue #22", "since issue 22 one"):
        assert TRACKER_REF.search(ref), ref
    for fine in ("an issue", "tissue 4", "issued 3 tokens", "issuer"):
        assert not TRACKER_REF.search(fine), fine


def test_the_scan_covers_the_bundle() -> None:
    scanned = {p.relative_to(ROOT).as_posix() for p in _files()}
    assert {"main.py", "shared/config/__init__.py", "functions/market/service.py"} <= scanned
    assert any(p.endswith(".lua") for p in scanned)
    assert {"functions/ops/service.py", "functions/backup/managed.py"} <= scanned
    assert {"README.md", "docs/benchmarks.md", "bench/coldstart.py", "tests/lanes.py"} <= scanned
    assert "tests/test_no_tracker_refs.py" not in scanned


def test_no_file_of_the_bundle_points_to_the_tracker() -> None:
    found = [ref for path in _files() for ref in _references(path)]
    assert not found, (
        "say the behaviour or the reason instead of the tracker's number:\n" + "\n".join(found)
    )
