"""Start a real `pack391 serve` for a test module and wait for its `ready` line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACK391 = Path(sys.executable).with_name("pack391")


def start_serve(
    env: dict[str, str], log_dir: Path, ready_within_sec: float = 150.0
) -> tuple[subprocess.Popen[str], list[str]]:
    """`pack391 serve` with ``env``, and what it printed up to its `ready` line (the test
    fails with that output when it does not become ready in time)."""
    assert PACK391.exists(), "the pack391 CLI is not installed in the venv (make setup)"
    process = subprocess.Popen(
        [str(PACK391), "serve", "--log-dir", str(log_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    deadline = time.monotonic() + ready_within_sec
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        if "ready" in line:
            break
    if not any("ready" in line for line in output):
        process.kill()
        pytest.fail("pack391 serve did not become ready:\n" + "".join(output))
    return process, output
