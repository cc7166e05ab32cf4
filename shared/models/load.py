"""Load testing: callable requests and the run document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from shared import thresholds as t
from shared.models import DocId, RequestModel, WireModel

ScenarioId = Literal[
    "swipe_load",
    "chat_monetization",
    "payout_surge",
    "live_calls",
    "event_purchase_spike",
    "ai_companion_messages",
]
RunId = Annotated[DocId, Field(pattern=r"^[a-z0-9-]{6,64}$")]
PositiveMs = Annotated[StrictFloat | StrictInt, Field(gt=0, le=600_000)]
Pct = Annotated[StrictFloat | StrictInt, Field(ge=0, le=100)]
EPOCH_MAX_SEC = 4_102_444_800
"""2100-01-01T00:00:00Z in epoch seconds: a sanity bound for request timestamps."""


class ThresholdOverrides(RequestModel):
    avg_ms: PositiveMs | None = None
    p95_ms: PositiveMs | None = None
    p99_ms: PositiveMs | None = None
    error_rate_pct: Pct | None = None
    dropped_pct: Pct | None = None

    def changes(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.model_dump(exclude_none=True).items()}


class Overrides(RequestModel):
    """Any of the scenario's values, for this run only."""

    rps: Annotated[StrictFloat | StrictInt, Field(gt=0, le=t.LOAD_TEST_GLOBAL_RPS_CAP)] | None = (
        None
    )
    duration_sec: Annotated[StrictInt, Field(ge=1, le=t.LOAD_TEST_MAX_DURATION_SEC)] | None = None
    target: Annotated[StrictStr, Field(min_length=8, max_length=500)] | None = None
    """Base URL the scenario's endpoint paths are appended to (must be allowlisted)."""
    shards: Annotated[StrictInt, Field(ge=1, le=t.LOAD_TEST_MAX_SHARDS)] | None = None
    timeout_sec: Annotated[StrictFloat | StrictInt, Field(gt=0, le=120)] | None = None
    max_in_flight: Annotated[StrictInt, Field(ge=1, le=50_000)] | None = None
    abort_on_fail: StrictBool | None = None
    thresholds: ThresholdOverrides | None = None


IsoMinute = Annotated[StrictStr, Field(min_length=10, max_length=40)]
"""An ISO 8601 instant with its zone (``2026-12-05T18:00Z``), parsed and checked (a whole
minute, in the past) by :mod:`functions.load.recorded`."""
EndpointName = Annotated[StrictStr, Field(min_length=1, max_length=100)]


class FromMetrics(RequestModel):
    """A production-shaped run: the recorded per-minute rates and mixes of the window
    ``[start, end)`` (``pack391_sli_minutes``), multiplied by ``scale``."""

    start: IsoMinute
    end: IsoMinute
    scale: Annotated[
        StrictFloat | StrictInt, Field(gt=0, le=t.LOAD_TEST_FROM_METRICS_MAX_SCALE)
    ] = 1.0
    minute_sec: Annotated[StrictInt, Field(ge=1, le=t.LOAD_TEST_FROM_METRICS_MINUTE_SEC)] = (
        t.LOAD_TEST_FROM_METRICS_MINUTE_SEC
    )
    """Seconds each recorded minute plays for: 60 is real time, less compresses time
    (each minute keeps its rate): for rehearsals and tests, and for windows over 25
    minutes."""
    map: Annotated[dict[EndpointName, EndpointName], Field(max_length=200)] | None = None
    """Recorded name -> load endpoint, for names that are not load endpoints."""


class RunLoadTestRequest(RequestModel):
    """One of ``scenarioId`` (a spec scenario) and ``fromMetrics`` (a recorded window)."""

    scenario_id: ScenarioId | None = None
    from_metrics: FromMetrics | None = None
    overrides: Overrides | None = None


class RunLoadTestResult(WireModel):
    run_id: str
    shards: int
    start_at: datetime
    from_metrics: dict[str, Any] | None = None
    """A ``fromMetrics`` run: what was built from the window (minutes, missing minutes,
    names not replayed, recorded and planned requests per endpoint)."""


class ExecuteShardRequest(RequestModel):
    """One task: one shard of a run."""

    run_id: RunId
    shard: Annotated[StrictInt, Field(ge=0, lt=t.LOAD_TEST_MAX_SHARDS)]
    start_at: Annotated[StrictFloat | StrictInt, Field(gt=0, le=EPOCH_MAX_SEC)]
    """Epoch seconds every shard of the run starts at."""


class ExecuteShardResult(WireModel):
    run_id: str
    shard: int
    status: str
    sent: int
    dropped: int


class GetLoadTestResultsRequest(RequestModel):
    run_id: RunId


class AbortLoadTestRequest(RequestModel):
    run_id: RunId
    reason: Annotated[StrictStr, Field(min_length=1, max_length=500)]


class AbortLoadTestResult(WireModel):
    run_id: str
    status: str


class CleanupLoadTestsRequest(RequestModel):
    run_id: RunId | None = None
    older_than_days: Annotated[StrictInt, Field(ge=0, le=3650)] | None = None


class CleanupLoadTestsResult(WireModel):
    runs: int
    run_documents: int
    synthetic_documents: int
    synthetic_redis_keys: int


class LoadRunDoc(WireModel):
    """``pack391_load_runs/{runId}``."""

    run_id: str
    scenario_id: str
    plan: dict[str, Any]
    status: str
    """``queued``, ``running``, ``aborting``, ``completed``, ``aborted``."""
    peak_rps: float
    shards: int
    shards_done: int = 0
    requested_by: str
    created_at: datetime
    start_at: datetime
    ended_at: datetime | None = None
    abort_reason: str | None = None
    summary: dict[str, Any] | None = None
    expire_at: datetime


class LoadTestResults(WireModel):
    run_id: str
    status: str
    progress: dict[str, Any]
    summary: dict[str, Any]
    timeline: list[dict[str, Any]]
    heatmap: dict[str, Any]
    crash_map: list[dict[str, Any]]
    failover_log: list[dict[str, Any]]
