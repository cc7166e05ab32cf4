"""The canary judge and the deployment state machine: literal tables, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.deploy_guard.policy.gates import gates_passed, report_usable
from functions.deploy_guard.policy.judge import judge, wilson_lower_pct
from functions.deploy_guard.policy.phases import (
    confirmed,
    holds_environment,
    needs_confirmation,
    on_check,
    on_control,
    settled,
    split,
)
from shared.models.deploy import (
    Analysis,
    ControlAction,
    DeploymentDoc,
    GateResult,
    GateStatus,
    Phase,
    RevisionWindow,
    ServiceTarget,
    ValidationReport,
    Verdict,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STABLE = RevisionWindow(requests=2000, errors=10, p95_latency_ms=200.0)


def w(**over: Any) -> RevisionWindow:
    return RevisionWindow(**{"requests": 1000, "errors": 5, "p95_latency_ms": 210.0, **over})


@pytest.mark.parametrize(
    ("canary", "verdict", "failing"),
    [
        (w(), Verdict.PASS, []),
        (w(requests=49, errors=0), Verdict.INCONCLUSIVE, []),
        (w(requests=0, errors=0, p95_latency_ms=None), Verdict.INCONCLUSIVE, []),
        # 5.5 % of 1,000: over 5 % but within the noise -> pass
        (w(errors=55), Verdict.PASS, []),
        # 6.5 % of 1,000: over, not conclusively -> fail (counts toward the limit)
        (w(errors=65), Verdict.FAIL, ["error_rate"]),
        # 12 % of 1,000: the lower bound is far over 5 % -> breach
        (w(errors=120), Verdict.BREACH, ["error_rate"]),
        # conclusive even with little traffic: 30 of 40 failed
        (w(requests=40, errors=30), Verdict.BREACH, ["error_rate"]),
        (w(errors=50), Verdict.PASS, []),  # exactly 5 % is not over
        (w(p95_latency_ms=301.0), Verdict.BREACH, ["p95_latency_ms"]),
        (w(p95_latency_ms=299.0), Verdict.PASS, []),
        (w(payouts=200, payout_anomalies=30), Verdict.BREACH, ["payout_anomaly_rate"]),
        (w(payouts=200, payout_anomalies=16), Verdict.FAIL, ["payout_anomaly_rate"]),
        # one anomalous payout out of one: 100 %, but no evidence yet
        (w(payouts=1, payout_anomalies=1), Verdict.PASS, []),
        (w(payouts=3, payout_anomalies=3), Verdict.BREACH, ["payout_anomaly_rate"]),
        (w(token_writes=1000, token_mismatches=60), Verdict.BREACH, ["token_mismatch_rate"]),
        (w(token_writes=1000, token_mismatches=30), Verdict.FAIL, ["token_mismatch_rate"]),
        (w(token_writes=5, token_mismatches=1), Verdict.PASS, []),
        (w(auth_attempts=500, auth_failures=50), Verdict.BREACH, ["auth_failure_rate"]),
        (w(auth_attempts=500, auth_failures=15), Verdict.PASS, []),
    ],
)
def test_judge(canary: RevisionWindow, verdict: Verdict, failing: list[str]) -> None:
    got, checks = judge(canary, STABLE)
    assert got == verdict
    assert [c.metric for c in checks if c.verdict in (Verdict.FAIL, Verdict.BREACH)] == failing


def test_latency_uses_the_baseline_when_stable_serves_nothing() -> None:
    empty = RevisionWindow()
    assert judge(w(p95_latency_ms=400.0), empty, 200.0)[0] == Verdict.BREACH
    assert judge(w(p95_latency_ms=400.0), empty, None)[0] == Verdict.PASS
    # a tiny absolute difference is noise even when relatively large
    fast = RevisionWindow(requests=2000, p95_latency_ms=20.0)
    assert judge(w(p95_latency_ms=40.0), fast)[0] == Verdict.PASS


@pytest.mark.parametrize(
    ("bad", "total", "low", "high"),
    [(0, 0, 0.0, 0.0), (0, 100, 0.0, 0.0), (50, 100, 37.0, 38.0), (120, 1000, 9.5, 9.7)],
)
def test_wilson_lower_bound(bad: int, total: int, low: float, high: float) -> None:
    assert low <= wilson_lower_pct(bad, total) <= high


def dep(**over: Any) -> DeploymentDoc:
    base: dict[str, Any] = {
        "deployment_id": "d1",
        "version": "v2",
        "environment": "production",
        "phase": Phase.PROGRESSING,
        "step": 0,
        "steps_pct": [5, 25, 100],
        "traffic_percent": 5,
        "applied_percent": 5,
        "services": [
            ServiceTarget(service="api", region="r", stable_revision="a", canary_revision="b")
        ],
        "bake_sec": 120,
        "min_requests_per_step": 100,
        "step_started_at": NOW - timedelta(seconds=180),
        "created_by": "admin-1",
        "created_at": NOW - timedelta(minutes=10),
        "updated_at": NOW - timedelta(minutes=1),
    }
    return DeploymentDoc(**{**base, **over})


def analysis(verdict: Verdict, requests: int = 1000, minute: int = 1) -> Analysis:
    return Analysis(
        at=NOW,
        window_start=NOW - timedelta(minutes=minute),
        step=0,
        traffic_percent=5,
        verdict=verdict,
        checks=[],
        canary=RevisionWindow(requests=requests),
        stable=STABLE,
    )


@pytest.mark.parametrize(
    ("before", "verdict", "phase", "step", "traffic", "failures", "inconclusive"),
    [
        ({}, Verdict.PASS, Phase.PROGRESSING, 1, 25, 0, 0),  # baked, enough requests
        (
            {"step_started_at": NOW - timedelta(seconds=60)},
            Verdict.PASS,
            Phase.PROGRESSING,
            0,
            5,
            0,
            0,
        ),
        ({"min_requests_per_step": 5000}, Verdict.PASS, Phase.PROGRESSING, 0, 5, 0, 0),
        ({"step": 1, "traffic_percent": 25}, Verdict.PASS, Phase.PROMOTING, 2, 100, 0, 0),
        (
            {"step": 2, "traffic_percent": 100, "phase": Phase.PROMOTING},
            Verdict.PASS,
            Phase.SUCCEEDED,
            2,
            100,
            0,
            0,
        ),
        ({}, Verdict.BREACH, Phase.ROLLING_BACK, 0, 0, 0, 0),
        ({}, Verdict.FAIL, Phase.PROGRESSING, 0, 5, 1, 0),
        ({"failures": 1}, Verdict.FAIL, Phase.ROLLING_BACK, 0, 0, 2, 0),
        ({"inconclusive": 3}, Verdict.INCONCLUSIVE, Phase.PROGRESSING, 0, 5, 0, 4),
        ({"inconclusive": 9}, Verdict.INCONCLUSIVE, Phase.PAUSED, 0, 5, 0, 10),
        ({"inconclusive": 9, "step_started_at": NOW}, Verdict.PASS, Phase.PROGRESSING, 0, 5, 0, 0),
    ],
)
def test_on_check(
    before: dict[str, Any],
    verdict: Verdict,
    phase: Phase,
    step: int,
    traffic: int,
    failures: int,
    inconclusive: int,
) -> None:
    after = on_check(dep(**before), analysis(verdict), NOW)
    assert (after.phase, after.step, after.traffic_percent) == (phase, step, traffic)
    assert (after.failures, after.inconclusive) == (failures, inconclusive)
    assert after.last_checked_minute == NOW - timedelta(minutes=1)
    assert after.analyses[-1].verdict == verdict


def test_on_check_keeps_the_latest_analyses_and_the_stable_baseline() -> None:
    d = dep(step_started_at=NOW)
    for minute in range(30, 0, -1):
        d = on_check(d, analysis(Verdict.PASS, minute=minute), NOW)
    assert len(d.analyses) == 20
    assert d.analyses[-1].window_start == NOW - timedelta(minutes=1)
    assert d.baseline_p95_ms == 200.0


@pytest.mark.parametrize(
    ("phase", "action", "after", "traffic"),
    [
        (Phase.PROGRESSING, ControlAction.PAUSE, Phase.PAUSED, 5),
        (Phase.PAUSED, ControlAction.RESUME, Phase.PROGRESSING, 5),
        (Phase.PROGRESSING, ControlAction.PROMOTE, Phase.PROMOTING, 100),
        (Phase.PAUSED, ControlAction.PROMOTE, Phase.PROMOTING, 100),
        (Phase.PROGRESSING, ControlAction.ABORT, Phase.ROLLING_BACK, 0),
        (Phase.PAUSED, ControlAction.PAUSE, None, 0),
        (Phase.PROGRESSING, ControlAction.RESUME, None, 0),
        (Phase.ROLLING_BACK, ControlAction.PROMOTE, None, 0),
    ],
)
def test_on_control(phase: Phase, action: ControlAction, after: Phase | None, traffic: int) -> None:
    if after is None:
        with pytest.raises(ValueError, match="cannot"):
            on_control(dep(phase=phase), action, "why", NOW)
        return
    got = on_control(dep(phase=phase), action, "why", NOW)
    assert (got.phase, got.traffic_percent) == (after, traffic)
    assert got.history[-1].at == NOW


@pytest.mark.parametrize(
    ("over", "phase"),
    [
        (
            {"phase": Phase.ROLLING_BACK, "traffic_percent": 0, "applied_percent": 0},
            Phase.ROLLED_BACK,
        ),
        ({"phase": Phase.ROLLING_BACK, "traffic_percent": 0, "applied_percent": 5}, None),
        (
            {
                "phase": Phase.PROMOTING,
                "traffic_percent": 100,
                "applied_percent": 100,
                "promoted_by_hand": True,
            },
            Phase.SUCCEEDED,
        ),
        ({"phase": Phase.PROMOTING, "traffic_percent": 100, "applied_percent": 100}, None),
        ({}, None),
    ],
)
def test_settled(over: dict[str, Any], phase: Phase | None) -> None:
    got = settled(dep(**over), NOW)
    assert (got.phase if got else None) == phase


@pytest.mark.parametrize(
    ("canary", "percent", "expected"),
    [
        ("b", 0, {"a": 100}),
        ("b", 5, {"a": 95, "b": 5}),
        ("b", 25, {"a": 75, "b": 25}),
        ("b", 100, {"b": 100}),
        (None, 25, {"a": 100}),
    ],
)
def test_split(canary: str | None, percent: int, expected: dict[str, int]) -> None:
    target = ServiceTarget(service="api", region="r", stable_revision="a", canary_revision=canary)
    assert split(target, percent) == expected


def report(passed: bool, age_sec: int) -> ValidationReport:
    return ValidationReport(
        report_id="r1",
        version="v2",
        environment="production",
        passed=passed,
        gates=[],
        at=NOW - timedelta(seconds=age_sec),
        actor_uid="admin-1",
    )


@pytest.mark.parametrize(
    ("found", "refusal"),
    [
        (None, "no pre-deploy report"),
        (report(False, 10), "failed"),
        (report(True, 31 * 60), "old"),
        (report(True, 29 * 60), None),
    ],
)
def test_report_usable(found: ValidationReport | None, refusal: str | None) -> None:
    got = report_usable(found, "v2", "production", NOW)
    assert (got is None) if refusal is None else (got is not None and refusal in got)


@pytest.mark.parametrize(
    ("statuses", "passed"),
    [
        ([GateStatus.PASS, GateStatus.SKIPPED], True),
        ([GateStatus.PASS, GateStatus.FAIL], False),
        ([], True),
    ],
)
def test_gates_passed(statuses: list[GateStatus], passed: bool) -> None:
    gates = [GateResult(name=f"g{i}", status=s) for i, s in enumerate(statuses)]
    assert gates_passed(gates) is passed


@pytest.mark.parametrize(
    ("over", "needs", "holds"),
    [
        ({"phase": Phase.ROLLED_BACK, "traffic_percent": 0}, True, True),
        ({"phase": Phase.SUCCEEDED, "traffic_percent": 100}, True, True),
        ({"phase": Phase.ROLLED_BACK, "confirmed_at": NOW}, False, False),
        ({"phase": Phase.FAILED}, False, False),  # never moved traffic
        ({"phase": Phase.PROGRESSING}, False, True),
        ({"phase": Phase.ROLLING_BACK, "traffic_percent": 0}, False, True),
    ],
)
def test_a_final_split_is_confirmed_before_the_environment_is_free(
    over: dict[str, Any], needs: bool, holds: bool
) -> None:
    d = dep(**over)
    assert needs_confirmation(d) is needs
    assert holds_environment(d) is holds
    got = confirmed(d, NOW, [])
    assert (got is not None) is needs
    if got is not None:
        assert got.confirmed_at == NOW and got.history == d.history  # nothing to tell
        drifted = confirmed(d, NOW, ["api"])
        assert drifted is not None and drifted.history[-1].event == "reasserted"
        assert drifted.history[-1].detail == {"services": ["api"]}
