"""The data gates a restore drill runs on its restored copy: the pre-deploy gates' own
rate and index decisions (literal tables, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.deploy_guard.policy.gates import (
    auth_gate,
    data_gates,
    data_window,
    payout_anomaly_gate,
    rate_gate,
    token_mismatch_gate,
)
from shared import thresholds as t
from shared.models.deploy import GateStatus

PASS, FAIL, SKIPPED = GateStatus.PASS, GateStatus.FAIL, GateStatus.SKIPPED
MOMENT = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bad", "total", "threshold", "status", "rate"),
    [
        (0, 0, 5.0, SKIPPED, None),
        (0, 10, 5.0, PASS, 0.0),
        (5, 100, 5.0, PASS, 5.0),  # at the limit: not over it
        (51, 1000, 5.0, FAIL, 5.1),
        (1, 3, 50.0, PASS, 33.333),
        (2, 3, 50.0, FAIL, 66.667),
    ],
)
def test_rate_gate(
    bad: int, total: int, threshold: float, status: GateStatus, rate: float | None
) -> None:
    gate = rate_gate("r", bad, total, threshold, "nothing")
    assert (gate.name, gate.status) == ("r", status)
    assert gate.evidence.get("failureRatePct") == rate
    assert gate.evidence["thresholdPct"] == threshold
    assert gate.evidence["events"] == total
    assert gate.evidence.get("why") == ("nothing" if total == 0 else None)


@pytest.mark.parametrize(
    ("gate", "name", "threshold", "bad", "total", "status"),
    [
        (payout_anomaly_gate, "payout_anomalies", 5.0, 5, 100, PASS),
        (payout_anomaly_gate, "payout_anomalies", 5.0, 6, 100, FAIL),
        (payout_anomaly_gate, "payout_anomalies", 5.0, 0, 0, SKIPPED),
        (token_mismatch_gate, "token_mismatches", 2.0, 2, 100, PASS),
        (token_mismatch_gate, "token_mismatches", 2.0, 3, 100, FAIL),
        (auth_gate, "auth_system", 3.0, 3, 100, PASS),
        (auth_gate, "auth_system", 3.0, 4, 100, FAIL),
    ],
)
def test_each_rate_gate_has_the_releases_threshold(
    gate: object, name: str, threshold: float, bad: int, total: int, status: GateStatus
) -> None:
    assert callable(gate)
    result = gate(bad, total)
    assert (result.name, result.status, result.evidence["thresholdPct"]) == (
        name,
        status,
        threshold,
    )


def test_the_thresholds_are_the_release_gates_own() -> None:
    assert payout_anomaly_gate(0, 1).evidence["thresholdPct"] == (
        t.CANARY_ROLLBACK_PAYOUT_ANOMALY_RATE_PCT
    )
    assert token_mismatch_gate(0, 1).evidence["thresholdPct"] == (
        t.CANARY_ROLLBACK_TOKEN_MISMATCH_RATE_PCT
    )
    assert auth_gate(0, 1).evidence["thresholdPct"] == t.DEPLOY_AUTH_FAILURE_RATE_PCT


@pytest.mark.parametrize(
    ("end", "start"),
    [
        (MOMENT, MOMENT - timedelta(minutes=15)),
        (MOMENT + timedelta(seconds=1), MOMENT - timedelta(minutes=14, seconds=59)),
    ],
)
def test_data_window_ends_where_it_is_told(end: datetime, start: datetime) -> None:
    assert data_window(end) == (start, end)
    assert t.DEPLOY_AUTH_WINDOW_SEC == 15 * 60


@pytest.mark.parametrize(
    ("counts", "declared", "missing", "expected"),
    [
        (
            {"payout_anomaly": (0, 0), "token_mismatch": (0, 0), "auth_failure": (0, 0)},
            23,
            None,
            [
                ("payout_anomalies", SKIPPED),
                ("token_mismatches", SKIPPED),
                ("auth_system", SKIPPED),
                ("database_indexes", SKIPPED),
            ],
        ),
        (
            {"payout_anomaly": (1, 50), "token_mismatch": (0, 9), "auth_failure": (10, 20)},
            2,
            [],
            [
                ("payout_anomalies", PASS),
                ("token_mismatches", PASS),
                ("auth_system", FAIL),
                ("database_indexes", PASS),
            ],
        ),
        (
            {"payout_anomaly": (4, 20), "token_mismatch": (1, 10), "auth_failure": (0, 5)},
            2,
            ["payouts(anomaly ASCENDING,createdAt ASCENDING)"],
            [
                ("payout_anomalies", FAIL),
                ("token_mismatches", FAIL),
                ("auth_system", PASS),
                ("database_indexes", FAIL),
            ],
        ),
        # counts that could not be read are left to the caller: only the index gate
        ({}, 2, [], [("database_indexes", PASS)]),
    ],
)
def test_data_gates(
    counts: dict[str, tuple[int, int]],
    declared: int,
    missing: list[str] | None,
    expected: list[tuple[str, GateStatus]],
) -> None:
    assert [(g.name, g.status) for g in data_gates(counts, declared, missing)] == expected
