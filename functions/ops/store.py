"""Ops' Firestore side: what the area keeps (the live snapshot, the history, the alert
rules' state) and what it reads from the other areas (scaling registry, DDoS detections
through :mod:`functions.ddos.api`, markets): the :class:`functions.ops.ports.OpsRecords`
port. Its alerts go through :mod:`shared.alerts`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import cast

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from functions.ddos import api as ddos
from functions.ops.policy import AlertAction, RuleOutcome, RuleState
from shared import collections, thresholds
from shared.alerts.policy import AlertChange
from shared.alerts.store import AlertStore
from shared.firestore import delete_matching, transact
from shared.models.ddos import DetectionDoc
from shared.models.market import MarketDoc
from shared.models.ops import AlertRuleStateDoc, HistoryPointDoc, LiveSnapshotDoc
from shared.models.scaling import ServiceDoc


class OpsRepository:
    """Firestore: everything the ops area writes, and what it reads from other areas."""

    def __init__(self, db: firestore.Client, alerts: AlertStore | None = None) -> None:
        self._db = db
        self._alerts = alerts or AlertStore(db)

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

    # --- alert rules

    def apply_rule(
        self,
        rule: str,
        decide: Callable[[RuleState], RuleOutcome],
        alert: Callable[[RuleOutcome], AlertChange | None],
        now: datetime,
    ) -> RuleOutcome:
        """In one transaction: read the rule's state, ``decide``, raise or resolve the
        rule's ``alert`` through the alert store, write the new state (with the id of the
        rule's open alert). Overlapping runs serialise here, so an alert opens once and
        resolves once."""
        ref = self._db.collection(collections.OPS_ALERT_RULES).document(rule)

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
            if outcome.state == state:
                return outcome
            change = alert(outcome)
            if change is not None:
                (alert_id,) = self._alerts.apply([change], now, tx)
                if outcome.action in (AlertAction.OPEN, AlertAction.KEEP) and alert_id:
                    # the store's id: an alert of this rule already active is kept
                    outcome = RuleOutcome(
                        outcome.action,
                        RuleState(outcome.state.consecutive, outcome.state.last_minute, alert_id),
                        alert_id,
                    )
            new_doc = AlertRuleStateDoc(
                rule=rule,
                consecutive=outcome.state.consecutive,
                last_minute=outcome.state.last_minute,
                open_alert_id=outcome.state.open_alert_id,
                updated_at=now,
            )
            tx.set(ref, new_doc.to_doc())
            return outcome

        return cast(RuleOutcome, transact(self._db, run))

    # --- other areas

    def scaling_services(self) -> list[ServiceDoc]:
        docs = self._db.collection(collections.SCALING_SERVICES).order_by("__name__").stream()
        return [ServiceDoc.model_validate(s.to_dict()) for s in docs]

    def recent_detections(self) -> list[DetectionDoc]:
        return ddos.recent_detections(self._db, thresholds.DASHBOARD_RECENT_ITEMS)

    def markets(self) -> list[MarketDoc]:
        docs = self._db.collection(collections.MARKETS).order_by("__name__").stream()
        return [MarketDoc.model_validate(s.to_dict()) for s in docs]
