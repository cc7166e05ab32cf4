"""Ops dashboard (pack391-ops): the ``pack391_*`` edges.

Each edge parses, authorizes (the role is in its decorator) and calls the service.
"""

from __future__ import annotations

import logging

from functions.ops.wiring import console_service, ops_service
from shared.auth import Role
from shared.config import STALE_MAX_SEC
from shared.edge import CallContext, ScheduledContext, callable_function, scheduled_function
from shared.models.ops import (
    AcknowledgeAlertRequest,
    AcknowledgeAlertResult,
    GetHistoricalMetricsRequest,
    GetLiveMetricsRequest,
    GetOpsDashboardRequest,
    GetOpsLiveRequest,
    GetOpsTimelineRequest,
    HistoricalMetricsView,
    LiveMetricsView,
    OpsDashboardView,
    OpsLiveView,
    OpsTimelineView,
)
from shared.options import webhook_secrets

log = logging.getLogger("pack391.ops")

UPDATE_SCHEDULE = "* * * * *"
"""``pack391_updateLiveMetrics`` runs every minute."""

CLEANUP_SCHEDULE = "30 3 * * *"
"""``pack391_cleanupMetrics`` runs daily at 03:30 UTC."""


@scheduled_function(
    schedule=UPDATE_SCHEDULE,
    # Retried once, 10 s later: the snapshot and the minute's point are overwritten, alert
    # rules ignore a minute already evaluated, notifications are claimed before sending;
    # a lost minute is a gap in the history and a minute's delay for alerts.
    retry_count=1,
    min_backoff_seconds=10,
    max_backoff_seconds=10,
    max_doublings=0,
    # the one function that sends alerts: the webhook URL (a secret) when sending is on
    secrets=webhook_secrets(),
)
def pack391_updateLiveMetrics(ctx: ScheduledContext) -> None:
    """Compute the live metrics; store the snapshot and the minute's history point; run the
    alert rules; deliver every area's pending alert notifications."""
    report = ops_service().update(ctx.now, ctx.request_id)
    log.info("live metrics %s: %s", ctx.request_id, report)


@callable_function(role=Role.OPS, request=GetLiveMetricsRequest)
def pack391_getLiveMetrics(ctx: CallContext, req: GetLiveMetricsRequest) -> LiveMetricsView:
    """The current snapshot, with its age."""
    return ops_service().live(ctx.now)


@callable_function(role=Role.OPS, request=GetHistoricalMetricsRequest)
def pack391_getHistoricalMetrics(
    ctx: CallContext, req: GetHistoricalMetricsRequest
) -> HistoricalMetricsView:
    """``{range: 1h|24h|7d, fields?}``: min/avg/max per 1-min, 5-min or 1-hour bucket;
    while Firestore stalls, the instance's last-known answer marked ``stale`` (at most
    ``PACK391_STALE_MAX_SEC`` old), as the dashboard's."""
    return ops_service().history(req.range, req.fields, ctx.now, STALE_MAX_SEC.value)


@callable_function(role=Role.OPS, request=GetOpsDashboardRequest)
def pack391_getOpsDashboard(ctx: CallContext, req: GetOpsDashboardRequest) -> OpsDashboardView:
    """The whole dashboard in one call; while Firestore stalls, the instance's last-known
    copy of its Firestore part, marked ``stale`` (at most ``PACK391_STALE_MAX_SEC`` old)."""
    return ops_service().dashboard(ctx.now, STALE_MAX_SEC.value)


@callable_function(role=Role.OPS, request=GetOpsLiveRequest)
def pack391_getOpsLive(ctx: CallContext, req: GetOpsLiveRequest) -> OpsLiveView:
    """``{etag?}``: the live console (open alerts, DDoS mode, blocks and allowlist,
    deployments, services, the last audited actions) with its ``etag``; the page's
    ``etag`` still current: ``notModified`` and nothing else. Polled every few seconds:
    counted in the caller's staff bucket, like every ops call. While Firestore stalls,
    the instance's last-known copy of its Firestore part, marked ``stale``."""
    return console_service().live(req.etag, ctx.now, STALE_MAX_SEC.value)


@callable_function(role=Role.OPS, request=GetOpsTimelineRequest)
def pack391_getOpsTimeline(ctx: CallContext, req: GetOpsTimelineRequest) -> OpsTimelineView:
    """``{minutes?}`` (5..180, default 60): alerts, mitigations, deployments, scale events
    and people's audited actions of the last ``minutes`` on one axis, sorted by time."""
    return console_service().timeline(req.minutes, ctx.now, STALE_MAX_SEC.value)


@callable_function(role=Role.OPS, request=AcknowledgeAlertRequest)
def pack391_acknowledgeAlert(
    ctx: CallContext, req: AcknowledgeAlertRequest
) -> AcknowledgeAlertResult:
    """Acknowledge an open alert of any area (an ops action, audited). A deploy rollback
    alert resolves on acknowledgement; the others stay listed until their condition clears."""
    change = ctx.change("ops.alert.acknowledge", req.note)
    return ops_service().acknowledge(req.alert_id, change)


@scheduled_function(
    schedule=CLEANUP_SCHEDULE,
    # Retried: deleting points past their age is idempotent and otherwise waits a day
    # (the TTL policy deletes them too); 5, 10, 20 min.
    retry_count=3,
    min_backoff_seconds=300,
    max_backoff_seconds=1800,
    max_doublings=2,
)
def pack391_cleanupMetrics(ctx: ScheduledContext) -> None:
    """Remove history points older than 30 days (a Firestore TTL policy on ``expireAt``
    does the same in production)."""
    deleted = ops_service().cleanup(ctx.now)
    log.info("metrics cleanup %s: %d points removed", ctx.request_id, deleted)
