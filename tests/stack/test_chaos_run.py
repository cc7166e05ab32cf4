"""The chaos runner end to end, the short version: two faults (redis-kill and
firestore-pause), a few seconds each, against one ``pack391 serve`` of its own.

``make chaos`` runs all six faults with longer windows (docs/chaos.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stack.chaos.config import ChaosConfig
from stack.chaos.report import render_table
from stack.chaos.runner import run_chaos
from stack.platform.harness import serve_stack

FAULTS = ("redis-kill", "firestore-pause")

KNOWN_BROKEN: set[tuple[str, str]] = set()
"""Findings of the chaos run that are not fixed yet (docs/chaos.md); empty: the three the
first runs found are fixed (sandbox 503 on a backend failure, retryAfterSec on every
UNAVAILABLE, the local stack's Redis budget)."""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    out = tmp_path_factory.mktemp("chaos")
    config = replace(
        ChaosConfig(),
        faults=FAULTS,
        before_sec=1.0,
        during_sec=4.0,
        after_sec=4.0,
        # make chaos holds checkRateLimit's p99 to 500 ms on a quiet box; here the other
        # workers load both cores, and p99 of the window's 20 calls is its slowest. What
        # this run checks is that Firestore is not on the decision's path: a call that
        # waited for the 4 s pause would take seconds.
        latency_budget_ms=1500.0,
        out_dir=out,
    )
    emulator_before = os.environ.get("FIRESTORE_EMULATOR_HOST")
    with serve_stack(out / "logs", out / "stack.json") as handle:
        result = run_chaos(handle, config)
    print(render_table(result))
    # the runner reads the stack's Firestore directly: it must leave this process's
    # own emulator setting alone (it once left it pointing at the stopped stack's)
    result["_emulatorHostKept"] = os.environ.get("FIRESTORE_EMULATOR_HOST") == emulator_before
    yield result


def test_the_runner_leaves_the_callers_firestore_setting_alone(report: dict[str, Any]) -> None:
    assert report["_emulatorHostKept"] is True


def _invariants(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(s["fault"], inv) for s in report["faults"] for inv in s["invariants"]]


def test_the_report_covers_each_fault(report: dict[str, Any]) -> None:
    assert [s["fault"] for s in report["faults"]] == list(FAULTS)
    path = Path(report["config"]["out_dir"]) / "report.json"
    assert json.loads(path.read_text())["runId"] == report["runId"]
    for s in report["faults"]:
        assert s["window"]["durationSec"] >= 3.5
        assert s["window"]["recoveredAt"] is not None, s["window"]["notes"]
        during = s["outcomes"]["during"]
        for op in ("swipe", "ratelimit", "wallet", "signup", "job"):
            assert sum(during.get(op, {}).values()) > 0, (s["fault"], op)
        assert s["swipe"]["sent"] > 0.8 * s["swipe"]["scheduled"]
        names = {inv["invariant"] for inv in s["invariants"]}
        assert any(n.startswith("never more than trafficLimit") for n in names)
        assert "Firestore admissions == Redis member set after recovery" in names


def test_redis_kill_is_seen_and_recovered_from(report: dict[str, Any]) -> None:
    kill = report["faults"][0]
    seen = [i for i in kill["invariants"] if i["invariant"].startswith("the fault was seen")]
    assert seen and seen[0]["held"], seen
    assert kill["recoverySec"] is not None and kill["recoverySec"] <= 10


def test_every_invariant_held(report: dict[str, Any]) -> None:
    broken = [
        (fault, inv)
        for fault, inv in _invariants(report)
        if not inv["held"] and (fault, inv["invariant"]) not in KNOWN_BROKEN
    ]
    assert not broken, json.dumps(broken, indent=2, default=str)
