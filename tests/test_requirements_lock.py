"""The runtime requirements are locked with hashes: what ``firebase deploy``
installs (Cloud Build: ``pip install -r requirements.txt``) is exactly the tested set.

requirements.in (the top-level pins) -> requirements.txt; requirements-dev.in (the runtime
requirements plus the tools, constrained to requirements.txt) -> requirements-dev.txt, what
``make setup`` installs. Both compiled by ``make lock`` (pip-compile --generate-hashes)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, hashes)} of a pip-compile lock; fails on any other requirement."""
    out: dict[str, tuple[str, list[str]]] = {}
    logical = re.sub(r"\\\n", " ", path.read_text())  # continuation lines joined
    for line in logical.splitlines():
        line = line.split(" #", 1)[0].strip() if not line.startswith("#") else ""
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: not pinned with ==: {line[:80]}"
        hashes = HASH.findall(line)
        assert hashes, f"{path.name}: {match[1]} has no --hash"
        assert canonical(match[1]) not in out, f"{path.name}: {match[1]} twice"
        out[canonical(match[1])] = (match[2], hashes)
    return out


def top_level(path: Path) -> dict[str, str]:
    """{name: version} of a .in file's own pins (``-r``/``-c`` lines skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: pin every top-level requirement with ==: {line}"
        out[canonical(match[1])] = match[2]
    return out


RUNTIME = entries(ROOT / "requirements.txt")
DEV = entries(ROOT / "requirements-dev.txt")


def test_every_line_of_the_locks_is_pinned_with_hashes() -> None:
    assert len(RUNTIME) > 40  # the transitive set, not the top level only
    assert all(len(hashes) >= 1 for _, hashes in RUNTIME.values())
    text = (ROOT / "requirements.txt").read_text()
    assert "://" not in text  # no index or download address recorded


def test_the_in_files_and_the_locks_agree() -> None:
    wanted = top_level(ROOT / "requirements.in")
    assert "firebase-functions" in wanted and "firebase-admin" in wanted
    for name, version in wanted.items():
        assert name in RUNTIME, f"{name} is in requirements.in, not in the lock: make lock"
        assert RUNTIME[name][0] == version, f"{name}: {version} wanted, {RUNTIME[name][0]} locked"
    dev_in = (ROOT / "requirements-dev.in").read_text().splitlines()
    assert "-r requirements.in" in dev_in and "-c requirements.txt" in dev_in
    for name, version in top_level(ROOT / "requirements-dev.in").items():
        assert DEV.get(name, ("",))[0] == version, f"{name}: not locked at {version}: make lock"
    # the tests run on the deployed set: every runtime package, same version, same files
    for name, (version, hashes) in RUNTIME.items():
        assert DEV.get(name) == (version, hashes), f"{name}: the dev lock differs: make lock"


def test_the_venv_is_the_lock() -> None:
    """The venv this suite runs in holds every locked package at its locked version
    (``make setup`` installs requirements-dev.txt, hash-checked)."""
    wrong = {}
    for name, (version, _) in DEV.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"locked vs installed (run make setup): {wrong}"


@pytest.mark.parametrize("target", ["$(STAMP):"])
def test_make_setup_installs_the_dev_lock_and_is_redone_when_a_lock_changes(target: str) -> None:
    makefile = (ROOT / "Makefile").read_text()
    rule = makefile[makefile.index(target) :].split("\n\n", 1)[0]
    prerequisites = rule.splitlines()[0].split(":", 1)[1].split()
    assert {"requirements.txt", "requirements-dev.txt"} <= set(prerequisites)
    assert "-r requirements-dev.txt" in rule
    assert "lock:" in makefile and "--generate-hashes" in makefile
