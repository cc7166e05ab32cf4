"""Start a real `pack391 serve` for a test module and wait for its `ready` line (through
the platform's one harness, stack/platform/harness.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stack.platform.harness import PACK391, NotReady, spawn_serve, wait_ready
from stack.platform.procs import free_port

__all__ = ["ISOLATED", "PACK391", "start_serve"]

ISOLATED = ("PACK391_PORT", "PACK391_SANDBOX_PORT", "PACK391_STACK_STATE")
"""What makes a stack this test's own: its functions and sandbox ports and its state file
(the defaults, 5001, 5002 and .local/stack.json, are a developer's `make run`)."""


def start_serve(
    env: dict[str, str],
    log_dir: Path,
    ready_within_sec: float = 150.0,
    auth_emulator: bool = False,
) -> tuple[subprocess.Popen[str], list[str]]:
    """`pack391 serve` with ``env``, and what it printed up to its `ready` line (the test
    fails with that output when it does not become ready in time). Ports and the state
    file the test did not choose are its own (``env`` is updated with them); the
    emulator and Redis come from ``PACK391_PORT_RANGE``, this worker's block. No Firebase
    Auth emulator unless ``auth_emulator`` (stack/platform/harness.py)."""
    assert PACK391.exists(), "the pack391 CLI is not installed in the venv (make setup)"
    env.setdefault("PACK391_PORT", str(free_port()))
    env.setdefault("PACK391_SANDBOX_PORT", str(free_port()))
    env.setdefault("PACK391_STACK_STATE", str(log_dir / "stack.json"))
    process = spawn_serve(env, log_dir, auth_emulator)
    try:
        output = wait_ready(process, ready_within_sec)
    except NotReady as exc:
        process.kill()
        pytest.fail("pack391 serve did not become ready:\n" + "".join(exc.output))
    return process, output
