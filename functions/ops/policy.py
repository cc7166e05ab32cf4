"""Ops dashboard decisions: pure functions of data and ``now``, no I/O.

- alert rules: a threshold condition must hold for ``for_minutes`` consecutive
  evaluated minutes before its alert opens; one alert stays open while it holds; it
  resolves when the condition clears (with its duration);
- system health from the services' statuses;
- history downsampling into min/avg/max buckets;
- the live console's parts: the active blocks as listed, the deployments' rows, and the
  etag of what the page shows.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import thresholds
from shared.alerts.policy import AlertChange, AlertResolve, AlertSpec
from shared.clock import minute_of
from shared.models.alerts import AlertSource, Severity
from shared.models.ddos import BlockDoc
from shared.models.deploy import ACTIVE_PHASES, Phase
from shared.models.ops import (
    BlockView,
    Bucket,
    HealthStatus,
    LiveMetrics,
    ServiceHealth,
    ServiceStatus,
    SystemHealth,
)
from shared.models.scaling import IsolationState


def start_of_day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


# ------------------------------------------------------------------- health


def scaling_service_status(isolation: IsolationState) -> ServiceStatus:
    """A registered service's status from its isolation circuit: isolated (open) is
    down for its callers, half-open is degraded."""
    if isolation is IsolationState.OPEN:
        return ServiceStatus.DOWN
    if isolation is IsolationState.HALF_OPEN:
        return ServiceStatus.DEGRADED
    return ServiceStatus.UP


def system_health(services: Iterable[ServiceHealth]) -> SystemHealth:
    """critical when any service is down, degraded when any is degraded, else healthy."""
    listed = list(services)
    statuses = {s.status for s in listed}
    if ServiceStatus.DOWN in statuses:
        status = HealthStatus.CRITICAL
    elif ServiceStatus.DEGRADED in statuses:
        status = HealthStatus.DEGRADED
    else:
        status = HealthStatus.HEALTHY
    return SystemHealth(status=status, services=listed)


# ------------------------------------------------------------------- alerts


class RuleName(enum.StrEnum):
    """The spec's alert rules. Closed."""

    CRITICAL_FRAUD = "critical_fraud"
    """Critical fraud alerts > 5: ops notification."""
    FAILED_PAYOUTS = "failed_payouts"
    """Failed payouts > 10: immediate review."""
    URGENT_SUPPORT = "urgent_support"
    """Urgent support tickets > 50: team escalation."""
    SERVICE_DOWN = "service_down"
    """Any service down: emergency response (no ``for``)."""


@dataclass(frozen=True)
class AlertRule:
    name: RuleName
    title: str
    severity: Severity
    threshold: float
    """The condition holds when the value is strictly above this."""
    for_minutes: int


def alert_rules(for_minutes: int = thresholds.ALERT_FOR_MINUTES_DEFAULT) -> list[AlertRule]:
    """The rules with the configured ``for`` (service down always fires at once)."""
    return [
        AlertRule(
            RuleName.CRITICAL_FRAUD,
            "Critical fraud alerts: notify ops",
            Severity.HIGH,
            thresholds.ALERT_CRITICAL_FRAUD_COUNT,
            for_minutes,
        ),
        AlertRule(
            RuleName.FAILED_PAYOUTS,
            "Failed payouts: immediate review",
            Severity.HIGH,
            thresholds.ALERT_FAILED_PAYOUTS_COUNT,
            for_minutes,
        ),
        AlertRule(
            RuleName.URGENT_SUPPORT,
            "Urgent support tickets: escalate to the team",
            Severity.MEDIUM,
            thresholds.ALERT_URGENT_SUPPORT_TICKETS_COUNT,
            for_minutes,
        ),
        AlertRule(
            RuleName.SERVICE_DOWN, "Service down: emergency response", Severity.CRITICAL, 0, 1
        ),
    ]


def rule_value(rule: RuleName, metrics: LiveMetrics) -> float:
    """The number a rule watches."""
    if rule is RuleName.CRITICAL_FRAUD:
        return metrics.fraud_alerts.critical
    if rule is RuleName.FAILED_PAYOUTS:
        return metrics.payout_queue.failed
    if rule is RuleName.URGENT_SUPPORT:
        return metrics.support_queue.urgent
    return sum(1 for s in metrics.system_health.services if s.status is ServiceStatus.DOWN)


class AlertAction(enum.StrEnum):
    NONE = "none"
    """Nothing to do (quiet, pending its ``for``, or a re-run of the same minute)."""
    OPEN = "open"
    """Open a new alert."""
    KEEP = "keep"
    """The open alert stays open (no duplicate)."""
    RESOLVE = "resolve"
    """The condition cleared: resolve the open alert."""


@dataclass(frozen=True)
class RuleState:
    """A rule's condition history: what :func:`evaluate_rule` needs besides the value."""

    consecutive: int = 0
    last_minute: datetime | None = None
    open_alert_id: str | None = None


@dataclass(frozen=True)
class RuleOutcome:
    action: AlertAction
    state: RuleState
    alert_id: str | None
    """The alert to open (its id) or the one kept/resolved."""


def alert_id_for(rule: RuleName, minute: datetime) -> str:
    return f"ops_{rule.value}_{minute.strftime('%Y%m%dT%H%MZ')}"


def evaluate_rule(rule: AlertRule, value: float, state: RuleState, now: datetime) -> RuleOutcome:
    """Advance ``rule``'s condition history by the minute of ``now``.

    Consecutive minutes count only without gaps (a missed minute restarts the count).
    Re-evaluating a minute already evaluated changes nothing, except that a condition
    first seen holding by a later run of the minute counts for it: overlapping runs never
    open two alerts, and a late run does not delay an alert by a minute."""
    minute = minute_of(now)
    holds = value > rule.threshold
    if state.last_minute is not None and minute <= state.last_minute:
        # A re-run within the minute may only see the condition start (it then counts
        # for this minute); clearing counts from the next minute on.
        if minute == state.last_minute and holds and state.consecutive == 0:
            return _held(rule, RuleState(0, None, None), minute)
        return RuleOutcome(AlertAction.NONE, state, state.open_alert_id)
    if not holds:
        cleared = RuleState(0, minute, None)
        if state.open_alert_id is not None:
            return RuleOutcome(AlertAction.RESOLVE, cleared, state.open_alert_id)
        return RuleOutcome(AlertAction.NONE, cleared, None)
    contiguous = state.last_minute is not None and minute - state.last_minute == timedelta(
        minutes=1
    )
    if state.open_alert_id is not None:
        consecutive = state.consecutive + 1 if contiguous else 1
        kept = replace(state, consecutive=consecutive, last_minute=minute)
        return RuleOutcome(AlertAction.KEEP, kept, state.open_alert_id)
    return _held(rule, state if contiguous else RuleState(), minute)


def _held(rule: AlertRule, before: RuleState, minute: datetime) -> RuleOutcome:
    """The condition holds in ``minute`` and no alert is open: count it, open at ``for``."""
    consecutive = before.consecutive + 1
    if consecutive >= max(rule.for_minutes, 1):
        alert_id = alert_id_for(rule.name, minute)
        return RuleOutcome(AlertAction.OPEN, RuleState(consecutive, minute, alert_id), alert_id)
    return RuleOutcome(AlertAction.NONE, RuleState(consecutive, minute, None), None)


def rule_alert_key(rule: RuleName) -> str:
    """One alert per rule while its condition holds."""
    return f"ops:{rule.value}"


def rule_alert(rule: AlertRule, value: float, outcome: RuleOutcome) -> AlertChange | None:
    """The alert change of a rule's outcome: raise when it opens (id: per rule and minute)
    or stays open (seen again, with the latest value), resolve when it clears."""
    if outcome.action is AlertAction.RESOLVE:
        return AlertResolve(
            rule_alert_key(rule.name), f"value {value:g} back at or under {rule.threshold:g}"
        )
    if outcome.action not in (AlertAction.OPEN, AlertAction.KEEP):
        return None
    return AlertSpec(
        source=AlertSource.OPS,
        kind=rule.name.value,
        dedup_key=rule_alert_key(rule.name),
        severity=rule.severity,
        title=rule.title,
        evidence={"value": value, "threshold": rule.threshold, "forMinutes": rule.for_minutes},
        alert_id=outcome.alert_id if outcome.action is AlertAction.OPEN else None,
        rule=rule.name.value,
        threshold=rule.threshold,
        value=value,
    )


# ------------------------------------------------------------------ history


def flatten(metrics: LiveMetrics) -> dict[str, float]:
    """Every number of the metrics under its dotted camelCase name (history values)."""
    values: dict[str, float] = {}
    dumped = metrics.model_dump(mode="json", by_alias=True)
    for key, value in dumped.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            values[key] = float(value)
        elif isinstance(value, dict):
            for sub, inner in value.items():
                if isinstance(inner, int | float) and not isinstance(inner, bool):
                    values[f"{key}.{sub}"] = float(inner)
    values["systemHealth.servicesDown"] = float(rule_value(RuleName.SERVICE_DOWN, metrics))
    return values


def downsample(
    points: Iterable[tuple[datetime, Mapping[str, float]]],
    since: datetime,
    bucket_sec: int,
    fields: Iterable[str] | None,
) -> dict[str, list[Bucket]]:
    """Group points into ``bucket_sec`` buckets aligned on ``since`` (min/avg/max/count per
    bucket, buckets without points left out), per field (all fields seen when None)."""
    wanted = set(fields) if fields is not None else None
    acc: dict[str, dict[int, list[float]]] = {}
    for at, values in points:
        index = int((at - since).total_seconds() // bucket_sec)
        if index < 0:
            continue
        for name, value in values.items():
            if wanted is not None and name not in wanted:
                continue
            acc.setdefault(name, {}).setdefault(index, []).append(value)
    series: dict[str, list[Bucket]] = {name: [] for name in sorted(wanted or ())}
    for name, buckets in sorted(acc.items()):
        series[name] = [
            Bucket(
                at=since + timedelta(seconds=index * bucket_sec),
                min=min(vals),
                avg=sum(vals) / len(vals),
                max=max(vals),
                count=len(vals),
            )
            for index, vals in sorted(buckets.items())
        ]
    return series


# ------------------------------------------------------------- the live console


def content_etag(content: Any) -> str:
    """The etag of ``content`` (JSON values): sha256 of its canonical JSON (keys sorted,
    no spaces), the first ``LIVE_ETAG_HEX_CHARS`` hex digits. Equal content, equal etag."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[: thresholds.LIVE_ETAG_HEX_CHARS]


def block_views(blocks: Iterable[BlockDoc], now: datetime) -> list[BlockView]:
    """The blocks in force at ``now`` (not lifted, not expired), one per kind, scope and
    subject (a repeat offence re-blocks with a later expiry: that one holds), latest expiry
    first, then by key."""
    latest: dict[str, BlockDoc] = {}
    for block in blocks:
        if block.lifted_at is not None or block.expires_at <= now:
            continue
        key = f"{block.kind.value}:{block.scope.value}:{block.subject}"
        held = latest.get(key)
        if held is None or block.expires_at > held.expires_at:
            latest[key] = block
    ordered = sorted(latest.items(), key=lambda item: (-item[1].expires_at.timestamp(), item[0]))
    return [
        BlockView(
            key=key,
            scope=b.scope.value,
            subject=b.subject,
            kind=b.kind.value,
            reason=b.reason,
            until=b.expires_at,
            blocked_at=b.blocked_at,
            offence=b.offence,
        )
        for key, b in ordered
    ]


def deployment_rows(items: Iterable[Mapping[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The dashboard's deployments panel items (newest first) as the console lists them:
    the first ``limit``, each with ``status`` (``active`` while the deploy guard works on
    it, ``ended`` once final) and ``paused``; None where the document does not say."""
    rows: list[dict[str, Any]] = []
    for item in list(items)[:limit]:
        phase = item.get("phase")
        known = phase in {p.value for p in Phase}
        rows.append(
            {
                "id": item.get("id"),
                "version": item.get("version"),
                "environment": item.get("environment"),
                "phase": phase,
                "status": ("active" if phase in ACTIVE_PHASES else "ended") if known else None,
                "trafficPercent": item.get("trafficPercent"),
                "paused": phase == Phase.PAUSED.value if known else None,
                "createdAt": item.get("createdAt"),
                "updatedAt": item.get("updatedAt"),
            }
        )
    return rows
