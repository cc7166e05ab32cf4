"""The scaling policy, with literal tables: every rule of the issue has rows here."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.scaling.policy import (
    DEFAULT_POLICY,
    decide,
    hpa_desired,
    in_flight,
    manual_target,
    next_isolation,
    scale_up_limit,
    state_after,
)
from shared.errors import InvalidInput
from shared.models.scaling import (
    AlertKind,
    IsolationState,
    ManualAction,
    MetricsSnapshot,
    PendingAction,
    Recommendation,
    ScaleAction,
    ServiceConfig,
    ServiceState,
)
from tests.scaling.helpers import service_config

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def cfg(**over: Any) -> ServiceConfig:
    return service_config(**over)


def worker(**over: Any) -> ServiceConfig:
    return cfg(service_id="media-processing", queue_source="media-jobs", **over)


def snap(age_sec: int = 30, **values: Any) -> MetricsSnapshot:
    return MetricsSnapshot(at=NOW - timedelta(seconds=age_sec), source="test", **values)


def ok(**values: Any) -> MetricsSnapshot:
    """A complete sample at target unless overridden."""
    return snap(**{"cpu_pct": 65.0, "p95_latency_ms": 400.0, **values})


def minutes_ago(*counts: int) -> list[Recommendation]:
    """Recommendations one per minute, oldest first, the last one a minute ago."""
    n = len(counts)
    return [
        Recommendation(at=NOW - timedelta(minutes=n - i), instances=c) for i, c in enumerate(counts)
    ]


def state(current: int = 10, **over: Any) -> ServiceState:
    return ServiceState(current_instances=current, **over)


# ------------------------------------------------------------- HPA formula


@pytest.mark.parametrize(
    ("current", "value", "target", "expected"),
    [
        (10, 65.0, 65.0, (10, True)),  # at target
        (10, 71.5, 65.0, (10, True)),  # +10%: inside the band
        (10, 58.5, 65.0, (10, True)),  # -10%: inside the band
        (10, 72.0, 65.0, (12, False)),  # just over the band: ceil(10*72/65)=12
        (10, 32.5, 65.0, (5, False)),  # half the target
        (4, 800.0, 400.0, (8, False)),  # latency twice the target
        (3, 100.0, 65.0, (5, False)),  # saturated CPU: ceil(4.615)
        (0, 130.0, 65.0, (2, False)),  # a service at zero counts as one
        (10, 0.0, 65.0, (0, False)),  # idle: bounds are applied later
    ],
)
def test_hpa_desired(current: int, value: float, target: float, expected: tuple[int, bool]) -> None:
    assert hpa_desired(current, value, target, 0.10) == expected


@pytest.mark.parametrize(
    ("current", "limit"),
    [(1, 5), (3, 7), (4, 8), (5, 10), (10, 20), (0, 4)],
)
def test_one_step_is_larger_of_double_and_plus_four(current: int, limit: int) -> None:
    assert scale_up_limit(current, replace(DEFAULT_POLICY, up_steps_per_run=1)) == limit


@pytest.mark.parametrize(
    ("current", "limit"),
    # four 15 s steps per one-minute run: 1 -> 5 -> 10 -> 20 -> 40
    [(1, 40), (3, 56), (4, 64), (5, 80), (10, 160), (0, 32)],
)
def test_a_run_compounds_four_hpa_steps(current: int, limit: int) -> None:
    assert DEFAULT_POLICY.up_steps_per_run == 4
    assert scale_up_limit(current) == limit


# ------------------------------------------------------------ scale up


@pytest.mark.parametrize(
    ("sample", "current", "action", "desired"),
    [
        # CPU > 65% scales up: ceil(10*80/65)=13
        (ok(cpu_pct=80.0), 10, ScaleAction.SCALE_UP, 13),
        # p95 > 400 ms scales up: ceil(10*600/400)=15
        (ok(p95_latency_ms=600.0), 10, ScaleAction.SCALE_UP, 15),
        # the largest recommendation wins
        (ok(cpu_pct=80.0, p95_latency_ms=600.0), 10, ScaleAction.SCALE_UP, 15),
        # inside the tolerance band nothing changes
        (ok(cpu_pct=70.0, p95_latency_ms=430.0), 10, ScaleAction.NONE, 10),
        # max bound
        (ok(p95_latency_ms=1600.0), 30, ScaleAction.SCALE_UP, 40),
        # already at max: nothing to do
        (ok(cpu_pct=100.0), 40, ScaleAction.NONE, 40),
    ],
)
def test_scale_up_rules(
    sample: MetricsSnapshot, current: int, action: ScaleAction, desired: int
) -> None:
    d = decide(cfg(), state(current), sample, NOW)
    assert (d.action, d.desired_instances) == (action, desired), d.reasons


@pytest.mark.parametrize(
    ("current", "p95_ms", "steps", "desired"),
    [
        # asks for 400; four 15 s steps per run: 10 -> 20 -> 40 -> 80 -> 160
        (10, 16000.0, 4, 160),
        # asks for 200; +4 beats +100% while small: 2 -> 6 -> 12 -> 24 -> 48
        (2, 40000.0, 4, 48),
        # asks for 40: within the limit
        (10, 1600.0, 4, 40),
        # one step per run: +100% (10 -> 20) although 40 is asked for
        (10, 1600.0, 1, 20),
        # one step per run: +4 beats +100% for small services (2 -> 6)
        (2, 4000.0, 1, 6),
    ],
)
def test_scale_up_rate_limit(current: int, p95_ms: float, steps: int, desired: int) -> None:
    policy = replace(DEFAULT_POLICY, up_steps_per_run=steps)
    d = decide(cfg(max_instances=1000), state(current), ok(p95_latency_ms=p95_ms), NOW, policy)
    assert (d.action, d.desired_instances) == (ScaleAction.SCALE_UP, desired), d.reasons


def test_request_rate_metric_sizes_to_demand() -> None:
    # 100 rpm capacity per instance, target 65%: 1950 rpm -> 30 instances (CPU alone,
    # saturated at 100%, would ask for ceil(3 * 100 / 65) = 5)
    service = cfg(requests_per_instance_per_min=100.0)
    d = decide(service, state(3), ok(cpu_pct=100.0, requests_per_min=1950.0), NOW)
    assert d.raw_desired == 30
    assert (d.action, d.desired_instances) == (ScaleAction.SCALE_UP, 30)
    assert {r.metric for r in d.recommendations} == {
        "cpu_pct",
        "p95_latency_ms",
        "requests_per_instance_per_min",
    }


def test_below_min_scales_up_to_min_even_past_the_rate_limit() -> None:
    d = decide(cfg(min_instances=12), state(3), ok(), NOW)
    assert (d.action, d.desired_instances) == (ScaleAction.SCALE_UP, 12)


def test_cooldown_holds_an_action_and_still_records_the_recommendation() -> None:
    st = state(10, last_action_at=NOW - timedelta(seconds=30))
    d = decide(cfg(), st, ok(cpu_pct=90.0), NOW)
    assert (d.action, d.desired_instances) == (ScaleAction.NONE, 10)
    assert d.reasons[0].startswith("cooldown")
    assert d.history[-1] == Recommendation(at=NOW, instances=14)
    after = decide(
        cfg(),
        st.model_copy(update={"last_action_at": NOW - timedelta(seconds=60)}),
        ok(cpu_pct=90.0),
        NOW,
    )
    assert after.action is ScaleAction.SCALE_UP


# ----------------------------------------------------------- scale down


LOW = ok(cpu_pct=20.0, p95_latency_ms=100.0)  # cpu recommends ceil(10*20/65)=4


@pytest.mark.parametrize(
    ("history", "over", "action", "desired", "why"),
    [
        # five minutes of low recommendations: scale down to the highest in the window
        (minutes_ago(6, 5, 4, 4, 5), {}, ScaleAction.SCALE_DOWN, 6, "all recommendations"),
        # a high recommendation inside the window blocks it
        (minutes_ago(4, 4, 10, 4, 4), {}, ScaleAction.NONE, 10, "stabilising: highest"),
        # a high recommendation older than the window no longer counts
        (minutes_ago(12, 4, 4, 4, 4, 4), {}, ScaleAction.SCALE_DOWN, 4, "all recommendations"),
        # not yet a full window of observations
        (minutes_ago(4, 4), {}, ScaleAction.NONE, 10, "stabilising: 300 s"),
        # manual pin
        (
            minutes_ago(4, 4, 4, 4, 4),
            {"pinned_until": NOW + timedelta(minutes=5)},
            ScaleAction.NONE,
            10,
            "pinned",
        ),
        # isolated services are not scaled down (their traffic is held back on purpose)
        (
            minutes_ago(4, 4, 4, 4, 4),
            {"isolation": IsolationState.HALF_OPEN, "isolation_since": NOW - timedelta(minutes=1)},
            ScaleAction.NONE,
            10,
            "isolated",
        ),
        # cooldown after an action
        (
            minutes_ago(4, 4, 4, 4, 4),
            {"last_action_at": NOW - timedelta(seconds=10)},
            ScaleAction.NONE,
            10,
            "cooldown",
        ),
    ],
)
def test_scale_down_rules(
    history: list[Recommendation],
    over: dict[str, Any],
    action: ScaleAction,
    desired: int,
    why: str,
) -> None:
    d = decide(cfg(), state(10, recommendations=history, **over), LOW, NOW)
    assert (d.action, d.desired_instances) == (action, desired), d.reasons
    assert d.reasons[0].startswith(why), d.reasons


def test_scale_down_never_below_min() -> None:
    d = decide(
        cfg(min_instances=6),
        state(10, recommendations=minutes_ago(1, 1, 1, 1, 1)),
        ok(cpu_pct=1.0, p95_latency_ms=10.0),
        NOW,
    )
    assert (d.action, d.desired_instances) == (ScaleAction.SCALE_DOWN, 6)


def test_over_max_after_a_forced_scale_comes_back_after_the_pin() -> None:
    d = decide(
        cfg(max_instances=8), state(12, recommendations=minutes_ago(8, 8, 8, 8, 8)), ok(), NOW
    )
    assert (d.action, d.desired_instances) == (ScaleAction.SCALE_DOWN, 8)


# ---------------------------------------------------- missing / stale data


@pytest.mark.parametrize(
    ("sample", "why"),
    [
        (None, "no_data: no metrics"),
        (snap(age_sec=301, cpu_pct=1.0, p95_latency_ms=1.0), "no_data: metrics are 301 s old"),
        (snap(error_rate_pct=0.0), "no_data: the sample has no scaling metric"),
    ],
)
def test_missing_or_stale_metrics_are_no_data_and_never_scale_down(
    sample: MetricsSnapshot | None, why: str
) -> None:
    d = decide(cfg(), state(10, recommendations=minutes_ago(1, 1, 1, 1, 1)), sample, NOW)
    assert (d.action, d.desired_instances) == (ScaleAction.NO_DATA, 10)
    assert d.reasons[0].startswith(why)


def test_partial_data_may_scale_up_but_not_down() -> None:
    history = minutes_ago(4, 4, 4, 4, 4)
    down = decide(cfg(), state(10, recommendations=history), snap(cpu_pct=10.0), NOW)
    assert down.action is ScaleAction.NONE
    assert down.reasons[0].startswith("partial data (p95_latency_ms missing)")
    up = decide(cfg(), state(10), snap(cpu_pct=90.0), NOW)
    assert (up.action, up.desired_instances) == (ScaleAction.SCALE_UP, 14)


# --------------------------------------------------------------- isolation


T = DEFAULT_POLICY.error_rate_threshold_pct


@pytest.mark.parametrize(
    ("before", "since_min", "below_min", "error", "requests", "after", "alert"),
    [
        (IsolationState.NONE, None, None, 1.5, 1000, IsolationState.NONE, None),  # at threshold
        (IsolationState.NONE, None, None, 1.6, 1000, IsolationState.OPEN, AlertKind.ISOLATED),
        (IsolationState.NONE, None, None, 50.0, 10, IsolationState.NONE, None),  # too few req
        (IsolationState.NONE, None, None, 9.0, None, IsolationState.OPEN, AlertKind.ISOLATED),
        (IsolationState.OPEN, 1, None, 9.0, 1000, IsolationState.OPEN, None),
        (IsolationState.OPEN, 2, None, 9.0, 1000, IsolationState.HALF_OPEN, AlertKind.HALF_OPEN),
        (IsolationState.HALF_OPEN, 1, None, 3.0, 100, IsolationState.OPEN, AlertKind.REISOLATED),
        (IsolationState.HALF_OPEN, 1, None, 0.5, 100, IsolationState.HALF_OPEN, None),
        (IsolationState.HALF_OPEN, 4, 2, 0.5, 100, IsolationState.HALF_OPEN, None),
        (IsolationState.HALF_OPEN, 4, 3, 0.5, 100, IsolationState.NONE, AlertKind.RECOVERED),
        (IsolationState.HALF_OPEN, 4, 3, None, None, IsolationState.HALF_OPEN, None),  # no data
    ],
)
def test_isolation_circuit(
    before: IsolationState,
    since_min: int | None,
    below_min: int | None,
    error: float | None,
    requests: int | None,
    after: IsolationState,
    alert: AlertKind | None,
) -> None:
    st = state(
        isolation=before,
        isolation_since=None if since_min is None else NOW - timedelta(minutes=since_min),
        below_threshold_since=None if below_min is None else NOW - timedelta(minutes=below_min),
    )
    sample = None if error is None else ok(error_rate_pct=error, requests_per_min=requests)
    step = next_isolation(st, sample, NOW)
    assert (step.state, step.alert) == (after, alert)
    assert T == 1.5


def test_isolation_rides_along_a_scaling_decision() -> None:
    d = decide(cfg(), state(10), ok(error_rate_pct=5.0, requests_per_min=500.0), NOW)
    assert d.isolation is not None
    assert (d.isolation.state, d.isolation.alert) == (IsolationState.OPEN, AlertKind.ISOLATED)
    assert d.action is ScaleAction.NONE


# -------------------------------------------------------------------- burst


@pytest.mark.parametrize(
    ("backlog", "current", "burst_before", "action", "desired", "burst_after"),
    [
        (5000, 3, False, ScaleAction.NONE, 3, False),  # at the trigger: no burst
        (5001, 3, False, ScaleAction.SCALE_UP, 6, True),  # ceil(5001/1000)=6
        (30000, 3, False, ScaleAction.SCALE_UP, 30, True),  # proportional, past the rate limit
        (90000, 3, False, ScaleAction.SCALE_UP, 40, True),  # bounded by max
        (2000, 30, True, ScaleAction.NONE, 30, True),  # still draining: instances kept
        (50, 30, True, ScaleAction.NONE, 30, False),  # drained: burst over, stabilisation next
    ],
)
def test_queue_burst(
    backlog: int,
    current: int,
    burst_before: bool,
    action: ScaleAction,
    desired: int,
    burst_after: bool,
) -> None:
    d = decide(worker(), state(current, burst_active=burst_before), ok(queue_backlog=backlog), NOW)
    assert (d.action, d.desired_instances, d.burst_active) == (action, desired, burst_after)


def test_drained_burst_gives_instances_back_after_the_window() -> None:
    st = state(30, burst_active=False, recommendations=minutes_ago(3, 3, 3, 3, 3))
    d = decide(worker(), st, ok(cpu_pct=5.0, p95_latency_ms=50.0, queue_backlog=0), NOW)
    # this minute's own recommendation is in the window: latency ceil(30*50/400)=4
    assert (d.action, d.desired_instances) == (ScaleAction.SCALE_DOWN, 4)


# ------------------------------------------------------------- state, manual


def test_state_after_an_applied_action_and_a_dry_run() -> None:
    d = decide(cfg(), state(10), ok(cpu_pct=90.0), NOW)
    applied = state_after(state(10), d, NOW, 14)
    assert (applied.current_instances, applied.last_action_at) == (14, NOW)
    assert applied.last_decision is not None
    assert applied.last_decision.action is ScaleAction.SCALE_UP
    dry = state_after(state(10), d, NOW, None)
    assert (dry.current_instances, dry.last_action_at) == (10, None)
    assert dry.recommendations == [Recommendation(at=NOW, instances=14)]


@pytest.mark.parametrize(
    ("action", "count", "force", "expected"),
    [
        (ManualAction.SCALE_UP, None, False, 11),
        (ManualAction.SCALE_UP, 5, False, 15),
        (ManualAction.SCALE_DOWN, None, False, 9),
        (ManualAction.SCALE_TO, 40, False, 40),
        (ManualAction.SCALE_TO, 41, False, "outside"),
        (ManualAction.SCALE_DOWN, 9, False, "outside"),
        (ManualAction.SCALE_TO, 41, True, 41),
        (ManualAction.SCALE_TO, 0, True, 0),
        (ManualAction.SCALE_UP, 995, True, "0..1000"),
    ],
)
def test_manual_target(
    action: ManualAction, count: int | None, force: bool, expected: int | str
) -> None:
    if isinstance(expected, int):
        assert manual_target(cfg(), 10, action, count, force) == expected
    else:
        with pytest.raises(InvalidInput) as exc:
            manual_target(cfg(), 10, action, count, force)
        assert exc.value.field == "instanceCount"
        assert expected in exc.value.message


def _intent(age_sec: float) -> PendingAction:
    return PendingAction(
        run_id="run-1",
        source="guard",
        desired_instances=5,
        fence=7,
        at=NOW - timedelta(seconds=age_sec),
    )


@pytest.mark.parametrize(
    ("pending", "held"),
    [
        (None, False),
        (_intent(0), True),
        (_intent(-30), True),  # a manual intent stamped after the guard's minute
        (_intent(179), True),
        (_intent(180), False),  # abandoned: older than the operation could take
        (_intent(3600), False),
    ],
)
def test_an_action_in_flight_holds_other_deciders(
    pending: PendingAction | None, held: bool
) -> None:
    why = in_flight(pending, NOW, 180)
    assert (why is not None) is held
    if why is not None:
        assert why.startswith("guard action of run-1 to 5 instances in flight since")


def test_state_after_completes_the_pending_action() -> None:
    state = ServiceState(current_instances=3, pending=_intent(0))
    decision = decide(service_config(), state, None, NOW)
    assert state_after(state, decision, NOW, None).pending is None
