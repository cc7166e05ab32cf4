"""Ops dashboard orchestration: reads through the adapters, decides with the policy,
writes through the adapters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from functions.ops.adapters import MetricsSource, Notifier, OpsRepository, PanelSource
from functions.ops.policy import (
    AlertAction,
    AlertRule,
    downsample,
    evaluate_rule,
    flatten,
    may_send,
    minute_of,
    notification_text,
    rule_value,
    scaling_service_status,
    system_health,
)
from shared import thresholds
from shared.audit import Change
from shared.clock import iso
from shared.errors import NotFound
from shared.models.alerts import AlertStatus, Notification, NotificationState, OpsAlertDoc
from shared.models.ops import (
    AcknowledgeAlertResult,
    DDoSPanel,
    HistoricalMetricsView,
    HistoryPointDoc,
    LiveMetrics,
    LiveMetricsView,
    LiveSnapshotDoc,
    OpsDashboardView,
    ServiceHealth,
    ServiceStatus,
    ServiceView,
)

log = logging.getLogger("pack391.ops")

DDoSModeReader = Callable[[], tuple[bool, datetime | None, str | None]]
"""(active, until, reason) of DDoS mode."""


@dataclass(frozen=True)
class Panels:
    """Panels fed by areas built on other branches (see :class:`PanelSource`)."""

    deployments: PanelSource
    load_tests: PanelSource
    backups: PanelSource


@dataclass
class UpdateReport:
    at: datetime
    actions: dict[str, str] = field(default_factory=dict)
    notifications_sent: int = 0


class OpsService:
    def __init__(
        self,
        source: MetricsSource,
        repo: OpsRepository,
        notifier: Notifier,
        panels: Panels,
        redis_up: Callable[[], bool],
        ddos_mode: DDoSModeReader,
        rules: list[AlertRule],
    ) -> None:
        self._source, self._repo, self._notifier = source, repo, notifier
        self._panels, self._redis_up, self._ddos_mode, self._rules = (
            panels,
            redis_up,
            ddos_mode,
            rules,
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
        rules, deliver pending notifications."""
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
        notify_state = (
            NotificationState.PENDING if self._notifier.enabled else NotificationState.DISABLED
        )

        def new_alert(alert_id: str) -> OpsAlertDoc:
            return OpsAlertDoc(
                source="ops",
                kind=rule.name.value,
                severity=rule.severity,
                title=rule.title,
                evidence={
                    "value": value,
                    "threshold": rule.threshold,
                    "forMinutes": rule.for_minutes,
                },
                status=AlertStatus.OPEN,
                opened_at=now,
                rule=rule.name.value,
                threshold=rule.threshold,
                value=value,
                notify_open=Notification(state=notify_state),
                updated_at=now,
            )

        outcome = self._repo.apply_rule(
            rule.name.value, lambda state: evaluate_rule(rule, value, state, now), new_alert, now
        )
        if outcome.action in (AlertAction.OPEN, AlertAction.RESOLVE):
            log.info("ops alert %s: %s (%s)", rule.name.value, outcome.action, outcome.alert_id)
        return outcome.action.value

    # ------------------------------------------------------------ notifications

    def deliver(self, now: datetime) -> int:
        """Send every undelivered notification once (claimed in a transaction first)."""
        if not self._notifier.enabled:
            return 0
        sent = 0
        for alert_id, alert in self._repo.pending_notifications():
            for doc_field, event in (("notifyOpen", "opened"), ("notifyResolve", "resolved")):
                claimed = self._repo.claim_notification(
                    alert_id,
                    doc_field,
                    lambda n: may_send(n.state, n.attempts, n.last_attempt_at, now),
                    now,
                )
                if claimed is None:
                    continue
                text = notification_text(alert.title, alert.value, alert.threshold, event)
                payload = {
                    "text": text,
                    "alert": {
                        "id": alert_id,
                        "event": event,
                        "rule": alert.rule,
                        "severity": alert.severity.value,
                        "value": alert.value,
                        "threshold": alert.threshold,
                        "openedAt": iso(alert.opened_at),
                    },
                }
                result = self._notifier.send(payload, f"{alert_id}:{event}")
                self._repo.set_notification(
                    alert_id,
                    doc_field,
                    Notification(
                        state=NotificationState.SENT if result.ok else NotificationState.FAILED,
                        attempts=claimed.attempts + result.attempts,
                        last_attempt_at=now,
                        sent_at=now if result.ok else None,
                        last_error=result.error,
                    ),
                )
                sent += int(result.ok)
        return sent

    def acknowledge(self, alert_id: str, change: Change) -> AcknowledgeAlertResult:
        doc, changed = self._repo.acknowledge(alert_id, change)
        if doc is None:
            raise NotFound(f"no open ops alert {alert_id}", field="alertId")
        return AcknowledgeAlertResult(
            id=alert_id,
            status=doc.status,
            acknowledged_at=doc.acknowledged_at,
            acknowledged_by=doc.acknowledged_by,
            changed=changed,
        )

    # ------------------------------------------------------------------ reads

    def live(self, now: datetime) -> LiveMetricsView:
        snap = self._repo.read_snapshot()
        if snap is None:
            return LiveMetricsView(at=None, age_sec=None, metrics=None)
        return LiveMetricsView(
            at=snap.at, age_sec=round((now - snap.at).total_seconds(), 3), metrics=snap.metrics
        )

    def history(
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

    def dashboard(self, now: datetime) -> OpsDashboardView:
        active, until, reason = self._ddos_mode()
        services = [
            ServiceView(
                name=doc.config.service_id,
                status=scaling_service_status(doc.state.isolation),
                instances=doc.state.current_instances,
                isolation=doc.state.isolation.value,
                last_action=doc.state.last_decision.action.value
                if doc.state.last_decision
                else None,
                last_decision_at=doc.state.last_decision.at if doc.state.last_decision else None,
            )
            for doc in self._repo.scaling_services()
        ]
        alerts = self._repo.open_alerts() + self._repo.open_scaling_alerts()
        alerts.sort(key=lambda a: a.opened_at, reverse=True)
        return OpsDashboardView(
            generated_at=now,
            live=self.live(now),
            open_alerts=alerts,
            services=services,
            deployments=self._panels.deployments.read(now),
            ddos=DDoSPanel(
                mode_active=active,
                mode_until=until,
                mode_reason=reason,
                recent_detections=[
                    d.model_dump(mode="json", by_alias=True) for d in self._repo.recent_detections()
                ],
            ),
            load_tests=self._panels.load_tests.read(now),
            backups=self._panels.backups.read(now),
            markets=[
                {
                    "country": m.country,
                    "launchStatus": m.launch_status.value if m.launch_status else "not_started",
                    "emergencyPaused": m.emergency_paused,
                    "trafficLimit": m.traffic_limit,
                    "version": m.version,
                }
                for m in self._repo.markets()
            ],
        )
