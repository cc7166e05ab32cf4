"""The alert store: ``pack391_alerts`` and its dedup pointers ``pack391_alert_keys``.

Every area raises, resolves and acknowledges its alerts here (the content is decided
by the area's policy, :class:`shared.alerts.policy.AlertSpec`).

Raising and resolving, with their race-free dedup, are :mod:`shared.alerts.changes`'s
(:class:`~shared.alerts.changes.AlertChanges`); this store answers for them, and adds the
acknowledgement, the reads and the notifications' bookkeeping. :meth:`AlertStore.apply`
(and :meth:`raise_alert`, :meth:`resolve`) take the caller's transaction, so an area
raises or resolves atomically with its own state change.

google-cloud-firestore is imported where it is used: a rate-limit instance imports this
module (through its area) without loading the client at start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, cast

from shared import collections, thresholds
from shared.alerts.changes import AlertChanges, webhook_configured, with_fields
from shared.alerts.policy import (
    AlertChange,
    AlertSpec,
    acknowledgement,
)
from shared.audit import Change, write_audit
from shared.firestore import transact
from shared.models.alerts import (
    ACTIVE_STATUSES,
    SYSTEM_ACTOR,
    AlertDoc,
    AlertSource,
    AlertStatus,
    Notification,
    NotificationState,
)

__all__ = ["NOTIFY_FIELDS", "AlertStore", "webhook_configured"]

if TYPE_CHECKING:
    from google.cloud import firestore

NOTIFY_FIELDS = ("notifyOpen", "notifyResolve")
"""The two notifications of an alert: ``opened`` and ``resolved``."""


class AlertStore:
    """Firestore: the alerts of every area."""

    def __init__(self, db: firestore.Client, notify: Callable[[], bool] = webhook_configured):
        self._db = db
        self._changes = AlertChanges(db, notify)

    # ------------------------------------------------------------------ refs

    def _alert_ref(self, alert_id: str) -> firestore.DocumentReference:
        return self._changes.alert_ref(alert_id)

    def _key_ref(self, dedup_key: str) -> firestore.DocumentReference:
        return self._changes.key_ref(dedup_key)

    # ---------------------------------------------------------- raise, resolve

    def raise_alert(
        self, spec: AlertSpec, now: datetime, tx: firestore.Transaction | None = None
    ) -> str:
        """Open an alert for ``spec``, or update the active one of its dedup key. Its id."""
        return self._changes.raise_alert(spec, now, tx)

    def resolve(
        self,
        dedup_key: str,
        now: datetime,
        by: str = SYSTEM_ACTOR,
        reason: str = "condition cleared",
        tx: firestore.Transaction | None = None,
    ) -> str | None:
        """Resolve the active alert of ``dedup_key``: its id, None when none was active."""
        return self._changes.resolve(dedup_key, now, by, reason, tx)

    def apply(
        self,
        changes: Sequence[AlertChange],
        now: datetime,
        tx: firestore.Transaction | None = None,
    ) -> list[str | None]:
        """Raise or resolve each change (in ``tx``, or one transaction of their own): per
        change the id of the alert raised/updated or resolved (None: nothing to resolve).
        See :meth:`shared.alerts.changes.AlertChanges.apply`."""
        return self._changes.apply(changes, now, tx)

    # ---------------------------------------------------------- acknowledge

    def acknowledge(self, alert_id: str, change: Change) -> tuple[AlertDoc | None, bool]:
        """Acknowledge an open alert of any area (audited in the same transaction); an
        alert that resolves on acknowledgement is resolved by the human. Answers (the
        alert as it is now, changed); (None, False) when there is no such alert; an
        acknowledged or resolved alert is answered unchanged."""
        ref = self._alert_ref(alert_id)
        from google.cloud import firestore

        @firestore.transactional
        def run(tx: firestore.Transaction) -> tuple[AlertDoc | None, bool]:
            snap = ref.get(transaction=tx)
            if not snap.exists:
                return None, False
            doc = AlertDoc.model_validate(snap.to_dict())
            fields = acknowledgement(doc, change.now, change.actor_uid)
            if fields is None:
                return doc, False
            resolves = fields["status"] == AlertStatus.RESOLVED.value
            release = False
            if resolves and doc.dedup_key is not None:
                pointer = self._key_ref(doc.dedup_key).get(transaction=tx)
                release = pointer.exists and (pointer.to_dict() or {}).get("alertId") == alert_id
            tx.update(ref, fields)
            if release and doc.dedup_key is not None:
                self._changes.point(tx, doc.dedup_key, None, change.now)
            write_audit(
                self._db,
                tx,
                change,
                target=f"{collections.ALERTS}/{alert_id}",
                before={"status": doc.status.value},
                after={"status": fields["status"]},
            )
            return with_fields(doc, fields), True

        return cast(tuple[AlertDoc | None, bool], transact(self._db, run))

    # ---------------------------------------------------------------- reads

    def get(self, alert_id: str) -> AlertDoc | None:
        snap = self._alert_ref(alert_id).get()
        return AlertDoc.model_validate(snap.to_dict()) if snap.exists else None

    def open_alerts(
        self, limit: int = thresholds.DASHBOARD_RECENT_ITEMS
    ) -> list[tuple[str, AlertDoc]]:
        """Open and acknowledged alerts of every area, newest first."""
        from google.cloud import firestore
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self._db.collection(collections.ALERTS)
            .where(filter=FieldFilter("status", "in", [s.value for s in ACTIVE_STATUSES]))
            .order_by("openedAt", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return [(s.id, AlertDoc.model_validate(s.to_dict())) for s in query.stream()]

    def changed_since(self, since: datetime, limit: int) -> list[tuple[str, AlertDoc]]:
        """Alerts of every area opened, or resolved, at or after ``since``: the newest
        ``limit`` of each kind, each alert once, oldest opened first."""
        from google.cloud import firestore
        from google.cloud.firestore_v1.base_query import FieldFilter

        found: dict[str, AlertDoc] = {}
        for field in ("openedAt", "resolvedAt"):
            query = (
                self._db.collection(collections.ALERTS)
                .where(filter=FieldFilter(field, ">=", since))
                .order_by(field, direction=firestore.Query.DESCENDING)
                .limit(limit)
            )
            for snap in query.stream():
                found[snap.id] = AlertDoc.model_validate(snap.to_dict())
        return sorted(found.items(), key=lambda item: (item[1].opened_at, item[0]))

    def active_of(self, source: AlertSource) -> list[tuple[str, AlertDoc]]:
        """The open and acknowledged alerts ``source`` raised (for an area that resolves
        whatever it no longer sees)."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self._db.collection(collections.ALERTS)
            .where(filter=FieldFilter("source", "==", source.value))
            .where(filter=FieldFilter("status", "in", [s.value for s in ACTIVE_STATUSES]))
        )
        return sorted((s.id, AlertDoc.model_validate(s.to_dict())) for s in query.stream())

    # --------------------------------------------------------- notifications

    def pending_notifications(self) -> list[tuple[str, AlertDoc]]:
        """Alerts of every area whose open or resolve notification is not delivered yet."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        found: dict[str, AlertDoc] = {}
        states = [NotificationState.PENDING, NotificationState.FAILED, NotificationState.SENDING]
        for name in NOTIFY_FIELDS:
            query = (
                self._db.collection(collections.ALERTS)
                .where(filter=FieldFilter(f"{name}.state", "in", [s.value for s in states]))
                .limit(thresholds.ALERT_NOTIFY_SCAN_DOCS)
            )
            for snap in query.stream():
                found[snap.id] = AlertDoc.model_validate(snap.to_dict())
        return sorted(found.items())

    def claim_notification(
        self, alert_id: str, field: str, may: Callable[[Notification], bool], now: datetime
    ) -> Notification | None:
        """Claim the alert's ``field`` notification (``notifyOpen``/``notifyResolve``) for
        this run in a transaction: at most one run sends it at a time."""
        ref = self._alert_ref(alert_id)
        from google.cloud import firestore

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
                update={"state": NotificationState.SENDING, "last_attempt_at": now}
            )
            tx.update(ref, {field: claimed.to_doc()})
            return claimed

        return cast(Notification | None, transact(self._db, run))

    def set_notification(self, alert_id: str, field: str, value: Notification) -> None:
        self._alert_ref(alert_id).update({field: value.to_doc()})
