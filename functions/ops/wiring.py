"""What the ops edges are wired to: the implementations (local or Google Cloud, chosen
by params), built once per client and setting (:func:`shared.wiring.wired`)."""

from __future__ import annotations

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
from shared.clock import from_ms
from shared.config import OPS_ALERT_FOR_MINUTES, OPS_WEBHOOK_URL
from shared.firestore import get_db
from shared.redis import get_redis
from shared.wiring import wired


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
