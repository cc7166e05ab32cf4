"""Auto-scaling: the service registry, metrics, decisions, alerts and requests."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from shared.errors import InvalidInput
from shared.models import COUNT_MAX, LATENCY_MAX_MS, DocId, RequestModel, WireModel
from shared.thresholds import INSTANCES_HARD_MAX_COUNT, SCALING_REASON_MAX_CHARS


class ScaleAction(enum.StrEnum):
    """What one decision did to a service's instance count. Closed."""

    NONE = "none"
    """Nothing to change (within tolerance, held, or already at a bound)."""
    SCALE_UP = "scale_up"
    """More instances (a metric over its target, or a queue burst)."""
    SCALE_DOWN = "scale_down"
    """Fewer instances, only after the stabilisation window."""
    NO_DATA = "no_data"
    """Metrics missing or stale: nothing changes, and never a scale-down."""


class IsolationState(enum.StrEnum):
    """A service's circuit, as callers see it (the scaling area's isolation check). Closed."""

    NONE = "none"
    """Not isolated: calls go through."""
    OPEN = "open"
    """Isolated: every caller fails fast with ``UNAVAILABLE``."""
    HALF_OPEN = "half_open"
    """Recovering: a small share of calls goes through so the error rate can be measured."""


class HealthStatus(enum.StrEnum):
    """A service's health in ``pack391_serviceHealthCheck``. Closed."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    """Answers, but a metric is over its trigger or the metrics are missing."""
    ISOLATED = "isolated"
    """Isolated (open or half-open) by the error-rate trigger."""
    DOWN = "down"
    """The health URL did not answer 2xx in time."""


class ManualAction(enum.StrEnum):
    SCALE_UP = "scale_up"
    """Add ``instanceCount`` instances (default 1)."""
    SCALE_DOWN = "scale_down"
    """Remove ``instanceCount`` instances (default 1)."""
    SCALE_TO = "scale_to"
    """Set exactly ``instanceCount`` instances."""


class AlertKind(enum.StrEnum):
    """An isolation change of a service (the kind of a :class:`ScalingEventDoc`). Closed."""

    ISOLATED = "isolated"
    HALF_OPEN = "half_open"
    REISOLATED = "reisolated"
    RECOVERED = "recovered"


# ----------------------------------------------------------------- documents


class ServiceConfig(WireModel):
    """A registered service: bounds and where it runs."""

    service_id: str
    initial_instances: int
    min_instances: int
    max_instances: int
    cloud_run_service: str
    region: str
    health_url: str | None = None
    queue_source: str | None = None
    """Worker services: the queue whose backlog bursts them (a Cloud Tasks queue id)."""
    requests_per_instance_per_min: float | None = None
    """Request capacity of one instance; enables the request-rate recommendation."""

    @property
    def is_worker(self) -> bool:
        return self.queue_source is not None


class Recommendation(WireModel):
    at: datetime
    instances: int


class DecisionSummary(WireModel):
    at: datetime
    action: ScaleAction
    desired_instances: int
    reasons: list[str]


class PendingAction(WireModel):
    """An instance change sent to the platform and not yet recorded (the intent, written
    before the call). Another decider that finds it holds until it is completed, or until
    it is older than the platform's operation timeout (then it was abandoned)."""

    run_id: str
    source: str
    """``guard`` or ``manual``."""
    desired_instances: int
    fence: int
    """The per-service lock's fencing number of the holder that wrote it."""
    at: datetime


class ServiceState(WireModel):
    """A service's live scaling state (never reset by ``pack391_initScaling``)."""

    current_instances: int
    recommendations: list[Recommendation] = Field(default_factory=list)
    """Recent recommendations, for the scale-down stabilisation window."""
    last_action_at: datetime | None = None
    pinned_until: datetime | None = None
    """A manual scale holds automatic scale-down off until then."""
    isolation: IsolationState = IsolationState.NONE
    isolation_since: datetime | None = None
    below_threshold_since: datetime | None = None
    burst_active: bool = False
    last_decision: DecisionSummary | None = None
    pending: PendingAction | None = None
    """The instance change in flight, if any (see :class:`PendingAction`)."""


class ServiceDoc(WireModel):
    """``pack391_scaling_services/{serviceId}``."""

    config: ServiceConfig
    state: ServiceState
    created_at: datetime | None = None
    updated_at: datetime | None = None


class MetricsSnapshot(WireModel):
    """One minute of a service's load; None where the source had no value."""

    at: datetime
    """Start of the minute the values describe."""
    source: str
    cpu_pct: float | None = None
    p95_latency_ms: float | None = None
    error_rate_pct: float | None = None
    requests_per_min: float | None = None
    queue_backlog: int | None = None


class MetricRecommendation(WireModel):
    metric: str
    value: float
    target: float
    desired_instances: int
    within_tolerance: bool


class PlatformAnswer(WireModel):
    """What the scaler's platform (Cloud Run, or the local stack) answered."""

    platform: str
    ok: bool
    instances: int
    detail: dict[str, Any] = Field(default_factory=dict)


class DecisionDoc(WireModel):
    """``pack391_scaling_decisions/{id}``: one per service per guard run, and per manual scale."""

    service_id: str
    at: datetime
    source: str
    """``guard`` or ``manual``."""
    dry_run: bool
    current_instances: int
    desired_instances: int
    action: ScaleAction
    reasons: list[str]
    metrics: MetricsSnapshot | None = None
    recommendations: list[MetricRecommendation] = Field(default_factory=list)
    raw_desired: int | None = None
    stabilised_desired: int | None = None
    isolation_before: IsolationState = IsolationState.NONE
    isolation_after: IsolationState = IsolationState.NONE
    acted: bool = False
    platform: PlatformAnswer | None = None
    actor_uid: str | None = None
    run_id: str
    expire_at: datetime | None = None
    """When a Firestore TTL policy may delete it."""


class ScalingEventDoc(WireModel):
    """``pack391_scaling_events/{id}``: the isolation event log, one per isolation change
    (the alert it raises or resolves is in ``pack391_alerts``)."""

    service_id: str
    kind: AlertKind
    at: datetime
    error_rate_pct: float | None
    threshold_pct: float
    message: str
    expire_at: datetime | None = None


# ------------------------------------------------------------------ requests

ServiceId = Annotated[DocId, Field(pattern=r"^[a-z][a-z0-9-]{1,62}$")]
Reason = Annotated[StrictStr, Field(min_length=1, max_length=SCALING_REASON_MAX_CHARS)]
InstanceCount = Annotated[StrictInt, Field(ge=0, le=INSTANCES_HARD_MAX_COUNT)]
Pct = Annotated[StrictFloat, Field(ge=0, le=100)]
LatencyMs = Annotated[StrictFloat, Field(ge=0, le=LATENCY_MAX_MS)]
Count = Annotated[StrictInt, Field(ge=0, le=COUNT_MAX)]
HttpUrl = Annotated[StrictStr, Field(pattern=r"^https?://[^\s]+$", max_length=2000)]


class ServiceOverride(RequestModel):
    """Registry fields to set on ``pack391_initScaling`` (others keep their defaults)."""

    health_url: HttpUrl | None = None
    cloud_run_service: Annotated[StrictStr, Field(min_length=1, max_length=63)] | None = None
    region: Annotated[StrictStr, Field(min_length=1, max_length=40)] | None = None
    min_instances: InstanceCount | None = None
    max_instances: Annotated[StrictInt, Field(ge=1, le=INSTANCES_HARD_MAX_COUNT)] | None = None
    requests_per_instance_per_min: Annotated[StrictFloat, Field(gt=0, le=COUNT_MAX)] | None = None


class InitScalingRequest(RequestModel):
    region: Annotated[StrictStr, Field(min_length=1, max_length=40)] | None = None
    """Region of every service (default: the functions' region)."""
    overrides: dict[ServiceId, ServiceOverride] | None = None
    """Per service id: config to set, applied on every run (audited), state untouched."""


class ServiceHealthRequest(RequestModel):
    service_id: ServiceId | None = None


NO_REASON_GIVEN = "no reason given"
"""What a manual scale without a ``reason`` is audited with (the spec's own troubleshooting
call, ``manualScale({serviceId, action, instanceCount})``, gives none)."""


class ManualScaleRequest(RequestModel):
    service_id: ServiceId
    action: ManualAction
    instance_count: InstanceCount | None = None
    reason: Reason = NO_REASON_GIVEN
    """Why, for the audit log; optional (the caller is recorded either way)."""
    force: StrictBool = False
    """Allow a count outside the service's min/max (still within the hard maximum)."""

    @model_validator(mode="after")
    def _count_for_scale_to(self) -> ManualScaleRequest:
        if self.action is ManualAction.SCALE_TO and self.instance_count is None:
            # raised as is (not a ValueError) so the error names its field
            raise InvalidInput("instanceCount", "required for scale_to")
        return self


class ReportMetricsRequest(RequestModel):
    """One sample a service (or its sidecar) pushes; any subset of the values."""

    service_id: ServiceId
    cpu_pct: Pct | None = None
    p95_latency_ms: LatencyMs | None = None
    requests: Count | None = None
    """Requests served since the previous report."""
    errors: Count | None = None
    """Of those, failed (5xx) requests."""
    queue_depth: Count | None = None
    resize_hook_url: HttpUrl | None = None
    """Local stack only: the URL the local scaler POSTs ``{serviceId, instances}`` to."""

    @model_validator(mode="after")
    def _errors_within_requests(self) -> ReportMetricsRequest:
        if self.errors is not None and (self.requests is None or self.errors > self.requests):
            raise InvalidInput("errors", "needs requests, and cannot exceed it")
        return self


# ----------------------------------------------------------------- responses


class InitScalingResult(WireModel):
    created: list[str]
    updated: list[str]
    unchanged: list[str]


class ServiceHealth(WireModel):
    service_id: str
    status: HealthStatus
    probe_ok: bool | None
    """None when the service has no health URL."""
    probe_status: int | None = None
    probe_ms: float | None = None
    probe_error: str | None = None
    metrics: MetricsSnapshot | None = None
    current_instances: int
    isolation: IsolationState
    last_decision: DecisionSummary | None = None


class HealthReport(WireModel):
    services: list[ServiceHealth]
    stale: bool = False
    """True: Firestore did not answer within a short wait and the registry's part (each
    service's config, instance count, isolation and last decision) is the instance's
    last-known copy; the probes and metrics are read now (docs/reliability.md, "Stale
    answers")."""
    stale_age_sec: float | None = None
    """How old the stale answer is, in seconds (at most ``PACK391_STALE_MAX_SEC``); None
    when fresh."""


class ManualScaleResult(WireModel):
    service_id: str
    previous_instances: int
    instances: int
    forced: bool
    pinned_until: datetime
    platform: PlatformAnswer


class ReportMetricsResult(WireModel):
    service_id: str
    minute: datetime
    hook_registered: bool


class ScaleGuardReport(WireModel):
    run_id: str
    locked: bool
    """False when another run held the lock (this one did nothing)."""
    decisions: list[DecisionDoc] = Field(default_factory=list)
