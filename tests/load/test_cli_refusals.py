"""``pack391 loadtest``'s refusals: a failing threshold is exit 1, a target outside the
allowlist exit 2. Neither depends on a quiet machine (a stalling target only stalls more
on a loaded one), so they run in the parallel phase; the passing run, which judges real
latencies, is in the quiet lane (tests/load/test_cli.py)."""

from __future__ import annotations

import json

from tests.load.test_cli import loadtest


def test_a_failing_threshold_exits_non_zero(stalling_url: str) -> None:
    # the target stalls 0.5 s every 2 s: a p99 limit of 100 ms must fail
    done = loadtest("live_calls", "--target", stalling_url, "--rps", "50", "--duration", "2",
                    "--workers", "1", "--p99-ms", "100")  # fmt: skip
    assert done.returncode == 1, done.stderr
    brief = json.loads(done.stdout)
    failed = [v["name"] for v in brief["thresholds"] if not v["passed"]]
    assert brief["verdict"] == "fail" and "p99Ms" in failed


def test_a_target_outside_the_allowlist_is_refused() -> None:
    done = loadtest("live_calls", "--target", "http://10.9.9.9", "--duration", "1")
    assert done.returncode == 2
    assert "not in PACK391_LOAD_TARGET_ALLOWLIST" in done.stderr
