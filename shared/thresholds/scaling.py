"""The auto-scaling engine (``pack391-scaling``, :mod:`functions.scaling`): the HPA-style
recommendation, isolation, queue bursts and the Cloud Run and Monitoring deadlines.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = [
    "BURST_BACKLOG_PER_INSTANCE_COUNT",
    "BURST_DRAINED_BACKLOG_COUNT",
    "BURST_QUEUE_BACKLOG_COUNT",
    "CLOUD_RUN_MAX_PARALLEL_UPDATES",
    "CLOUD_RUN_READ_TIMEOUT_SEC",
    "FIRESTORE_STEP_BUDGET_SEC",
    "HEALTH_PROBE_TIMEOUT_SEC",
    "INSTANCES_HARD_MAX_COUNT",
    "ISOLATE_ERROR_RATE_PCT",
    "ISOLATION_FLAG_TTL_SEC",
    "ISOLATION_HALF_OPEN_ADMIT_PCT",
    "ISOLATION_MIN_REQUESTS_PER_MIN",
    "ISOLATION_OPEN_SEC",
    "ISOLATION_RECOVERY_SEC",
    "MANUAL_SCALE_HOLD_SEC",
    "MANUAL_SCALE_LOCK_WAIT_SEC",
    "MONITORING_READ_TIMEOUT_SEC",
    "PUSHED_METRICS_RETENTION_SEC",
    "RESIZE_HOOK_TIMEOUT_SEC",
    "SCALE_COOLDOWN_SEC",
    "SCALE_DOWN_STABILISATION_SEC",
    "SCALE_GUARD_INTERVAL_SEC",
    "SCALE_GUARD_LOCK_SEC",
    "SCALE_METRICS_MAX_AGE_SEC",
    "SCALE_OPERATION_TIMEOUT_SEC",
    "SCALE_TOLERANCE_RATIO",
    "SCALE_UP_CPU_PCT",
    "SCALE_UP_MAX_STEP_INSTANCES_COUNT",
    "SCALE_UP_MAX_STEP_PCT",
    "SCALE_UP_P95_LATENCY_MS",
    "SCALE_UP_POLICY_PERIOD_SEC",
    "SCALE_UP_REQUESTS_PER_INSTANCE_TARGET_RATIO",
    "SCALING_HISTORY_RETENTION_DAYS",
    "SCALING_REASON_MAX_CHARS",
    "SCALING_SERVICE_INSTANCES",
]

SCALE_UP_CPU_PCT: Final[float] = 65.0
"""CPU utilisation above which a service scales up (the HPA target)."""

SCALE_UP_P95_LATENCY_MS: Final[float] = 400.0
"""p95 request latency above which a service scales up."""

ISOLATE_ERROR_RATE_PCT: Final[float] = 1.5
"""Error rate above which a service is isolated."""

BURST_QUEUE_BACKLOG_COUNT: Final[int] = 5000
"""Queue backlog (jobs) above which worker services burst."""

SCALE_TOLERANCE_RATIO: Final[float] = 0.10
"""HPA tolerance band: no change while |value/target - 1| <= this."""

SCALE_DOWN_STABILISATION_SEC: Final[int] = 5 * 60
"""Scale-down uses the highest recommendation over this window."""

SCALE_COOLDOWN_SEC: Final[int] = 60
"""Minimum time between two actions on one service."""

SCALE_UP_MAX_STEP_PCT: Final[float] = 100.0
"""Scale-up limit per step, as a share of current instances (HPA default)."""

SCALE_UP_MAX_STEP_INSTANCES_COUNT: Final[int] = 4
"""Scale-up limit per step in instances; the larger of the two limits applies."""

SCALE_UP_POLICY_PERIOD_SEC: Final[int] = 15
"""The length of one scale-up step, as in Kubernetes' HPA (``periodSeconds: 15`` on its
default +100%/+4 policies). The guard runs once a minute, so one run may compound
four steps: 5 instances may become 80, which covers a 10x spike in one minute."""

SCALING_SERVICE_INSTANCES: Final[MappingProxyType[str, tuple[int, int, int]]] = MappingProxyType(
    {
        "api-gateway": (3, 2, 50),
        "matching-engine": (5, 3, 40),
        "chat-service": (4, 2, 40),
        "payment-processor": (2, 2, 20),
        "ai-companion": (10, 5, 100),
        "media-processing": (3, 1, 50),
        "notification-service": (2, 1, 30),
    }
)
"""The registry ``pack391_initScaling`` creates: service -> (initial, min, max) instances.
Initial counts are the spec's; the bounds are ours (min keeps the spec's floor for
payments, max leaves room for a 10x spike)."""

SCALE_UP_REQUESTS_PER_INSTANCE_TARGET_RATIO: Final[float] = 0.65
"""Share of a service's per-instance request capacity (``requestsPerInstancePerMin``
in its registry entry) targeted by the request-rate recommendation, like the CPU target."""

SCALE_METRICS_MAX_AGE_SEC: Final[int] = 5 * 60
"""A metrics sample whose minute started longer ago than this is stale: ``no_data``,
never acted on. Cloud Run metrics are sampled every 60 s and may take up to 180 s to
become visible in Cloud Monitoring, so a healthy newest point can be ~4 minutes old."""

SCALE_GUARD_INTERVAL_SEC: Final[int] = 60
"""``pack391_scaleGuard`` runs every minute (unix-cron ``* * * * *``); metrics are
aligned and pushed samples bucketed on the same minute."""

SCALE_GUARD_LOCK_SEC: Final[int] = 55
"""Lifetime of the Redis lock one scale-guard run holds (shorter than the interval)."""

MANUAL_SCALE_HOLD_SEC: Final[int] = 30 * 60
"""After a manual scale, automatic scale-down of the service is held off this long."""

MANUAL_SCALE_LOCK_WAIT_SEC: Final[float] = 5.0
"""A manual scale waits this long for a running scale guard to release its lock
(then answers ``UNAVAILABLE``)."""

INSTANCES_HARD_MAX_COUNT: Final[int] = 1000
"""No instance count (even a forced manual one) may exceed this (Cloud Run's ceiling)."""

ISOLATION_OPEN_SEC: Final[int] = 2 * 60
"""An isolated service fails every caller fast for this long, then turns half-open."""

ISOLATION_HALF_OPEN_ADMIT_PCT: Final[float] = 10.0
"""Share of calls a half-open service lets through, so its error rate can be measured."""

ISOLATION_RECOVERY_SEC: Final[int] = 3 * 60
"""A half-open service recovers once its error rate stayed at or under the threshold
for this long."""

ISOLATION_MIN_REQUESTS_PER_MIN: Final[int] = 20
"""The error-rate trigger needs at least this many requests in the minute (when the
request count is known): 1 failure out of 3 requests is noise, not an outage."""

ISOLATION_FLAG_TTL_SEC: Final[int] = 10 * 60
"""The Redis isolation flag expires unless the scale guard refreshes it (fail open)."""

BURST_BACKLOG_PER_INSTANCE_COUNT: Final[int] = 1000
"""Queue burst: one worker instance per this many jobs of backlog (bounded by max)."""

BURST_DRAINED_BACKLOG_COUNT: Final[int] = 100
"""A burst is over (its extra instances are given back) at or below this backlog."""

PUSHED_METRICS_RETENTION_SEC: Final[int] = 60 * 60
"""Per-minute pushed metric buckets are kept this long in Redis."""

HEALTH_PROBE_TIMEOUT_SEC: Final[float] = 2.0
"""Timeout of the HTTP probe of a service's health URL."""

SCALE_OPERATION_TIMEOUT_SEC: Final[float] = 60.0
"""Deadline of one Cloud Run scaling update, from sending the request to its long-running
operation being done: past it the update is answered as a ``TimeoutError`` (the platform
did not take it; the next guard run decides again from what Cloud Run holds). A
service-level manual instance count creates no revision, so the operation is usually done
in seconds. The scale guard and ``pack391_manualScale`` size their function timeouts
from it (:mod:`functions.scaling.budget`)."""

CLOUD_RUN_READ_TIMEOUT_SEC: Final[float] = 10.0
"""Deadline of one Cloud Run read (``get_service``: the instance count the platform holds)."""

MONITORING_READ_TIMEOUT_SEC: Final[float] = 10.0
"""Deadline of one Cloud Monitoring query (``list_time_series``) of the scaling engine."""

FIRESTORE_STEP_BUDGET_SEC: Final[float] = 10.0
"""Time allowed, in the function-timeout arithmetic, for one Firestore step of a scaling
run (a document read, or one transaction: its reads, commit and contention retries)."""

CLOUD_RUN_MAX_PARALLEL_UPDATES: Final[int] = 8
"""Most Cloud Run updates (and the per-service work around them) one function runs at
once: at least the spec's 7 scaled services, so a scale-guard run is one wave."""

RESIZE_HOOK_TIMEOUT_SEC: Final[float] = 2.0
"""Timeout of the local scaler's call to a service's resize hook."""

SCALING_HISTORY_RETENTION_DAYS: Final[int] = 30
"""Decision and alert documents carry ``expireAt`` this far ahead (a Firestore TTL policy
on that field deletes them)."""

SCALING_REASON_MAX_CHARS: Final[int] = 500
"""Longest ``reason`` of a manual scale."""
