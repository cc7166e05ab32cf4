"""Start a real `pack391 serve` for a test module and wait for its `ready` line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from stack.procs import free_port
from tests.conftest import ROOT

PACK391 = Path(sys.executable).with_name("pack391")


ISOLATED = ("PACK391_PORT", "PACK391_SANDBOX_PORT", "PACK391_STACK_STATE")
"""What makes a stack this test's own: its functions and sandbox ports and its state file
(the defaults, 5001, 5002 and .local/stack.json, are a developer's `make run`)."""


def start_serve(
    env: dict[str, str], log_dir: Path, ready_within_sec: float = 150.0
) -> tuple[subprocess.Popen[str], list[str]]:
    """`pack391 serve` with ``env``, and what it printed up to its `ready` line (the test
    fails with that output when it does not become ready in time). Ports and the state
    file the test did not choose are its own (``env`` is updated with them); the
    emulator and Redis come from ``PACK391_PORT_RANGE``, this worker's block."""
    assert PACK391.exists(), "the pack391 CLI is not installed in the venv (make setup)"
    env.setdefault("PACK391_PORT", str(free_port()))
    env.setdefault("PACK391_SANDBOX_PORT", str(free_port()))
    env.setdefault("PACK391_STACK_STATE", str(log_dir / "stack.json"))
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
