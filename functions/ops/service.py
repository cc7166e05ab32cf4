"""Ops dashboard orchestration: reads through the ports (:mod:`functions.ops.ports`),
decides with the policy, writes through the ports."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from functions.ops.policy import (
    AlertAction,
    AlertRule,
    downsample,
    evaluate_rule,
    flatten,
    rule_alert,
    rule_value,
    scaling_service_status,
    system_health,
)
from functions.ops.ports import (
    Alerts,
    DDoSModeReader,
    DeliverAlerts,
    MetricsSource,
    OpsRecords,
    Panels,
    RedisUp,
)
from shared import collections, thresholds
from shared.audit import Change
from shared.clock import minute_of
from shared.errors import NotFound
from shared.models.market import MarketDoc
from shared.models.ops import (
    AcknowledgeAlertResult,
    AlertView,
    DDoSPanel,
    HistoricalMetricsView,
    HistoryPointDoc,
    LiveMetrics,
    LiveMetricsView,
    LiveSnapshotDoc,
    OpsDashboardView,
    Panel,
    ServiceHealth,
    ServiceStatus,
    ServiceView,
)
from shared.models.scaling import ServiceDoc
from shared.stale import LastKnown

log = logging.getLogger("pack391.ops")


@dataclass
class UpdateReport:
    at: datetime
    actions: dict[str, str] = field(default_factory=dict)
    notifications_sent: int = 0


class OpsService:
    def __init__(
        self,
        source: MetricsSource,
        repo: OpsRecords,
        alerts: Alerts,
        deliver: DeliverAlerts,
        panels: Panels,
        redis_up: RedisUp,
        ddos_mode: DDoSModeReader,
        rules: list[AlertRule],
    ) -> None:
        self._source, self._repo, self._alerts, self._deliver = source, repo, alerts, deliver
        self._panels, self._redis_up, self._ddos_mode, self._rules = (
            panels,
            redis_up,
            ddos_mode,
            rules,
        )
        self._dashboard_copy: LastKnown[str, DashboardReads] = LastKnown("ops dashboard")
        self._history_copy: LastKnown[HistoryKey, HistoricalMetricsView] = LastKnown(
            "metrics history"
        )

    # ------------------------------------------------------------- live metrics

    def services_health(self) -> list[ServiceHealth]:
        """The bundle's backends and every service of the scaling registry."""
        services = [
            ServiceHealth(name="firestore", status=ServiceStatus.UP),
            ServiceHealth(
                name="redis", status=ServiceStatus.UP if self._redis_up() else ServiceStatus.DOWN
            ),
        ]
        for doc in self._repo.scaling_services():
            services.append(
                ServiceHealth(
                    name=doc.config.service_id, status=scaling_service_status(doc.state.isolation)
                )
            )
        return services

    def compute(self, now: datetime) -> LiveMetrics:
        counts = self._source.counts(now)
        return LiveMetrics(**dict(counts), system_health=system_health(self.services_health()))

    def update(self, now: datetime, run_id: str) -> UpdateReport:
        """Compute, store the snapshot and the minute's history point, run the alert
        rules, deliver pending notifications.

        Under a Firestore stall (:mod:`shared.deadline`) the run stops at the first read
        that does not answer within its budget (``DependencyUnavailable``: recorded as
        skipped): every value is read before anything is written, so a value it could not
        read is never stored (as a 0 or otherwise) and no alert rule runs on it; the
        dashboard keeps the last snapshot, with its age. A stall after the snapshot leaves
        it and the minute's point written (whole), that minute's rules and deliveries
        not run: the next minute's run evaluates its own values and delivers what is
        pending (notifications are claimed before sending)."""
        metrics = self.compute(now)
        minute = minute_of(now)
        point = HistoryPointDoc(
            at=minute,
            values=flatten(metrics),
            expire_at=minute + timedelta(days=thresholds.METRICS_HISTORY_RETENTION_DAYS),
        )
        self._repo.write_snapshot(
            LiveSnapshotDoc(at=now, metrics=metrics, run_id=run_id),
            point,
            minute.strftime("%Y%m%dT%H%MZ"),
        )
        report = UpdateReport(at=now)
        for rule in self._rules:
            report.actions[rule.name.value] = self._apply(rule, rule_value(rule.name, metrics), now)
        report.notifications_sent = self.deliver(now)
        return report

    def _apply(self, rule: AlertRule, value: float, now: datetime) -> str:
        outcome = self._repo.apply_rule(
            rule.name.value,
            lambda state: evaluate_rule(rule, value, state, now),
            lambda decided: rule_alert(rule, value, decided),
            now,
        )
        if outcome.action in (AlertAction.OPEN, AlertAction.RESOLVE):
            log.info("ops alert %s: %s (%s)", rule.name.value, outcome.action, outcome.alert_id)
        return outcome.action.value

    # ---------------------------------------------------------------- alerts

    def deliver(self, now: datetime) -> int:
        """Send every area's undelivered alert notifications (opened and resolved)."""
        return self._deliver(now)

    def acknowledge(self, alert_id: str, change: Change) -> AcknowledgeAlertResult:
        """Acknowledge an open alert of any area (audited); acknowledging one that is
        already acknowledged or resolved changes nothing."""
        doc, changed = self._alerts.acknowledge(alert_id, change)
        if doc is None:
            raise NotFound(f"no alert {alert_id}", field="alertId")
        return AcknowledgeAlertResult(
            id=alert_id,
            status=doc.status,
            acknowledged_at=doc.acknowledged_at,
            acknowledged_by=doc.acknowledged_by,
            changed=changed,
        )

    def open_alerts(self) -> list[AlertView]:
        """Open and acknowledged alerts of every area, newest first (an acknowledged alert
        stays listed, with its status, until it resolves)."""
        return alert_views(self._alerts)

    # ------------------------------------------------------------------ reads

    def live(self, now: datetime) -> LiveMetricsView:
        return live_view(self._repo.read_snapshot(), now)

    def history(
        self, range_name: str, fields: list[str] | None, now: datetime, stale_max_sec: float = 0.0
    ) -> HistoricalMetricsView:
        """The charts of the dashboard. Safe to answer stale (at most ``stale_max_sec`` old,
        marked so) when Firestore stalls, as the dashboard is: the page loads both or
        neither (:mod:`shared.stale`; docs/reliability.md)."""
        key = (range_name, None if fields is None else tuple(fields))
        answer = self._history_copy.read(
            key, lambda: self._read_history(range_name, fields, now), stale_max_sec
        )
        return answer.value.model_copy(update=answer.marks())

    def _read_history(
        self, range_name: str, fields: list[str] | None, now: datetime
    ) -> HistoricalMetricsView:
        bucket = thresholds.HISTORY_BUCKET_SEC[range_name]
        span = thresholds.HISTORY_RANGE_SEC[range_name]
        until = minute_of(now)
        # Buckets aligned on whole bucket widths so that repeated calls agree.
        since_raw = until - timedelta(seconds=span)
        epoch = int(since_raw.timestamp())
        since = since_raw - timedelta(seconds=epoch % bucket)
        points = self._repo.history(since, until, fields)
        return HistoricalMetricsView(
            range=range_name,
            bucket_sec=bucket,
            since=since,
            until=until,
            series=downsample(points, since, bucket, fields),
        )

    def cleanup(self, now: datetime) -> int:
        cutoff = now - timedelta(days=thresholds.METRICS_HISTORY_RETENTION_DAYS)
        return self._repo.delete_history_before(cutoff)

    def dashboard(self, now: datetime, stale_max_sec: float = 0.0) -> OpsDashboardView:
        """The whole dashboard. Its Firestore part is safe to answer stale (at most
        ``stale_max_sec`` old, marked so) when Firestore stalls: a read for people, which
        no decision reads (:mod:`shared.stale`; docs/reliability.md). DDoS mode (Redis)
        is read now."""
        active, until, reason = self._ddos_mode()
        answer = self._dashboard_copy.read(
            DASHBOARD_KEY, lambda: self._dashboard_reads(now), stale_max_sec
        )
        reads = answer.value
        return OpsDashboardView(
            generated_at=now,
            live=live_view(reads.snapshot, now),
            open_alerts=reads.open_alerts,
            services=reads.services,
            deployments=reads.deployments,
            ddos=DDoSPanel(
                mode_active=active,
                mode_until=until,
                mode_reason=reason,
                recent_detections=reads.recent_detections,
            ),
            load_tests=reads.load_tests,
            backups=reads.backups,
            markets=reads.markets,
            **answer.marks(),
        )

    def _dashboard_reads(self, now: datetime) -> DashboardReads:
        return DashboardReads(
            snapshot=self._repo.read_snapshot(),
            open_alerts=self.open_alerts(),
            services=service_views(self._repo),
            deployments=self._panels.deployments.read(now),
            recent_detections=[
                d.model_dump(mode="json", by_alias=True) for d in self._repo.recent_detections()
            ],
            load_tests=self._panels.load_tests.read(now),
            backups=self._panels.backups.read(now),
            markets=[market_row(m) for m in self._repo.markets()],
        )


HistoryKey = tuple[str, tuple[str, ...] | None]
"""A history read's key in its last-known copy: the range and the fields asked for."""

DASHBOARD_KEY = "dashboard"
"""The one key of the dashboard's last-known copy (its reads take no argument)."""


@dataclass(frozen=True)
class DashboardReads:
    """What the dashboard reads of Firestore: the part kept as its last-known copy."""

    snapshot: LiveSnapshotDoc | None
    open_alerts: list[AlertView]
    services: list[ServiceView]
    deployments: Panel
    recent_detections: list[dict[str, Any]]
    load_tests: Panel
    backups: Panel
    markets: list[dict[str, Any]]


def live_view(snap: LiveSnapshotDoc | None, now: datetime) -> LiveMetricsView:
    """The live snapshot as shown at ``now``, with its age."""
    if snap is None:
        return LiveMetricsView(at=None, age_sec=None, metrics=None)
    return LiveMetricsView(
        at=snap.at, age_sec=round((now - snap.at).total_seconds(), 3), metrics=snap.metrics
    )


def alert_views(alerts: Alerts) -> list[AlertView]:
    """Open and acknowledged alerts of every area as the dashboard lists them, newest
    first (an acknowledged alert stays listed, with its status, until it resolves)."""
    return [
        AlertView(
            id=alert_id,
            collection=collections.ALERTS,
            source=doc.source.value,
            kind=doc.kind,
            severity=doc.severity.value,
            title=doc.title,
            status=doc.status.value,
            opened_at=doc.opened_at,
            last_seen_at=doc.last_seen_at,
            occurrences=doc.occurrences,
            acknowledged_by=doc.acknowledged_by,
            value=doc.value,
            threshold=doc.threshold,
            notification=doc.notify_open.state.value if doc.notify_open else None,
        )
        for alert_id, doc in alerts.open_alerts(thresholds.DASHBOARD_RECENT_ITEMS)
    ]


def service_views(repo: OpsRecords) -> list[ServiceView]:
    """Every service of the scaling registry as the dashboard lists it."""
    return [service_view(doc) for doc in repo.scaling_services()]


def service_view(doc: ServiceDoc) -> ServiceView:
    """A registry entry as the dashboard lists it."""
    decision = doc.state.last_decision
    return ServiceView(
        name=doc.config.service_id,
        status=scaling_service_status(doc.state.isolation),
        instances=doc.state.current_instances,
        isolation=doc.state.isolation.value,
        last_action=decision.action.value if decision else None,
        last_decision_at=decision.at if decision else None,
    )


def market_row(m: MarketDoc) -> dict[str, Any]:
    """A market as the dashboard lists it."""
    return {
        "country": m.country,
        "launchStatus": m.launch_status.value if m.launch_status else "not_started",
        "emergencyPaused": m.emergency_paused,
        "trafficLimit": m.traffic_limit,
        "version": m.version,
    }
