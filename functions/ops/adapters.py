"""Ops dashboard I/O behind small interfaces.

- :class:`AggregateMetricsSource`: the live metrics from Firestore aggregation queries
  (``count()``, ``sum()``, ``avg()``): a fixed number of RPCs whatever the data size;
- :class:`OpsRepository`: the snapshot, the history, the alert rules' state and the
  alerts (``pack391_alerts``), and what the other areas write (scaling registry and
  alerts, DDoS detections, markets);
- :class:`PanelSource`: a panel fed by an area built elsewhere (deployments, load
  tests, backups): :class:`UnavailablePanel` until that area is in the tree, then
  :class:`RecentDocsPanel` on its collection;
- :class:`Notifier`: the webhook (JSON POST, Slack-compatible ``text``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import redis
import requests
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from functions.ddos.adapters import ProtectionRepository
from functions.ops.policy import AlertAction, RuleOutcome, RuleState, start_of_day
from shared import collections, thresholds
from shared.audit import Change, write_audit
from shared.firestore import delete_matching
from shared.models.alerts import AlertStatus, Notification, NotificationState, OpsAlertDoc
from shared.models.ddos import DetectionDoc
from shared.models.market import MarketDoc
from shared.models.ops import (
    AlertRuleStateDoc,
    AlertView,
    FraudAlerts,
    HistoryPointDoc,
    LiveSnapshotDoc,
    Panel,
    PanicActivations,
    PayoutQueue,
    SourceMetrics,
    SupportQueue,
    TokenVelocity,
)
from shared.models.scaling import AlertDoc as ScalingAlertDoc
from shared.models.scaling import AlertKind, ServiceDoc

log = logging.getLogger("pack391.ops")

Query = Any
"""A google-cloud-firestore query or collection reference."""


def aggregate(query: Query, **spec: tuple[str, str | None]) -> dict[str, float | None]:
    """One aggregation RPC: ``alias=("count"|"sum"|"avg", field)`` -> alias -> value."""
    agg: Any = None
    for alias, (kind, field) in spec.items():
        target = query if agg is None else agg
        if kind == "count":
            agg = target.count(alias=alias)
        elif kind == "sum":
            agg = target.sum(field, alias=alias)
        else:
            agg = target.avg(field, alias=alias)
    results = agg.get()
    return {r.alias: (None if r.value is None else float(r.value)) for r in results[0]}


def _num(value: float | None) -> float:
    return 0.0 if value is None else value


class MetricsSource(Protocol):
    def counts(self, now: datetime) -> SourceMetrics: ...


class AggregateMetricsSource:
    """Every count and sum is a server-side aggregation (13 RPCs, run in parallel)."""

    def __init__(self, db: firestore.Client, workers: int = 8) -> None:
        self._db = db
        self._workers = workers

    def _col(self, name: str) -> Query:
        return self._db.collection(name)

    def queries(self, now: datetime) -> dict[str, Callable[[], dict[str, float | None]]]:
        """Name -> one aggregation RPC (the benchmark counts these)."""
        c = self._col
        active_since = now - timedelta(minutes=thresholds.ACTIVE_USER_WINDOW_MIN)
        paying_since = now - timedelta(days=thresholds.PAYING_USER_WINDOW_DAYS)
        tx_since = now - timedelta(minutes=thresholds.TOKEN_VELOCITY_WINDOW_MIN)
        resp_since = now - timedelta(hours=thresholds.SUPPORT_RESPONSE_WINDOW_HOURS)
        day = start_of_day(now)
        users, tx = c(collections.APP_USERS), c(collections.APP_WALLET_TRANSACTIONS)
        fraud, payouts = c(collections.APP_FRAUD_ALERTS), c(collections.APP_PAYOUTS)
        tickets, passes = c(collections.APP_SUPPORT_TICKETS), c(collections.PANIC_PASSES)

        def w(q: Query, field: str, op: str, value: Any) -> Query:
            return q.where(filter=FieldFilter(field, op, value))

        return {
            "active": lambda: aggregate(
                w(users, "lastActiveAt", ">=", active_since), n=("count", None)
            ),
            "paying": lambda: aggregate(
                w(users, "lastPurchaseAt", ">=", paying_since), n=("count", None)
            ),
            "earned": lambda: aggregate(
                w(w(tx, "type", "==", "earn"), "createdAt", ">=", tx_since),
                n=("count", None),
                s=("sum", "amount"),
            ),
            "spent": lambda: aggregate(
                w(w(tx, "type", "==", "spend"), "createdAt", ">=", tx_since),
                n=("count", None),
                s=("sum", "amount"),
            ),
            "fraud_active": lambda: aggregate(
                w(fraud, "status", "==", "active"), n=("count", None)
            ),
            "fraud_critical": lambda: aggregate(
                w(w(fraud, "status", "==", "active"), "severity", "==", "critical"),
                n=("count", None),
            ),
            "fraud_resolved": lambda: aggregate(
                w(w(fraud, "status", "==", "resolved"), "resolvedAt", ">=", day), n=("count", None)
            ),
            "payout_pending": lambda: aggregate(
                w(payouts, "status", "==", "pending"), n=("count", None), s=("sum", "amount")
            ),
            "payout_processing": lambda: aggregate(
                w(payouts, "status", "==", "processing"), n=("count", None), s=("sum", "amount")
            ),
            "payout_failed": lambda: aggregate(
                w(payouts, "status", "==", "failed"), n=("count", None)
            ),
            "support_open": lambda: aggregate(
                w(tickets, "status", "==", "open"), n=("count", None)
            ),
            "support_urgent": lambda: aggregate(
                w(w(tickets, "status", "==", "open"), "priority", "==", "urgent"), n=("count", None)
            ),
            "support_response": lambda: aggregate(
                w(tickets, "firstResponseAt", ">=", resp_since), a=("avg", "responseTimeSec")
            ),
            "panic_24h": lambda: aggregate(
                w(passes, "grantedAt", ">=", now - timedelta(hours=24)), n=("count", None)
            ),
            "panic_active": lambda: aggregate(w(passes, "expiresAt", ">", now), n=("count", None)),
        }

    def counts(self, now: datetime) -> SourceMetrics:
        jobs = self.queries(now)
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            futures = {name: pool.submit(job) for name, job in jobs.items()}
            r = {name: future.result() for name, future in futures.items()}
        earned, spent = _num(r["earned"]["s"]), _num(r["spent"]["s"])
        tx_count = _num(r["earned"]["n"]) + _num(r["spent"]["n"])
        return SourceMetrics(
            active_users=int(_num(r["active"]["n"])),
            paying_users=int(_num(r["paying"]["n"])),
            token_velocity=TokenVelocity(
                earned=earned,
                spent=spent,
                net=earned - spent,
                transactions_per_minute=tx_count / thresholds.TOKEN_VELOCITY_WINDOW_MIN,
            ),
            fraud_alerts=FraudAlerts(
                active=int(_num(r["fraud_active"]["n"])),
                critical=int(_num(r["fraud_critical"]["n"])),
                resolved_today=int(_num(r["fraud_resolved"]["n"])),
            ),
            payout_queue=PayoutQueue(
                pending=int(_num(r["payout_pending"]["n"])),
                processing=int(_num(r["payout_processing"]["n"])),
                failed=int(_num(r["payout_failed"]["n"])),
                total_amount=_num(r["payout_pending"]["s"]) + _num(r["payout_processing"]["s"]),
            ),
            support_queue=SupportQueue(
                open=int(_num(r["support_open"]["n"])),
                urgent=int(_num(r["support_urgent"]["n"])),
                avg_response_time=r["support_response"]["a"],
            ),
            panic_activations=PanicActivations(
                last24h=int(_num(r["panic_24h"]["n"])), active=int(_num(r["panic_active"]["n"]))
            ),
        )


# ------------------------------------------------------------------ panels


class PanelSource(Protocol):
    """A dashboard panel fed by another area."""

    def read(self, now: datetime) -> Panel: ...


@dataclass(frozen=True)
class UnavailablePanel:
    """The area that feeds the panel is not in this build."""

    reason: str

    def read(self, now: datetime) -> Panel:
        return Panel(available=False, reason=self.reason)


class RecentDocsPanel:
    """The newest documents of an area's collection, only ``fields`` of them when given."""

    def __init__(
        self,
        db: firestore.Client,
        collection: str,
        order_field: str,
        fields: list[str] | None = None,
    ) -> None:
        self._db, self._collection, self._order = db, collection, order_field
        self._fields = fields

    def read(self, now: datetime) -> Panel:
        query = (
            self._db.collection(self._collection)
            .order_by(self._order, direction=firestore.Query.DESCENDING)
            .limit(thresholds.DASHBOARD_RECENT_ITEMS)
        )
        if self._fields:
            query = query.select(self._fields)
        items = [{"id": s.id, **cast(dict[str, Any], s.to_dict())} for s in query.stream()]
        return Panel(available=True, items=items)


# ------------------------------------------------------------------ notifier


@dataclass(frozen=True)
class SendResult:
    ok: bool
    attempts: int
    error: str | None


class Notifier(Protocol):
    @property
    def enabled(self) -> bool: ...

    def send(self, payload: dict[str, Any], idempotency_key: str) -> SendResult: ...


class WebhookNotifier:
    """JSON POST to a webhook (Slack incoming webhooks accept ``{"text": ...}``), retried
    with doubling backoff; 2xx is delivered, anything else (or no answer) is retried."""

    def __init__(
        self,
        url: str,
        attempts: int = thresholds.WEBHOOK_ATTEMPTS_PER_RUN,
        backoff_sec: float = thresholds.WEBHOOK_BACKOFF_SEC,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url, self._attempts, self._backoff, self._sleep = url, attempts, backoff_sec, sleep

    @property
    def enabled(self) -> bool:
        return bool(self._url)

    def send(self, payload: dict[str, Any], idempotency_key: str) -> SendResult:
        error: str | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                response = requests.post(
                    self._url,
                    json=payload,
                    headers={"X-Pack391-Notification-Id": idempotency_key},
                    timeout=thresholds.WEBHOOK_TIMEOUT_SEC,
                )
                if 200 <= response.status_code < 300:
                    return SendResult(True, attempt, None)
                error = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                error = type(exc).__name__
            if attempt < self._attempts:
                self._sleep(self._backoff * 2 ** (attempt - 1))
        return SendResult(False, self._attempts, error)


# ---------------------------------------------------------------- repository


class OpsRepository:
    """Firestore: everything the ops area writes, and what it reads from other areas."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    # --- snapshot and history

    def _live_ref(self) -> firestore.DocumentReference:
        return self._db.collection(collections.OPS_METRICS).document(collections.OPS_LIVE_DOC)

    def write_snapshot(
        self, snapshot: LiveSnapshotDoc, point: HistoryPointDoc, point_id: str
    ) -> None:
        batch = self._db.batch()
        batch.set(self._live_ref(), snapshot.to_doc())
        batch.set(
            self._db.collection(collections.OPS_METRICS_HISTORY).document(point_id), point.to_doc()
        )
        batch.commit()

    def read_snapshot(self) -> LiveSnapshotDoc | None:
        snap = self._live_ref().get()
        return LiveSnapshotDoc.model_validate(snap.to_dict()) if snap.exists else None

    def history(
        self, since: datetime, until: datetime, fields: list[str] | None
    ) -> Iterator[tuple[datetime, dict[str, float]]]:
        """(minute, values) of the points in [since, until], only ``fields`` when given
        (a projection: a 7-day chart of two numbers does not move every number)."""
        values = (
            [FieldPath("values", name).to_api_repr() for name in fields] if fields else ["values"]
        )
        query = (
            self._db.collection(collections.OPS_METRICS_HISTORY)
            .where(filter=FieldFilter("at", ">=", since))
            .where(filter=FieldFilter("at", "<=", until))
            .order_by("at")
            .select(["at", *values])
        )
        for snap in query.stream():
            data = snap.to_dict() or {}
            yield data["at"], dict(data.get("values", {}))

    def delete_history_before(self, cutoff: datetime) -> int:
        col = self._db.collection(collections.OPS_METRICS_HISTORY)
        old = col.where(filter=FieldFilter("at", "<", cutoff))
        return delete_matching(self._db, old, thresholds.METRICS_CLEANUP_BATCH_DOCS)

    # --- alert rules and alerts

    def _rule_ref(self, rule: str) -> firestore.DocumentReference:
        return self._db.collection(collections.OPS_ALERT_RULES).document(rule)

    def _alert_ref(self, alert_id: str) -> firestore.DocumentReference:
        return self._db.collection(collections.ALERTS).document(alert_id)

    def apply_rule(
        self,
        rule: str,
        decide: Callable[[RuleState], RuleOutcome],
        new_alert: Callable[[str], OpsAlertDoc],
        now: datetime,
    ) -> RuleOutcome:
        """In one transaction: read the rule's state, ``decide``, write the new state and
        open (create) or resolve the alert. Overlapping runs serialise here, so an alert
        opens once and resolves once."""
        ref = self._rule_ref(rule)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> RuleOutcome:
            snap = ref.get(transaction=tx)
            doc = (
                AlertRuleStateDoc.model_validate(snap.to_dict())
                if snap.exists
                else AlertRuleStateDoc(rule=rule)
            )
            state = RuleState(doc.consecutive, doc.last_minute, doc.open_alert_id)
            outcome = decide(state)
            resolving = None
            if outcome.action is AlertAction.RESOLVE and outcome.alert_id is not None:
                alert_snap = self._alert_ref(outcome.alert_id).get(transaction=tx)
                resolving = alert_snap.to_dict() if alert_snap.exists else None
            if outcome.state == state:
                return outcome
            new_doc = AlertRuleStateDoc(
                rule=rule,
                consecutive=outcome.state.consecutive,
                last_minute=outcome.state.last_minute,
                open_alert_id=outcome.state.open_alert_id,
                updated_at=now,
            )
            tx.set(ref, new_doc.to_doc())
            if outcome.action is AlertAction.OPEN and outcome.alert_id is not None:
                tx.create(self._alert_ref(outcome.alert_id), new_alert(outcome.alert_id).to_doc())
            if resolving is not None and outcome.alert_id is not None:
                opened_at: datetime = resolving["openedAt"]
                notify = Notification(
                    state=NotificationState.DISABLED
                    if resolving.get("notifyOpen", {}).get("state") == NotificationState.DISABLED
                    else NotificationState.PENDING
                )
                tx.update(
                    self._alert_ref(outcome.alert_id),
                    {
                        "status": AlertStatus.RESOLVED.value,
                        "resolvedAt": now,
                        "durationSec": (now - opened_at).total_seconds(),
                        "notifyResolve": notify.to_doc(),
                        "updatedAt": now,
                    },
                )
            return outcome

        return cast(RuleOutcome, run(self._db.transaction()))

    def get_alert(self, alert_id: str) -> OpsAlertDoc | None:
        snap = self._alert_ref(alert_id).get()
        if not snap.exists or (snap.to_dict() or {}).get("source") != "ops":
            return None
        return OpsAlertDoc.model_validate(snap.to_dict())

    def claim_notification(
        self, alert_id: str, field: str, may: Callable[[Notification], bool], now: datetime
    ) -> Notification | None:
        """Claim the alert's ``field`` notification (``notifyOpen``/``notifyResolve``) for
        this run in a transaction: at most one run sends it at a time."""
        ref = self._alert_ref(alert_id)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> Notification | None:
            snap = ref.get(transaction=tx)
            raw = (snap.to_dict() or {}).get(field) if snap.exists else None
            if raw is None:
                return None
            current = Notification.model_validate(raw)
            if not may(current):
                return None
            claimed = current.model_copy(
                update={
                    "state": NotificationState.SENDING,
                    "attempts": current.attempts,
                    "last_attempt_at": now,
                }
            )
            tx.update(ref, {field: claimed.to_doc()})
            return claimed

        return cast(Notification | None, run(self._db.transaction()))

    def set_notification(self, alert_id: str, field: str, value: Notification) -> None:
        self._alert_ref(alert_id).update({field: value.to_doc()})

    def pending_notifications(self) -> list[tuple[str, OpsAlertDoc]]:
        """Ops alerts whose open or resolve notification is not delivered yet."""
        found: dict[str, OpsAlertDoc] = {}
        states = [NotificationState.PENDING, NotificationState.FAILED, NotificationState.SENDING]
        for field in ("notifyOpen.state", "notifyResolve.state"):
            query = (
                self._db.collection(collections.ALERTS)
                .where(filter=FieldFilter("source", "==", "ops"))
                .where(filter=FieldFilter(field, "in", [s.value for s in states]))
                .limit(100)
            )
            for snap in query.stream():
                found[snap.id] = OpsAlertDoc.model_validate(snap.to_dict())
        return sorted(found.items())

    def acknowledge(self, alert_id: str, change: Change) -> tuple[OpsAlertDoc | None, bool]:
        """Mark an open ops alert acknowledged (audited in the same transaction)."""
        ref = self._alert_ref(alert_id)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> tuple[OpsAlertDoc | None, bool]:
            snap = ref.get(transaction=tx)
            if not snap.exists:
                return None, False
            data = cast(dict[str, Any], snap.to_dict())
            status = data.get("status")
            if status != AlertStatus.OPEN:
                doc = OpsAlertDoc.model_validate(data) if data.get("source") == "ops" else None
                return doc, False
            fields = {
                "status": AlertStatus.ACKNOWLEDGED.value,
                "acknowledgedAt": change.now,
                "acknowledgedBy": change.actor_uid,
                "updatedAt": change.now,
            }
            tx.update(ref, fields)
            write_audit(
                self._db,
                tx,
                change,
                target=f"{collections.ALERTS}/{alert_id}",
                before={"status": status},
                after={"status": AlertStatus.ACKNOWLEDGED.value},
            )
            data.update(fields)
            data.setdefault("rule", data.get("kind", ""))
            data.setdefault("threshold", 0.0)
            data.setdefault("value", 0.0)
            return OpsAlertDoc.model_validate(data), True

        return cast(tuple[OpsAlertDoc | None, bool], run(self._db.transaction()))

    def open_alerts(self) -> list[AlertView]:
        """Open and acknowledged alerts of ``pack391_alerts`` (every area), newest first."""
        query = (
            self._db.collection(collections.ALERTS)
            .where(filter=FieldFilter("status", "in", [AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED]))
            .order_by("openedAt", direction=firestore.Query.DESCENDING)
            .limit(thresholds.DASHBOARD_RECENT_ITEMS)
        )
        views = []
        for snap in query.stream():
            d = cast(dict[str, Any], snap.to_dict())
            notify = d.get("notifyOpen")
            views.append(
                AlertView(
                    id=snap.id,
                    collection=collections.ALERTS,
                    source=d.get("source", "?"),
                    kind=d.get("kind", "?"),
                    severity=d.get("severity", "?"),
                    title=d.get("title", ""),
                    status=d.get("status", "open"),
                    opened_at=d["openedAt"],
                    acknowledged_by=d.get("acknowledgedBy"),
                    value=d.get("value"),
                    threshold=d.get("threshold"),
                    notification=notify.get("state") if isinstance(notify, dict) else None,
                )
            )
        return views

    def open_scaling_alerts(self) -> list[AlertView]:
        """A scaling alert is open while it is its service's latest and not ``recovered``."""
        query = (
            self._db.collection(collections.SCALING_ALERTS)
            .order_by("at", direction=firestore.Query.DESCENDING)
            .limit(200)
        )
        latest: dict[str, tuple[str, ScalingAlertDoc]] = {}
        for snap in query.stream():
            doc = ScalingAlertDoc.model_validate(snap.to_dict())
            latest.setdefault(doc.service_id, (snap.id, doc))
        return [
            AlertView(
                id=alert_id,
                collection=collections.SCALING_ALERTS,
                source="scaling",
                kind=doc.kind.value,
                severity="critical" if doc.kind is not AlertKind.HALF_OPEN else "high",
                title=doc.message,
                status="open",
                opened_at=doc.at,
                value=doc.error_rate_pct,
                threshold=doc.threshold_pct,
            )
            for alert_id, doc in latest.values()
            if doc.kind is not AlertKind.RECOVERED
        ]

    # --- other areas

    def scaling_services(self) -> list[ServiceDoc]:
        docs = self._db.collection(collections.SCALING_SERVICES).order_by("__name__").stream()
        return [ServiceDoc.model_validate(s.to_dict()) for s in docs]

    def recent_detections(self) -> list[DetectionDoc]:
        return ProtectionRepository(self._db).recent_detections(thresholds.DASHBOARD_RECENT_ITEMS)

    def markets(self) -> list[MarketDoc]:
        docs = self._db.collection(collections.MARKETS).order_by("__name__").stream()
        return [MarketDoc.model_validate(s.to_dict()) for s in docs]


def redis_up(client: redis.Redis) -> bool:
    """Whether Redis answers a PING (a service of the system-health list)."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
