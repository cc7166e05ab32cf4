"""What the ops edges are wired to: the implementations (local or Google Cloud, chosen
by params), built once per client and setting (:func:`shared.wiring.wired`)."""

from __future__ import annotations

from google.cloud import firestore

from functions.ops.console import ConsoleService
from functions.ops.console_store import ConsoleRepository
from functions.ops.metrics_source import AggregateMetricsSource
from functions.ops.panels import RecentDocsPanel
from functions.ops.policy import alert_rules
from functions.ops.ports import Panels
from functions.ops.redis_store import ddos_mode, redis_up
from functions.ops.service import OpsService
from functions.ops.store import OpsRepository
from shared import collections
from shared.alerts.notifier import WebhookNotifier, deliver
from shared.alerts.store import AlertStore, webhook_configured
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
            ["version", "environment", "phase", "trafficPercent", "createdAt", "updatedAt"],
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
    alerts = AlertStore(db, notify=lambda: bool(webhook) or webhook_configured())
    notifier = WebhookNotifier(webhook)
    return OpsService(
        AggregateMetricsSource(db),
        OpsRepository(db, alerts),
        alerts,
        lambda now: deliver(alerts, notifier, now),
        panels(db),
        lambda: redis_up(client),
        lambda: ddos_mode(client),
        alert_rules(for_minutes),
    )


def ops_service() -> OpsService:
    """The service wired to the configured Firestore, Redis and webhook."""
    return _service_for(OPS_WEBHOOK_URL.value, OPS_ALERT_FOR_MINUTES.value)


@wired()
def _console_for() -> ConsoleService:
    db, client = get_db(), get_redis()
    return ConsoleService(
        AlertStore(db),
        OpsRepository(db),
        ConsoleRepository(db),
        panels(db).deployments,
        lambda: ddos_mode(client),
    )


def console_service() -> ConsoleService:
    """The live console and timeline, wired to the configured Firestore and Redis."""
    return _console_for()
