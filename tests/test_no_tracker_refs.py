"""The bundle's names and docs stand alone: no file of the repository points to the
project's issue tracker (an issue's number, in brackets or not), which a reader of the code
does not have. Say the behaviour or the reason instead.

A static scan of every text file git tracks, or would track (``git ls-files`` with the new
files that are not ignored): Python, Lua, Markdown, the Makefile, firestore.rules, the
requirements, the workflows, anything else; binary files are skipped."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SELF = Path(__file__).resolve()
"""Left out of the scan: this file's examples of the pattern are references on purpose."""

TRACKER_REF = re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE)


def _files() -> Iterator[Path]:
    """Every file git tracks, plus the new ones it would track (not ignored), that is on disk."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode("utf-8")
    for name in sorted(set(filter(None, listed.split("\0")))):
        path = ROOT / name
        if path.is_file() and path.resolve() != SELF:  # a deleted file is still in the index
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
    assert {"Makefile", "firestore.rules", "requirements.in", "requirements-dev.in"} <= scanned
    assert ".github/workflows/deploy.yml" in scanned
    assert "tests/test_no_tracker_refs.py" not in scanned


def test_no_file_of_the_bundle_points_to_the_tracker() -> None:
    found = [ref for path in _files() for ref in _references(path)]
    assert not found, (
        "say the behaviour or the reason instead of the tracker's number:\n" + "\n".join(found)
    )
