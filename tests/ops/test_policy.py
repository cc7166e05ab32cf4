"""Alert rules, health and downsampling: literal tables, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.ops.policy import (
    AlertAction,
    AlertRule,
    RuleName,
    RuleState,
    alert_id_for,
    alert_rules,
    downsample,
    evaluate_rule,
    rule_alert,
    scaling_service_status,
    system_health,
)
from shared.alerts.policy import AlertResolve, AlertSpec
from shared.models.alerts import AlertSource, Severity
from shared.models.ops import HealthStatus, ServiceHealth, ServiceStatus
from shared.models.scaling import IsolationState

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def rule(for_minutes: int) -> AlertRule:
    return AlertRule(RuleName.FAILED_PAYOUTS, "payouts", Severity.HIGH, 10, for_minutes)


def run(r: AlertRule, values: list[tuple[float, float]]) -> list[AlertAction]:
    """Evaluate (minute, value) in order, threading the state; the actions taken."""
    state, actions = RuleState(), []
    for minute, value in values:
        outcome = evaluate_rule(r, value, state, at(minute))
        state = outcome.state
        actions.append(outcome.action)
    return actions


N, OP, K, R = AlertAction.NONE, AlertAction.OPEN, AlertAction.KEEP, AlertAction.RESOLVE


@pytest.mark.parametrize(
    ("for_minutes", "series", "expected"),
    [
        # default for=1: fires on the first minute over, stays once, resolves when it clears
        (1, [(0, 11), (1, 12), (2, 30), (3, 5)], [OP, K, K, R]),
        # at the threshold is not over it
        (1, [(0, 10), (1, 10)], [N, N]),
        # for=3: needs three consecutive minutes
        (3, [(0, 11), (1, 11), (2, 11), (3, 11)], [N, N, OP, K]),
        # flapping under for=3 never fires
        (3, [(0, 11), (1, 11), (2, 3), (3, 11), (4, 11), (5, 2)], [N, N, N, N, N, N]),
        # a missed minute restarts the count
        (2, [(0, 11), (2, 11), (3, 11)], [N, N, OP]),
        # a re-run of the same minute changes nothing (no second alert)
        (1, [(0, 11), (0.5, 11), (0.9, 2), (1, 11)], [OP, N, N, K]),
        # ... but a re-run that sees the condition start counts it for that minute
        (1, [(0, 2), (0.5, 11), (0.9, 12), (1, 11)], [N, OP, N, K]),
        (2, [(0, 2), (0.5, 11), (1, 11)], [N, N, OP]),
        # resolve then re-fire: a new alert
        (1, [(0, 11), (1, 0), (2, 11)], [OP, R, OP]),
    ],
)
def test_rule_lifecycle(
    for_minutes: int, series: list[tuple[float, float]], expected: list[AlertAction]
) -> None:
    assert run(rule(for_minutes), series) == expected


def test_alert_ids_are_per_rule_and_minute() -> None:
    outcome = evaluate_rule(rule(1), 11, RuleState(), at(0.7))
    assert (
        outcome.alert_id
        == alert_id_for(RuleName.FAILED_PAYOUTS, T0)
        == ("ops_failed_payouts_20261127T1200Z")
    )
    kept = evaluate_rule(rule(1), 11, outcome.state, at(1))
    assert kept.alert_id == outcome.alert_id
    resolved = evaluate_rule(rule(1), 1, kept.state, at(2))
    assert (resolved.alert_id, resolved.state.open_alert_id) == (outcome.alert_id, None)


@pytest.mark.parametrize(("configured", "expected"), [(1, [1, 1, 1, 1]), (4, [4, 4, 4, 1])])
def test_service_down_has_no_for(configured: int, expected: list[int]) -> None:
    rules = alert_rules(configured)
    assert [r.for_minutes for r in rules] == expected
    assert [r.threshold for r in rules] == [5, 10, 50, 0]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], HealthStatus.HEALTHY),
        (["up", "up"], HealthStatus.HEALTHY),
        (["up", "degraded"], HealthStatus.DEGRADED),
        (["degraded", "down", "up"], HealthStatus.CRITICAL),
    ],
)
def test_system_health(statuses: list[str], expected: HealthStatus) -> None:
    services = [
        ServiceHealth(name=f"s{i}", status=ServiceStatus(s)) for i, s in enumerate(statuses)
    ]
    assert system_health(services).status is expected


@pytest.mark.parametrize(
    ("isolation", "expected"),
    [
        (IsolationState.NONE, ServiceStatus.UP),
        (IsolationState.HALF_OPEN, ServiceStatus.DEGRADED),
        (IsolationState.OPEN, ServiceStatus.DOWN),
    ],
)
def test_scaling_service_status(isolation: IsolationState, expected: ServiceStatus) -> None:
    assert scaling_service_status(isolation) is expected


def test_rule_alert_opens_keeps_and_resolves_by_its_dedup_key() -> None:
    payouts = rule(1)
    opened = evaluate_rule(payouts, 11, RuleState(), at(0))
    spec = rule_alert(payouts, 11, opened)
    assert isinstance(spec, AlertSpec)
    assert (spec.source, spec.kind, spec.dedup_key, spec.alert_id) == (
        AlertSource.OPS,
        "failed_payouts",
        "ops:failed_payouts",
        opened.alert_id,
    )
    assert (spec.rule, spec.value, spec.threshold) == ("failed_payouts", 11, 10)
    kept = evaluate_rule(payouts, 12, opened.state, at(1))
    again = rule_alert(payouts, 12, kept)
    assert isinstance(again, AlertSpec)
    assert (again.alert_id, again.value) == (None, 12)  # updates the open alert
    resolved = evaluate_rule(payouts, 3, kept.state, at(2))
    assert rule_alert(payouts, 3, resolved) == AlertResolve(
        "ops:failed_payouts", "value 3 back at or under 10"
    )
    assert rule_alert(payouts, 3, evaluate_rule(payouts, 3, resolved.state, at(3))) is None


def test_downsample_min_avg_max_per_bucket() -> None:
    points = [
        (at(0), {"a": 1.0, "b": 5.0}),
        (at(1), {"a": 3.0}),
        (at(4), {"a": 8.0}),
        (at(5), {"a": 2.0}),
        (at(-1), {"a": 100.0}),  # before since: left out
    ]
    series = downsample(points, T0, 5 * 60, None)
    assert [(b.at, b.min, b.avg, b.max, b.count) for b in series["a"]] == [
        (at(0), 1.0, 4.0, 8.0, 3),
        (at(5), 2.0, 2.0, 2.0, 1),
    ]
    assert [(b.min, b.count) for b in series["b"]] == [(5.0, 1)]
    only = downsample(points, T0, 60, ["b", "missing"])
    assert set(only) == {"b", "missing"} and only["missing"] == []
