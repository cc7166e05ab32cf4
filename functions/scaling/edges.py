"""Auto-scaling engine: the ``pack391_*`` edges.

Each edge parses, authorizes (the role is in its decorator) and calls the service that
:mod:`functions.scaling.wiring` builds (its ports chosen by ``PACK391_SCALING_BACKEND``:
Cloud Monitoring + Cloud Run when deployed, pushed metrics + the local scaler under the
local stack).
"""

from __future__ import annotations

import logging

from functions.scaling import budget
from functions.scaling.service import guard_minute
from functions.scaling.wiring import scaling_service
from shared.auth import Role
from shared.config import (
    FUNCTIONS_REGION,
    SCALING_HEALTH_URL_TEMPLATE,
    STALE_MAX_SEC,
    project_id,
)
from shared.edge import CallContext, ScheduledContext, callable_function, scheduled_function
from shared.models.scaling import (
    HealthReport,
    InitScalingRequest,
    InitScalingResult,
    ManualScaleRequest,
    ManualScaleResult,
    ReportMetricsRequest,
    ReportMetricsResult,
    ServiceHealthRequest,
)

log = logging.getLogger("pack391.scaling")

GUARD_SCHEDULE = "* * * * *"
"""``pack391_scaleGuard`` runs every minute."""


@callable_function(role=Role.ADMIN, request=InitScalingRequest)
def pack391_initScaling(ctx: CallContext, req: InitScalingRequest) -> InitScalingResult:
    """Create the service registry (idempotent; live state is never reset). Audited."""
    change = ctx.change("scaling.init", "initScaling")
    return scaling_service().init(
        req, FUNCTIONS_REGION.value, SCALING_HEALTH_URL_TEMPLATE.value, project_id(), change
    )


@callable_function(role=Role.OPS, request=ServiceHealthRequest)
def pack391_serviceHealthCheck(ctx: CallContext, req: ServiceHealthRequest) -> HealthReport:
    """Real-time health of one service or all: probe, metrics, status, last decision. While
    Firestore stalls the registry's part is the instance's last-known copy, marked
    ``stale`` (at most ``PACK391_STALE_MAX_SEC`` old)."""
    return scaling_service().health(req.service_id, ctx.now, STALE_MAX_SEC.value)


@callable_function(
    role=Role.ADMIN,
    request=ManualScaleRequest,
    # waits on Cloud Run: lock wait + 3 Firestore steps + one update = 95 s worst case
    # (functions/scaling/budget.py), under the 60 s default
    timeout_sec=budget.MANUAL_SCALE_TIMEOUT_SEC,
)
def pack391_manualScale(ctx: CallContext, req: ManualScaleRequest) -> ManualScaleResult:
    """Scale a service by hand (bounded unless forced), audited, pinned against scale-down.

    Worst case 95 s (every wait at its deadline: 5 s for the service's lock, 3 Firestore
    steps of 10 s, the Cloud Run update's 60 s), under its 120 s timeout:
    :mod:`functions.scaling.budget`."""
    change = ctx.change(f"scaling.manual.{req.action.value}", req.reason)
    return scaling_service().manual_scale(req, change)


@callable_function(role=Role.OPS, request=ReportMetricsRequest)
def pack391_reportServiceMetrics(
    ctx: CallContext, req: ReportMetricsRequest
) -> ReportMetricsResult:
    """The push path: a service (or its sidecar, signed in with the ``ops`` claim) reports
    one sample; kept per minute in Redis for the scale guard."""
    return scaling_service().report(req, ctx.now)


@scheduled_function(
    schedule=GUARD_SCHEDULE,
    # Not retried: a run that scaled a service and then failed before recording it would,
    # retried for the same minute, decide again from the new instance count and take a
    # second step in one minute (the per-step rate limit assumes one decision a minute).
    # Per-service errors are caught inside the run anyway; the next minute's run decides
    # from fresh metrics.
    retry_count=0,
    # the services in parallel, each waiting on Cloud Run: 150 s worst case
    # (functions/scaling/budget.py), under the 60 s default
    timeout_sec=budget.GUARD_TIMEOUT_SEC,
)
def pack391_scaleGuard(ctx: ScheduledContext) -> None:
    """Every minute: read each service's metrics, decide, act, record.

    The 7 services are worked on in parallel (one wave of at most 8), each: 3 Firestore
    steps (10 s each), a Cloud Run read (10 s), 4 Cloud Monitoring queries (10 s each)
    and one Cloud Run update (60 s) = 140 s; plus the registry read (10 s) = 150 s worst
    case, under the 210 s timeout; the run stops waiting for its services at 170 s
    (:func:`functions.scaling.budget.guard_wait_sec`). One after the other the same
    waits could take 980 s. See :mod:`functions.scaling.budget`."""
    report = scaling_service().guard(guard_minute(ctx.schedule_time), ctx.request_id)
    summary = {d.service_id: (d.action.value, d.desired_instances) for d in report.decisions}
    log.info("scale guard %s (locked=%s): %s", ctx.request_id, report.locked, summary)
