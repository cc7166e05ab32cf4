"""The scaling decision: pure functions of a service's config, state, metrics and ``now``.

Modelled on Kubernetes' HPA: for each metric ``desired = ceil(current * value / target)``,
nothing changes inside a tolerance band, the largest recommendation wins, scale-up is
rate limited per step, scale-down uses the highest recommendation of a stabilisation
window, a cooldown follows each action, and the result stays within min/max. Missing or
stale metrics are ``no_data`` and never scale down. The error-rate trigger does not
scale: it isolates the service (a circuit: open, half-open, recovered). A queue backlog
over the burst trigger sizes a worker service to its backlog in one step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared import thresholds as t
from shared.alerts.policy import AlertChange, AlertResolve, AlertSpec
from shared.errors import InvalidInput
from shared.models.alerts import AlertSource, Severity
from shared.models.scaling import (
    AlertKind,
    DecisionSummary,
    IsolationState,
    ManualAction,
    MetricRecommendation,
    MetricsSnapshot,
    PendingAction,
    Recommendation,
    ScaleAction,
    ServiceConfig,
    ServiceState,
)


@dataclass(frozen=True)
class PolicyConfig:
    """The policy's numbers (defaults: :mod:`shared.thresholds`); the benchmark varies them."""

    cpu_target_pct: float = t.SCALE_UP_CPU_PCT
    latency_target_ms: float = t.SCALE_UP_P95_LATENCY_MS
    requests_target_ratio: float = t.SCALE_UP_REQUESTS_PER_INSTANCE_TARGET_RATIO
    error_rate_threshold_pct: float = t.ISOLATE_ERROR_RATE_PCT
    isolation_min_requests_per_min: int = t.ISOLATION_MIN_REQUESTS_PER_MIN
    burst_backlog_count: int = t.BURST_QUEUE_BACKLOG_COUNT
    burst_backlog_per_instance_count: int = t.BURST_BACKLOG_PER_INSTANCE_COUNT
    burst_drained_backlog_count: int = t.BURST_DRAINED_BACKLOG_COUNT
    tolerance_ratio: float = t.SCALE_TOLERANCE_RATIO
    stabilisation_sec: int = t.SCALE_DOWN_STABILISATION_SEC
    cooldown_sec: int = t.SCALE_COOLDOWN_SEC
    up_max_step_pct: float = t.SCALE_UP_MAX_STEP_PCT
    up_max_step_instances: int = t.SCALE_UP_MAX_STEP_INSTANCES_COUNT
    up_steps_per_run: int = max(1, t.SCALE_GUARD_INTERVAL_SEC // t.SCALE_UP_POLICY_PERIOD_SEC)
    metrics_max_age_sec: int = t.SCALE_METRICS_MAX_AGE_SEC
    isolation_open_sec: int = t.ISOLATION_OPEN_SEC
    isolation_recovery_sec: int = t.ISOLATION_RECOVERY_SEC


DEFAULT_POLICY = PolicyConfig()


@dataclass(frozen=True)
class IsolationStep:
    state: IsolationState
    since: datetime | None
    below_since: datetime | None
    alert: AlertKind | None = None


@dataclass(frozen=True)
class Decision:
    """One decision for one service: what to do, why, and the state to store after it."""

    action: ScaleAction
    current_instances: int
    desired_instances: int
    reasons: list[str]
    recommendations: list[MetricRecommendation] = field(default_factory=list)
    raw_desired: int | None = None
    stabilised_desired: int | None = None
    isolation: IsolationStep | None = None
    burst_active: bool = False
    history: list[Recommendation] = field(default_factory=list)

    @property
    def changes_instances(self) -> bool:
        return self.desired_instances != self.current_instances


# ------------------------------------------------------------ single rules


def hpa_desired(current: int, value: float, target: float, tolerance: float) -> tuple[int, bool]:
    """HPA's rule: ``ceil(current * value / target)``, or ``current`` inside the tolerance
    band. Returns (desired, within tolerance). A service at zero counts as one instance."""
    ratio = value / target
    if abs(ratio - 1.0) <= tolerance + 1e-9:  # 71.5/65 is 1.1000000000000001
        return current, True
    return math.ceil(max(current, 1) * ratio - 1e-9), False


def scale_up_limit(current: int, pc: PolicyConfig = DEFAULT_POLICY) -> int:
    """Most instances one guard run may reach: each of its ``up_steps_per_run`` HPA
    periods allows +``up_max_step_pct`` or +``up_max_step_instances``, whichever is
    larger, compounded (HPA evaluates every 15 s; the guard every 60 s)."""
    limit = current
    for _ in range(pc.up_steps_per_run):
        by_pct = math.floor(limit * (1 + pc.up_max_step_pct / 100))
        limit = max(by_pct, limit + pc.up_max_step_instances)
    return limit


def burst_instances(backlog: int, pc: PolicyConfig = DEFAULT_POLICY) -> int:
    """Worker instances for a backlog over the burst trigger: one per
    ``burst_backlog_per_instance_count`` jobs (bounds are applied by the caller)."""
    return math.ceil(backlog / pc.burst_backlog_per_instance_count)


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def is_stale(
    snap: MetricsSnapshot | None, now: datetime, pc: PolicyConfig = DEFAULT_POLICY
) -> bool:
    return snap is None or (now - snap.at).total_seconds() > pc.metrics_max_age_sec


def metric_recommendations(
    cfg: ServiceConfig, current: int, snap: MetricsSnapshot, pc: PolicyConfig = DEFAULT_POLICY
) -> list[MetricRecommendation]:
    """One recommendation per metric that has a value (CPU, p95 latency, request rate)."""
    recs: list[MetricRecommendation] = []

    def add(metric: str, value: float, target: float) -> None:
        desired, within = hpa_desired(current, value, target, pc.tolerance_ratio)
        recs.append(
            MetricRecommendation(
                metric=metric,
                value=value,
                target=target,
                desired_instances=desired,
                within_tolerance=within,
            )
        )

    if snap.cpu_pct is not None:
        add("cpu_pct", snap.cpu_pct, pc.cpu_target_pct)
    if snap.p95_latency_ms is not None:
        add("p95_latency_ms", snap.p95_latency_ms, pc.latency_target_ms)
    if cfg.requests_per_instance_per_min is not None and snap.requests_per_min is not None:
        per_instance = snap.requests_per_min / max(current, 1)
        add(
            "requests_per_instance_per_min",
            per_instance,
            cfg.requests_per_instance_per_min * pc.requests_target_ratio,
        )
    return recs


def missing_metrics(cfg: ServiceConfig, snap: MetricsSnapshot) -> list[str]:
    """Metrics this service is scaled on that the sample lacks."""
    missing = []
    if snap.cpu_pct is None:
        missing.append("cpu_pct")
    if snap.p95_latency_ms is None:
        missing.append("p95_latency_ms")
    if cfg.requests_per_instance_per_min is not None and snap.requests_per_min is None:
        missing.append("requests_per_min")
    if cfg.is_worker and snap.queue_backlog is None:
        missing.append("queue_backlog")
    return missing


def next_isolation(
    state: ServiceState,
    snap: MetricsSnapshot | None,
    now: datetime,
    pc: PolicyConfig = DEFAULT_POLICY,
) -> IsolationStep:
    """The circuit after this minute. Over the error threshold isolates (``open``); after
    ``isolation_open_sec`` it turns ``half_open``; over the threshold again re-opens; at or
    under it for ``isolation_recovery_sec`` recovers. No data changes nothing but time."""
    error = None if snap is None else snap.error_rate_pct
    if (
        error is not None
        and snap is not None
        and snap.requests_per_min is not None
        and snap.requests_per_min < pc.isolation_min_requests_per_min
    ):
        error = None  # too few requests to judge
    over = error is not None and error > pc.error_rate_threshold_pct
    since, below = state.isolation_since, state.below_threshold_since
    if state.isolation is IsolationState.NONE:
        if over:
            return IsolationStep(IsolationState.OPEN, now, None, AlertKind.ISOLATED)
        return IsolationStep(IsolationState.NONE, None, None)
    if state.isolation is IsolationState.OPEN:
        if since is None or (now - since).total_seconds() >= pc.isolation_open_sec:
            return IsolationStep(IsolationState.HALF_OPEN, now, None, AlertKind.HALF_OPEN)
        return IsolationStep(IsolationState.OPEN, since, None)
    # half-open
    if over:
        return IsolationStep(IsolationState.OPEN, now, None, AlertKind.REISOLATED)
    if error is None:
        return IsolationStep(IsolationState.HALF_OPEN, since, below)
    below = below or now
    if (now - below).total_seconds() >= pc.isolation_recovery_sec:
        return IsolationStep(IsolationState.NONE, None, None, AlertKind.RECOVERED)
    return IsolationStep(IsolationState.HALF_OPEN, since, below)


def window_history(
    history: list[Recommendation], now: datetime, pc: PolicyConfig = DEFAULT_POLICY
) -> list[Recommendation]:
    """Recommendations still inside the stabilisation window (inclusive of its start)."""
    start = now - timedelta(seconds=pc.stabilisation_sec)
    return [r for r in history if r.at >= start]


# ----------------------------------------------------------------- decision


def decide(
    cfg: ServiceConfig,
    state: ServiceState,
    snap: MetricsSnapshot | None,
    now: datetime,
    pc: PolicyConfig = DEFAULT_POLICY,
) -> Decision:
    """The decision for one service this minute (see the module docstring for the rules)."""
    current = state.current_instances
    fresh = None if is_stale(snap, now, pc) else snap
    isolation = next_isolation(state, fresh, now, pc)
    history = window_history(state.recommendations, now, pc)
    if fresh is None:
        stale = (
            "no_data: no metrics"
            if snap is None
            else (
                f"no_data: metrics are {(now - snap.at).total_seconds():.0f} s old "
                f"(max {pc.metrics_max_age_sec} s)"
            )
        )
        return Decision(
            ScaleAction.NO_DATA,
            current,
            current,
            [stale],
            isolation=isolation,
            burst_active=state.burst_active,
            history=history,
        )

    recs = metric_recommendations(cfg, current, fresh, pc)
    burst_active, burst_desired = _burst(cfg, state, fresh, pc)
    if burst_desired is not None:
        recs.append(
            MetricRecommendation(
                metric="queue_backlog",
                value=float(fresh.queue_backlog or 0),
                target=float(pc.burst_backlog_count),
                desired_instances=burst_desired,
                within_tolerance=False,
            )
        )
    if not recs:
        return Decision(
            ScaleAction.NO_DATA,
            current,
            current,
            ["no_data: the sample has no scaling metric"],
            isolation=isolation,
            burst_active=burst_active,
            history=history,
        )

    raw = max(r.desired_instances for r in recs)
    bounded = clamp(raw, cfg.min_instances, cfg.max_instances)
    history = [*history, Recommendation(at=now, instances=bounded)]
    base = Decision(
        ScaleAction.NONE, current, current, [], recs, raw, None, isolation, burst_active, history
    )
    cooling = state.last_action_at is not None and (
        (now - state.last_action_at).total_seconds() < pc.cooldown_sec
    )

    if bounded > current:
        bursting = burst_desired is not None and burst_desired >= raw
        limit = cfg.max_instances if bursting else scale_up_limit(current, pc)
        desired = max(min(bounded, limit), min(cfg.min_instances, bounded))
        if cooling:
            return _hold(base, f"cooldown: last action {state.last_action_at}")
        why = [
            f"{r.metric}={r.value:g} over target {r.target:g} -> {r.desired_instances}"
            for r in recs
            if r.desired_instances > current
        ]
        if bursting:
            why.append(f"burst: backlog {fresh.queue_backlog} sized to {burst_desired} workers")
        if desired < bounded:
            why.append(f"rate limited to {desired} (max step from {current})")
        if raw > cfg.max_instances:
            why.append(f"capped at max {cfg.max_instances}")
        return _act(base, ScaleAction.SCALE_UP, desired, why)

    if bounded < current:
        stabilised = max(r.instances for r in history)
        base = _with(base, stabilised_desired=stabilised)
        covered = min(r.at for r in history) <= now - timedelta(seconds=pc.stabilisation_sec)
        missing = missing_metrics(cfg, fresh)
        held = [
            (bool(missing), f"partial data ({', '.join(missing)} missing): no scale-down"),
            (isolation.state is not IsolationState.NONE, "isolated: no scale-down"),
            (
                state.pinned_until is not None and now < state.pinned_until,
                f"pinned by a manual scale until {state.pinned_until}",
            ),
            (burst_active, "burst still draining"),
            (not covered, f"stabilising: {pc.stabilisation_sec} s window not yet covered"),
            (stabilised >= current, f"stabilising: highest recommendation in window {stabilised}"),
            (cooling, f"cooldown: last action {state.last_action_at}"),
        ]
        for applies, hold_why in held:
            if applies:
                return _hold(base, hold_why)
        return _act(
            base,
            ScaleAction.SCALE_DOWN,
            stabilised,
            [f"all recommendations in the last {pc.stabilisation_sec} s at or under {stabilised}"],
        )

    return _hold(base, "within tolerance" if raw == current else f"at bound ({bounded})")


def _burst(
    cfg: ServiceConfig, state: ServiceState, snap: MetricsSnapshot, pc: PolicyConfig
) -> tuple[bool, int | None]:
    """(burst active after this minute, the backlog's recommendation or None)."""
    if not cfg.is_worker or snap.queue_backlog is None:
        return state.burst_active, None
    backlog = snap.queue_backlog
    if backlog > pc.burst_backlog_count:
        return True, burst_instances(backlog, pc)
    if backlog <= pc.burst_drained_backlog_count:
        return False, None
    # between drained and the trigger: a running burst keeps its instances until drained
    return state.burst_active, (state.current_instances if state.burst_active else None)


def _with(d: Decision, **changes: object) -> Decision:
    values = {**d.__dict__, **changes}
    return Decision(**values)


def _hold(d: Decision, why: str) -> Decision:
    return _with(d, action=ScaleAction.NONE, desired_instances=d.current_instances, reasons=[why])


def _act(d: Decision, action: ScaleAction, desired: int, why: list[str]) -> Decision:
    return _with(d, action=action, desired_instances=desired, reasons=why)


def state_after(
    state: ServiceState, decision: Decision, now: datetime, applied: int | None
) -> ServiceState:
    """The state to store after ``decision``; ``applied`` is the instance count the platform
    accepted (None when nothing was applied: dry run, no change, or the platform failed)."""
    iso = decision.isolation or IsolationStep(
        state.isolation, state.isolation_since, state.below_threshold_since
    )
    update: dict[str, object] = {
        "pending": None,  # this decision's own intent (if any) is complete
        "recommendations": decision.history,
        "isolation": iso.state,
        "isolation_since": iso.since,
        "below_threshold_since": iso.below_since,
        "burst_active": decision.burst_active,
        "last_decision": DecisionSummary(
            at=now,
            action=decision.action,
            desired_instances=decision.desired_instances,
            reasons=decision.reasons,
        ),
    }
    if applied is not None and applied != state.current_instances:
        update["current_instances"] = applied
        update["last_action_at"] = now
    return state.model_copy(update=update)


def in_flight(pending: PendingAction | None, now: datetime, max_age_sec: float) -> str | None:
    """Why nobody may decide for the service now: another holder's instance change was
    sent and not yet recorded, so the stored state is not what the platform will hold
    (None: nothing in flight, or an intent older than ``max_age_sec``: abandoned)."""
    if pending is None or (now - pending.at).total_seconds() >= max_age_sec:
        return None
    return (
        f"{pending.source} action of {pending.run_id} to {pending.desired_instances} instances "
        f"in flight since {pending.at.isoformat()}: not deciding from state it has not saved"
    )


def manual_target(
    cfg: ServiceConfig, current: int, action: ManualAction, count: int | None, force: bool
) -> int:
    """The instance count a manual scale asks for; outside min/max only with ``force``."""
    if action is ManualAction.SCALE_TO:
        assert count is not None  # the request model requires it
        target = count
    elif action is ManualAction.SCALE_UP:
        target = current + (1 if count is None else count)
    else:
        target = current - (1 if count is None else count)
    if target < 0 or target > t.INSTANCES_HARD_MAX_COUNT:
        raise InvalidInput(
            "instanceCount", f"would give {target} instances (0..{t.INSTANCES_HARD_MAX_COUNT})"
        )
    if not force and not cfg.min_instances <= target <= cfg.max_instances:
        raise InvalidInput(
            "instanceCount",
            f"would give {target} instances, outside {cfg.service_id}'s bounds "
            f"{cfg.min_instances}..{cfg.max_instances}: set force (with a reason) to override",
        )
    return target


def merge_config(base: ServiceConfig, fields: Mapping[str, object], field: str) -> ServiceConfig:
    """``base`` with ``fields`` set; min must not exceed max (``field`` names the culprit)."""
    merged = base.model_copy(update=dict(fields))
    if merged.min_instances > merged.max_instances:
        raise InvalidInput(
            field,
            f"minInstances {merged.min_instances} is over maxInstances {merged.max_instances}",
        )
    return merged


ISOLATION_MESSAGES: dict[AlertKind, str] = {
    AlertKind.ISOLATED: "error rate over the threshold: callers fail fast",
    AlertKind.HALF_OPEN: "half-open: a share of calls goes through to test recovery",
    AlertKind.REISOLATED: "still failing while half-open: isolated again",
    AlertKind.RECOVERED: "error rate stayed under the threshold: isolation lifted",
}
"""What each isolation change means, in words (event log and alert)."""


def isolation_dedup_key(service_id: str) -> str:
    """One isolation alert per service."""
    return f"scaling:isolation:{service_id}"


def isolation_alert(
    service_id: str,
    event: AlertKind,
    error_rate_pct: float | None,
    threshold_pct: float,
    dry_run: bool,
) -> AlertChange:
    """The isolation alert of an isolation change: opened (critical) when the service is
    isolated, updated when it turns half-open or is isolated again (the severity never
    goes down while it is active), resolved when the service recovers."""
    key = isolation_dedup_key(service_id)
    prefix = "[dry run] " if dry_run else ""
    message = f"{prefix}{service_id}: {ISOLATION_MESSAGES[event]}"
    if event is AlertKind.RECOVERED:
        return AlertResolve(key, message)
    return AlertSpec(
        source=AlertSource.SCALING,
        kind="isolation",
        dedup_key=key,
        severity=Severity.HIGH if event is AlertKind.HALF_OPEN else Severity.CRITICAL,
        title=message,
        evidence={
            "serviceId": service_id,
            "event": event.value,
            "errorRatePct": error_rate_pct,
            "thresholdPct": threshold_pct,
            "dryRun": dry_run,
        },
        value=error_rate_pct,
        threshold=threshold_pct,
    )
