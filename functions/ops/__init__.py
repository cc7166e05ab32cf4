"""Ops dashboard (pack391-ops): the ``pack391_*`` edges.

Each edge parses, authorizes (the role is in its decorator) and calls the service.
"""

from __future__ import annotations

import logging
from datetime import datetime

import redis
from google.cloud import firestore

from functions.ops.metrics_source import AggregateMetricsSource
from functions.ops.panels import RecentDocsPanel
from functions.ops.policy import alert_rules
from functions.ops.repository import OpsRepository, redis_up
from functions.ops.service import OpsService, Panels
from shared import collections, protection
from shared.alerts.notifier import WebhookNotifier
from shared.alerts.store import AlertStore, webhook_configured
from shared.audit import Change
from shared.auth import Role
from shared.clock import from_ms
from shared.config import OPS_ALERT_FOR_MINUTES, OPS_WEBHOOK_URL
from shared.edge import CallContext, ScheduledContext, callable_function, scheduled_function
from shared.firestore import get_db
from shared.models.ops import (
    AcknowledgeAlertRequest,
    AcknowledgeAlertResult,
    GetHistoricalMetricsRequest,
    GetLiveMetricsRequest,
    GetOpsDashboardRequest,
    HistoricalMetricsView,
    LiveMetricsView,
    OpsDashboardView,
)
from shared.options import webhook_secrets
from shared.redis import get_redis
from shared.wiring import wired

log = logging.getLogger("pack391.ops")

UPDATE_SCHEDULE = "* * * * *"
"""``pack391_updateLiveMetrics`` runs every minute."""

CLEANUP_SCHEDULE = "30 3 * * *"
"""``pack391_cleanupMetrics`` runs daily at 03:30 UTC."""


def panels(db: firestore.Client) -> Panels:
    """The areas the dashboard shows beside its own metrics: recent deployments, load
    tests and backups (newest first, a few fields each)."""
    return Panels(
        deployments=RecentDocsPanel(
            db,
            collections.DEPLOYMENTS,
            "createdAt",
            ["version", "environment", "phase", "trafficPercent", "createdAt"],
        ),
        load_tests=RecentDocsPanel(
            db, collections.LOAD_RUNS, "createdAt", ["scenarioId", "status", "createdAt"]
        ),
        backups=RecentDocsPanel(
            db,
            collections.BACKUPS,
            "startedAt",
            ["backend", "status", "documentCount", "sizeBytes", "startedAt"],
        ),
    )


@wired()
def _service_for(webhook: str, for_minutes: int) -> OpsService:
    db, client = get_db(), get_redis()

    def ddos_mode() -> tuple[bool, datetime | None, str | None]:
        try:
            mode = protection.ddos_mode(client)
        except redis.RedisError:  # the dashboard still loads; Redis shows as down
            return False, None, "unknown: Redis is unavailable"
        if mode is None:
            return False, None, None
        return True, from_ms(mode.until_ms), mode.reason

    alerts = AlertStore(db, notify=lambda: bool(webhook) or webhook_configured())
    return OpsService(
        AggregateMetricsSource(db),
        OpsRepository(db, alerts),
        alerts,
        WebhookNotifier(webhook),
        panels(db),
        lambda: redis_up(client),
        ddos_mode,
        alert_rules(for_minutes),
    )


def ops_service() -> OpsService:
    """The service wired to the configured Firestore, Redis and webhook."""
    return _service_for(OPS_WEBHOOK_URL.value, OPS_ALERT_FOR_MINUTES.value)


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
    """``{range: 1h|24h|7d, fields?}``: min/avg/max per 1-min, 5-min or 1-hour bucket."""
    return ops_service().history(req.range, req.fields, ctx.now)


@callable_function(role=Role.OPS, request=GetOpsDashboardRequest)
def pack391_getOpsDashboard(ctx: CallContext, req: GetOpsDashboardRequest) -> OpsDashboardView:
    """The whole dashboard in one call."""
    return ops_service().dashboard(ctx.now)


@callable_function(role=Role.OPS, request=AcknowledgeAlertRequest)
def pack391_acknowledgeAlert(
    ctx: CallContext, req: AcknowledgeAlertRequest
) -> AcknowledgeAlertResult:
    """Acknowledge an open alert of any area (an ops action, audited). A deploy rollback
    alert resolves on acknowledgement; the others stay listed until their condition clears."""
    change = Change(ctx.caller.uid, "ops.alert.acknowledge", req.note, ctx.request_id, ctx.now)
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
