"""Ops dashboard: live metrics, history, alert rules, the dashboard view,
and the shapes of the app's source collections the metrics are counted from."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, StrictStr

from shared import thresholds
from shared.models import DocId, RequestModel, WireModel

# ----------------------------------------------------------- app source documents


class UserActivityDoc(WireModel):
    """``users/{uid}`` (written by the app): only the fields the metrics read."""

    last_active_at: datetime
    """Last time the user did anything (active users: within 15 minutes)."""
    last_purchase_at: datetime | None = None
    """Last token purchase (paying users: within 30 days)."""


class WalletTxType(enum.StrEnum):
    EARN = "earn"
    """Tokens credited (earnings, purchases)."""
    SPEND = "spend"
    """Tokens debited (chats, calls, gifts)."""


class WalletTransactionDoc(WireModel):
    """``walletTransactions/{id}`` (written by the wallet)."""

    uid: str
    type: WalletTxType
    amount: float
    """Tokens, positive for both types."""
    created_at: datetime


class FraudAlertDoc(WireModel):
    """``fraudAlerts/{id}`` (written by fraud detection)."""

    status: Literal["active", "resolved"]
    severity: Literal["low", "medium", "high", "critical"]
    created_at: datetime
    resolved_at: datetime | None = None


class PayoutDoc(WireModel):
    """``payouts/{id}`` (written by the payouts bundle)."""

    uid: str
    status: Literal["pending", "processing", "failed", "paid"]
    amount: float
    """In the payout currency's major unit."""
    created_at: datetime


class SupportTicketDoc(WireModel):
    """``supportTickets/{id}`` (written by the support bundle)."""

    status: Literal["open", "closed"]
    priority: Literal["low", "normal", "high", "urgent"]
    created_at: datetime
    first_response_at: datetime | None = None
    response_time_sec: float | None = None
    """Seconds from creation to the first answer, set together with ``firstResponseAt``."""


# ------------------------------------------------------------------ live metrics


class TokenVelocity(WireModel):
    earned: float
    spent: float
    net: float
    transactions_per_minute: float


class FraudAlerts(WireModel):
    active: int
    critical: int
    resolved_today: int


class PayoutQueue(WireModel):
    pending: int
    processing: int
    failed: int
    total_amount: float


class SupportQueue(WireModel):
    open: int
    urgent: int
    avg_response_time: float | None
    """Seconds; None when no ticket was answered in the window."""


class PanicActivations(WireModel):
    last24h: int = Field(alias="last24h")
    """Activations granted in the last 24 hours (the spec's name, kept as is)."""
    active: int


class ServiceStatus(enum.StrEnum):
    UP = "up"
    DOWN = "down"
    DEGRADED = "degraded"


class HealthStatus(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"


class ServiceHealth(WireModel):
    name: str
    status: ServiceStatus


class SystemHealth(WireModel):
    status: HealthStatus
    services: list[ServiceHealth]


class SourceMetrics(WireModel):
    """The live metrics counted from the app's collections (and the panic passes)."""

    active_users: int
    paying_users: int
    token_velocity: TokenVelocity
    fraud_alerts: FraudAlerts
    payout_queue: PayoutQueue
    support_queue: SupportQueue
    panic_activations: PanicActivations


class LiveMetrics(SourceMetrics):
    """The spec's live metrics, exactly."""

    system_health: SystemHealth


class LiveSnapshotDoc(WireModel):
    """``pack391_ops_metrics/live``: the current snapshot."""

    at: datetime
    metrics: LiveMetrics
    run_id: str


class HistoryPointDoc(WireModel):
    """``pack391_ops_metrics_history/{minute}``: one point a minute, flattened numbers
    (``tokenVelocity.earned`` ...) so any field can be charted; ``expireAt`` for TTL."""

    at: datetime
    values: dict[str, float]
    expire_at: datetime


class AlertRuleStateDoc(WireModel):
    """``pack391_ops_alert_rules/{rule}``: the condition history a rule needs."""

    rule: str
    consecutive: int = 0
    """Consecutive evaluated minutes the condition held (0: it does not hold)."""
    last_minute: datetime | None = None
    """The minute last evaluated (a re-run in the same minute changes nothing)."""
    open_alert_id: str | None = None
    last_value: float = 0.0
    updated_at: datetime | None = None


# --------------------------------------------------------------------- requests

HistoryRange = Literal["1h", "24h", "7d"]
FieldName = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class GetLiveMetricsRequest(RequestModel):
    """No fields: the current snapshot."""


class GetHistoricalMetricsRequest(RequestModel):
    range: HistoryRange
    fields: Annotated[list[FieldName], Field(min_length=1, max_length=40)] | None = None


class GetOpsDashboardRequest(RequestModel):
    """No fields: the whole view."""


Etag = Annotated[StrictStr, Field(max_length=64, pattern=r"^[0-9a-f]{1,64}$")]
"""An ``etag`` a page sends back: lower-case hex, at most 64 characters."""


class GetOpsLiveRequest(RequestModel):
    etag: Etag | None = None
    """The ``etag`` of the answer the page holds: when still current, the answer says
    ``notModified`` and carries nothing else."""


class GetOpsTimelineRequest(RequestModel):
    minutes: Annotated[
        StrictInt,
        Field(ge=thresholds.TIMELINE_MINUTES_MIN, le=thresholds.TIMELINE_MINUTES_MAX),
    ] = thresholds.TIMELINE_MINUTES_DEFAULT
    """How far back the timeline goes, in minutes."""


class AcknowledgeAlertRequest(RequestModel):
    alert_id: Annotated[DocId, Field(min_length=1, max_length=200, pattern=r"^[\w.-]+$")]
    note: Annotated[StrictStr, Field(max_length=500)] | None = None


# -------------------------------------------------------------------- responses


class LiveMetricsView(WireModel):
    at: datetime | None
    age_sec: float | None
    metrics: LiveMetrics | None


class Bucket(WireModel):
    at: datetime
    min: float
    avg: float
    max: float
    count: int


class HistoricalMetricsView(WireModel):
    range: str
    bucket_sec: int
    since: datetime
    until: datetime
    series: dict[str, list[Bucket]]
    stale: bool = False
    """True: Firestore did not answer within a short wait and this is the instance's
    last-known answer, ``since`` and ``until`` as they were then (docs/reliability.md,
    "Stale answers")."""
    stale_age_sec: float | None = None
    """How old the stale answer is, in seconds (at most ``PACK391_STALE_MAX_SEC``); None
    when fresh."""


class AlertView(WireModel):
    id: str
    collection: str
    source: str
    kind: str
    severity: str
    title: str
    status: str
    opened_at: datetime
    last_seen_at: datetime | None = None
    occurrences: int = 1
    acknowledged_by: str | None = None
    value: float | None = None
    threshold: float | None = None
    notification: str | None = None


class ServiceView(WireModel):
    name: str
    status: ServiceStatus
    instances: int | None = None
    isolation: str | None = None
    last_action: str | None = None
    last_decision_at: datetime | None = None


class Panel(WireModel):
    """A panel fed by another area: ``available`` False when that area is not deployed."""

    available: bool
    reason: str | None = None
    items: list[dict[str, Any]] = Field(default_factory=list)


class DDoSPanel(WireModel):
    mode_active: bool
    mode_until: datetime | None
    mode_reason: str | None
    recent_detections: list[dict[str, Any]]


class OpsDashboardView(WireModel):
    generated_at: datetime
    live: LiveMetricsView
    open_alerts: list[AlertView]
    services: list[ServiceView]
    deployments: Panel
    ddos: DDoSPanel
    load_tests: Panel
    backups: Panel
    markets: list[dict[str, Any]]
    stale: bool = False
    """True: Firestore did not answer within a short wait and this is the instance's
    last-known answer (docs/reliability.md, "Stale answers")."""
    stale_age_sec: float | None = None
    """How old the stale answer is, in seconds (at most ``PACK391_STALE_MAX_SEC``); None
    when fresh."""


class AcknowledgeAlertResult(WireModel):
    id: str
    status: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    changed: bool


# ------------------------------------------------------------- the live console


class BlockView(WireModel):
    """An active block as the live console lists it (one per kind, scope and subject: the
    latest expiry, which is what Redis holds)."""

    key: str
    """``{kind}:{scope}:{subject}``: unique in the list."""
    scope: str
    """``ip`` or ``user``: ``pack391_liftBlock``'s ``scope``."""
    subject: str
    """The address (or IPv6 /64) or the uid: ``pack391_liftBlock``'s ``subject``."""
    kind: str
    """``ddos`` or ``brute_force``."""
    reason: str
    until: datetime
    blocked_at: datetime
    offence: int


class AllowlistView(WireModel):
    entry: str
    reason: str
    added_by: str
    added_at: datetime


class OpsLiveDDoS(WireModel):
    mode_active: bool
    mode_until: datetime | None
    mode_reason: str | None
    blocks: list[BlockView]
    allowlist: list[AllowlistView]


class SloScopeView(WireModel):
    """One scope's budget as the console shows it."""

    scope: str
    level: str
    why: str
    burn_1h: float | None = Field(alias="burn1h")
    burn_5m: float | None = Field(alias="burn5m")
    availability_budget_left_pct: float
    latency_budget_left_pct: float


class SloActionView(WireModel):
    action: str
    mode: str
    wanted: bool
    enforced: bool
    reason: str
    scopes: list[str]
    classes: list[str]
    lifted_until: datetime | None
    lifted_by: str | None


class OpsLiveSlo(WireModel):
    """The error budgets: the evaluated minute, every scope burning or with a budget
    (platform and classes first), and the automatic actions."""

    minute: datetime
    scopes: list[SloScopeView]
    actions: list[SloActionView]


class ActivityEntry(WireModel):
    """One audit-log entry as the console lists it (its ``before``/``after`` left out)."""

    id: str
    at: datetime
    actor_uid: str
    actor_email: str | None = None
    action: str
    target: str
    reason: str | None = None
    request_id: str


class OpsLiveView(WireModel):
    etag: str
    """sha256 (first 32 hex digits) of the canonical JSON of ``alerts``, ``ddos``,
    ``deployments``, ``services``, ``activity`` and ``slo``: it changes exactly when they
    do."""
    not_modified: bool
    """The request's ``etag`` is this one: every part below is null (keep what you have)."""
    generated_at: datetime
    alerts: list[AlertView] | None
    ddos: OpsLiveDDoS | None
    deployments: list[dict[str, Any]] | None
    services: list[ServiceView] | None
    activity: list[ActivityEntry] | None
    slo: OpsLiveSlo | None = None
    """The error budgets (``pack391_slo/current``); None before the evaluator's first run,
    and with ``notModified``."""
    stale: bool = False
    """True: Firestore did not answer within a short wait and the Firestore parts are the
    instance's last-known copy (DDoS mode, from Redis, is read now); not in the etag."""
    stale_age_sec: float | None = None
    """How old the stale copy is, in seconds; None when fresh; not in the etag."""


TimelineLane = Literal["alert", "mitigation", "deployment", "scale", "action"]


class TimelineEvent(WireModel):
    at: datetime
    end_at: datetime | None = None
    lane: TimelineLane
    title: str
    detail: str | None = None
    severity: str | None = None


class OpsTimelineView(WireModel):
    from_: datetime = Field(alias="from")
    to: datetime
    events: list[TimelineEvent]
    """Sorted by ``at``."""
    stale: bool = False
    """True: Firestore did not answer within a short wait and this is the instance's
    last-known timeline for these minutes (``from``/``to`` as they were then)."""
    stale_age_sec: float | None = None
