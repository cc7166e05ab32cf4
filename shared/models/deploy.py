"""Deploy guard: pre-deploy reports, deployments, canary analyses and requests."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from shared.errors import InvalidInput
from shared.models import LATENCY_MAX_MS, DocId, RequestModel, WireModel
from shared.thresholds import DEPLOY_REASON_MAX_CHARS


class Phase(enum.StrEnum):
    """A deployment's phase. Closed; the active ones are in :data:`ACTIVE_PHASES`."""

    PENDING = "pending"
    """Recorded; no traffic has moved yet."""
    VALIDATING = "validating"
    """Checking the new revision is ready and takes no traffic before the first step."""
    PROGRESSING = "progressing"
    """A canary step is live and judged every minute."""
    PAUSED = "paused"
    """Held by a human, after too many inconclusive checks, or while the platform explains
    a breach (``platformHold`` set: judged every minute, rolled back on the canary's own
    breach, resumed by itself once the platform is clear); traffic stays as it is."""
    PROMOTING = "promoting"
    """The last step passed (or a human promoted): moving 100 % to the new revision."""
    SUCCEEDED = "succeeded"
    """The new revision serves 100 %: it is the stable one now. Final."""
    ROLLING_BACK = "rolling_back"
    """Moving 100 % back to the stable revisions."""
    ROLLED_BACK = "rolled_back"
    """The stable revisions serve 100 % again. Final."""
    FAILED = "failed"
    """The deployment could not run (no new revision to canary). Final."""


ACTIVE_PHASES = frozenset(
    {Phase.PENDING, Phase.VALIDATING, Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING,
     Phase.ROLLING_BACK}
)  # fmt: skip
"""Phases the monitor works on; the others are final."""


class GateStatus(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"
    """Not applicable here (e.g. no indexes on the emulator); does not fail the report."""


class Verdict(enum.StrEnum):
    """One minute's canary check. Closed."""

    PASS = "pass"
    FAIL = "fail"
    """Over a threshold, not yet conclusive: counts against the failure limit."""
    BREACH = "breach"
    """Conclusively over a threshold: rollback now."""
    INCONCLUSIVE = "inconclusive"
    """Too little canary traffic to judge, or over a threshold while stable is degraded
    alike and nothing on the platform says why: counts against the inconclusive limit."""
    EXPLAINED = "explained"
    """Over a threshold while the platform explains it (a platform signal in the judged
    minutes and stable degraded alike): the deployment pauses, neither steps nor rolls
    back."""


class ControlAction(enum.StrEnum):
    PROMOTE = "promote"
    """Skip the remaining steps: 100 % to the new revision."""
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    """Roll back now (same as ``pack391_rollbackController``)."""


# ------------------------------------------------------------------ documents


class GateResult(WireModel):
    name: str
    status: GateStatus
    evidence: dict[str, Any] = Field(default_factory=dict)


class ValidationReport(WireModel):
    """``pack391_deploy_reports/{reportId}``."""

    report_id: str
    version: str
    environment: str
    passed: bool
    gates: list[GateResult]
    at: datetime
    actor_uid: str


class RevisionWindow(WireModel):
    """What one revision did in the judged minute. Counts are events in the window."""

    requests: int = 0
    errors: int = 0
    p95_latency_ms: float | None = None
    payouts: int = 0
    payout_anomalies: int = 0
    token_writes: int = 0
    token_mismatches: int = 0
    auth_attempts: int = 0
    auth_failures: int = 0


class MetricCheck(WireModel):
    metric: str
    canary: float | None
    stable: float | None
    threshold: float
    verdict: Verdict
    detail: str = ""


class PlatformSignalKind(enum.StrEnum):
    """What the platform was doing during judged minutes. Closed."""

    DDOS_MODE = "ddos_mode"
    """DDoS mode on (the detector's mitigation: lower limits for everyone)."""
    DDOS_DETECTION = "ddos_detection"
    """An attack detected in the minute (high or critical, or mitigated)."""
    SCALE = "scale"
    """A service scaled up or down (acted, not a dry run), in or just before the minute."""
    ISOLATION = "isolation"
    """A service isolated, half-open, re-isolated or recovered (its circuit)."""
    DEPENDENCY_STALL = "dependency_stall"
    """Calls a dependency (Firestore, Cloud Run ...) did not answer within their budget."""


class PlatformSignal(WireModel):
    kind: PlatformSignalKind
    at: datetime
    """When it was recorded: the detection's or the stall's minute, the scale decision or
    isolation change, DDoS mode's latest start or extension."""
    detail: str
    minutes: list[datetime]
    """The judged minutes it covers."""


class PlatformContext(WireModel):
    """What the platform did during ``[window_start, window_end)``: pure data, built by
    :func:`functions.deploy_guard.policy.platform.platform_context`."""

    window_start: datetime
    window_end: datetime
    signals: list[PlatformSignal] = Field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(self.signals)

    def kinds(self) -> list[str]:
        return sorted({s.kind.value for s in self.signals})

    def minutes(self) -> list[datetime]:
        return sorted({m for s in self.signals for m in s.minutes})


class PlatformHold(WireModel):
    """Why a deployment is paused for the platform (``DeploymentDoc.platform_hold``)."""

    since: datetime
    checks: list[str]
    """The metrics the platform explained when it paused."""
    kinds: list[str]
    """The platform signals seen while paused."""
    minutes: list[datetime] = Field(default_factory=list)
    """The judged minutes the platform explained (the most recent ones)."""


class Analysis(WireModel):
    at: datetime
    window_start: datetime
    step: int
    traffic_percent: int
    verdict: Verdict
    checks: list[MetricCheck]
    canary: RevisionWindow
    stable: RevisionWindow
    platform: PlatformContext | None = None
    """What the platform did in the judged window (None: not read, the fast judge)."""


class ServiceTarget(WireModel):
    """One Cloud Run service the deployment moves."""

    service: str
    region: str
    stable_revision: str
    canary_revision: str | None = None


class HistoryEntry(WireModel):
    at: datetime
    event: str
    phase: Phase
    traffic_percent: int
    detail: dict[str, Any] = Field(default_factory=dict)


class DeploymentDoc(WireModel):
    """``pack391_deployments/{deploymentId}``."""

    deployment_id: str
    version: str
    environment: str
    strategy: str = "canary"
    phase: Phase
    step: int = -1
    """Index into the steps (-1: not started)."""
    steps_pct: list[int]
    traffic_percent: int = 0
    """Share of the new revision the platform was last told to serve."""
    applied_percent: int | None = None
    """Share the platform confirmed; differs from ``traffic_percent`` after a crash."""
    generation: int = 0
    """Bumped by every decision that changes ``traffic_percent``. A platform change carries
    the generation that decided it; ``applied_percent`` is recorded only while the
    deployment is still at that generation (a stale writer never records its split)."""
    confirmed_at: datetime | None = None
    """Final phases: when the platform was seen serving the final split. Until then the
    monitor re-asserts it every run and the environment stays taken."""
    services: list[ServiceTarget]
    bake_sec: int
    min_requests_per_step: int
    step_started_at: datetime | None = None
    step_requests: int = 0
    baseline_p95_ms: float | None = None
    """Stable's latest p95, the latency reference once stable serves nothing (100 %)."""
    failures: int = 0
    inconclusive: int = 0
    last_checked_minute: datetime | None = None
    analyses: list[Analysis] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    report_id: str | None = None
    forced: bool = False
    promoted_by_hand: bool = False
    """A human promoted: succeed as soon as the platform serves 100 %."""
    platform_hold: PlatformHold | None = None
    """Set while the deployment is paused because the platform explains its breach."""
    reason: str | None = None
    created_by: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None


class DeploymentHistory(WireModel):
    """A deployment's identity, phase and history, without its analyses: what other areas
    read of ``pack391_deployments`` (:mod:`functions.deploy_guard.api`)."""

    deployment_id: str
    version: str
    environment: str
    phase: Phase
    history: list[HistoryEntry] = Field(default_factory=list)
    updated_at: datetime | None = None


# ------------------------------------------------------------------- requests

Name = Annotated[DocId, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,62}$")]
"""A version or an environment (the environment is a document id)."""
Service = Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
Reason = Annotated[StrictStr, Field(min_length=1, max_length=DEPLOY_REASON_MAX_CHARS)]
DeploymentId = Annotated[DocId, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class ValidateRequest(RequestModel):
    version: Name
    environment: Name
    services: Annotated[list[Service], Field(min_length=1, max_length=50)] | None = None
    """The services the release moves (default: ``PACK391_DEPLOY_SERVICES``): the error
    budget gate refuses it while one of them, or the platform, is under a deploy freeze."""


class StartRequest(RequestModel):
    version: Name
    environment: Name
    strategy: Literal["canary"] = "canary"
    services: Annotated[list[Service], Field(min_length=1, max_length=50)] | None = None
    force: StrictBool = False
    reason: Reason | None = None
    bake_sec: Annotated[StrictInt, Field(ge=0, le=24 * 3600)] | None = None
    min_requests_per_step: Annotated[StrictInt, Field(ge=0, le=10_000_000)] | None = None


class StartResult(WireModel):
    deployment_id: str
    phase: Phase
    traffic_percent: int


class RollbackRequest(RequestModel):
    deployment_id: DeploymentId
    reason: Reason


class ControlRequest(RequestModel):
    deployment_id: DeploymentId
    action: ControlAction
    reason: Reason


class StatusRequest(RequestModel):
    deployment_id: DeploymentId | None = None
    """One deployment; without it, the most recent ones (``environment``, ``limit``)."""
    environment: Name | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=50)] = 10


class DeploymentStatus(WireModel):
    deployment_id: str
    version: str
    environment: str
    phase: Phase
    step: int
    steps_pct: list[int]
    traffic_percent: int
    applied_percent: int | None
    generation: int = 0
    confirmed_at: datetime | None = None
    services: list[ServiceTarget]
    failures: int
    inconclusive: int
    analyses: list[Analysis]
    history: list[HistoryEntry]
    platform_hold: PlatformHold | None = None
    created_at: datetime
    updated_at: datetime


class DeploymentList(WireModel):
    deployments: list[DeploymentStatus]


class RevisionMetricsRequest(RequestModel):
    """One revision's sample on the local push path (a deployed guard reads Cloud Monitoring)."""

    revision: Service
    requests: Annotated[StrictInt, Field(ge=0, le=100_000_000)]
    """Requests served since the previous report."""
    errors: Annotated[StrictInt, Field(ge=0, le=100_000_000)] = 0
    """Of those, failed (5xx)."""
    p95_latency_ms: Annotated[StrictFloat | StrictInt, Field(ge=0, le=LATENCY_MAX_MS)] | None = None

    @model_validator(mode="after")
    def _errors_within_requests(self) -> RevisionMetricsRequest:
        if self.errors > self.requests:
            raise InvalidInput("errors", "cannot exceed requests")
        return self


class RevisionMetricsResult(WireModel):
    revision: str
    minute: datetime


class PinTrafficRequest(RequestModel):
    environment: Name
    services: Annotated[list[Service], Field(min_length=1, max_length=50)] | None = None


class PinnedService(WireModel):
    service: str
    revision: str
    before: dict[str, int]


class PinTrafficResult(WireModel):
    pinned: list[PinnedService]
    snapshot_at: datetime | None = None
    """When the serving revisions were recorded as the next canary's stable side."""


class JudgeTickRequest(RequestModel):
    """One link of the fast judge's chain (``pack391JudgeDeployment``'s task body)."""

    deployment_id: DeploymentId
    at: datetime
    """The tick's scheduled time: the judged window ends here."""


class TrafficSnapshot(WireModel):
    """``pack391_deploy_snapshots/{environment}``: each service's serving revision before a
    deploy. ``startDeployment`` takes its stable revisions from here (and consumes it), so a
    deploy that moved all traffic to the new revision still has a stable side to go back
    to."""

    environment: str
    services: dict[str, str]
    """Service -> the revision serving most of its traffic when the snapshot was taken."""
    taken_at: datetime
    taken_by: str
