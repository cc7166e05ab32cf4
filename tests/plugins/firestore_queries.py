"""The suite's Firestore index check: every query the bundle runs during the
tests is recorded, and the run fails when one needs an index that
``firestore.indexes.json`` does not declare.

The emulator answers every query without an index; production Firestore answers
``FAILED_PRECONDITION: The query requires an index``. So the suite records the shape of
each query sent to the emulator, in every process (the tests' own, the xdist workers,
the local stack, the sandbox and its workers, the Firebase CLI's Python workers, CLI
calls: :mod:`pack391_firestore_recorder`, loaded through ``sitecustomize`` from a
directory this plugin puts on ``PYTHONPATH``), and checks them all once, at the end of
the session, in the process that owns it (the xdist controller, or the only process),
by Firestore's rules (:mod:`tests.plugins.firestore_indexes`).

A missing index fails the run (exit status 1) with the JSON entry to paste and a test
that ran the query. Any run checks what it recorded, a single file's included: a missing
index is a production bug whichever test finds it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.plugins import firestore_indexes as rule

ROOT = Path(__file__).resolve().parents[2]
SITE_DIR = Path(__file__).resolve().parent / "firestore_site"
INDEXES_FILE = ROOT / "firestore.indexes.json"
INDEXES_ENV = "PACK391_FIRESTORE_INDEXES"
"""Check against another index file (proving the check fails on an older one:
``git show f614e37^:firestore.indexes.json > /tmp/old.json``)."""
RECORDER = "pack391_firestore_recorder"
ENV = "PACK391_FIRESTORE_QUERY_LOG"
_OWNED = pytest.StashKey[Path]()
_REPORT = pytest.StashKey[list[str]]()


def recorder() -> ModuleType:
    """The recorder module: the one ``sitecustomize`` loaded in this process, if it did."""
    if RECORDER not in sys.modules:
        sys.path.insert(0, str(SITE_DIR))
        try:
            __import__(RECORDER)
        finally:
            sys.path.remove(str(SITE_DIR))
    return sys.modules[RECORDER]


def enable(directory: Path) -> None:
    """Record into ``directory`` from this process and every process started after."""
    os.environ[ENV] = str(directory)
    path = os.environ.get("PYTHONPATH", "")
    if str(SITE_DIR) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE_DIR), path) if p)
    recorder().install()


def records(directory: Path) -> Iterator[dict[str, Any]]:
    """Every record of every process, in file order."""
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)


def report(recorded: list[dict[str, Any]], declared: rule.Declared) -> list[str]:
    """The failure's lines (empty: every query of the bundle has its index). Queries a
    test sends itself (``origin: tests``: reading what the bundle wrote) are not the
    bundle's and are left out."""
    lines: list[str] = []
    errors = [r for r in recorded if "error" in r]
    for r in errors:
        lines.append(f"recorder error ({r.get('test') or r.get('program')}): {r['error']}")
    queries = [r for r in recorded if "query" in r and r.get("origin") != "tests"]
    for req, first in rule.check(queries, declared):
        where = first.get("test") or f"outside a test ({first.get('program')})"
        lines += [
            "",
            f"query: {rule.describe(first['query'])}",
            f"run by: {where}",
            f'needs, in firestore.indexes.json "{req.section}":',
            *json.dumps(req.as_json(), indent=2).splitlines(),
        ]
    return lines


def indexes_file() -> Path:
    return Path(os.environ.get(INDEXES_ENV) or INDEXES_FILE)


def _owner(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if not _owner(config):
        recorder().install()  # inherited the directory from the controller
        return
    if os.environ.get(ENV):  # an outer run's directory: record into it, it checks
        enable(Path(os.environ[ENV]))
        return
    directory = Path(tempfile.mkdtemp(prefix="pack391-firestore-queries-"))
    config.stash[_OWNED] = directory
    enable(directory)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    directory = session.config.stash.get(_OWNED, None)
    if directory is None or exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return
    declared = rule.Declared.load(indexes_file().read_text())
    lines = report(list(records(directory)), declared)
    session.config.stash[_REPORT] = lines
    if lines:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(_REPORT, None)
    if lines is None:
        return
    directory = config.stash[_OWNED]
    count = sum(1 for r in records(directory) if "query" in r and r.get("origin") != "tests")
    if not lines:
        terminalreporter.write_line(
            f"firestore indexes: {count} query shapes of the bundle recorded, every one has "
            "its index "
            "(tests/plugins/firestore_queries.py)"
        )
        return
    terminalreporter.section("Firestore queries without their index", sep="=", red=True)
    terminalreporter.write_line(
        "Production Firestore refuses these queries (FAILED_PRECONDITION: The query "
        "requires an index); the emulator does not. Add each entry to "
        f"{indexes_file()} (tests/plugins/firestore_indexes.py says why):"
    )
    for line in lines:
        terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = config.stash.get(_OWNED, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
        os.environ.pop(ENV, None)


def declared_without(
    doc: Mapping[str, Any], drop: Sequence[tuple[str, tuple[str, ...]]]
) -> rule.Declared:
    """``doc`` less the composite indexes named ``(collectionGroup, field paths)``."""
    kept = [
        index
        for index in doc.get("indexes", [])
        if (index["collectionGroup"], tuple(f["fieldPath"] for f in index["fields"])) not in drop
    ]
    return rule.Declared.parse({**doc, "indexes": kept})
