"""The one-shot move to one alert model (the command, ``pack391 migrate-alerts``:
:mod:`stack.cli.migrate_alerts`). Idempotent: a second run changes nothing.

- ``pack391_scaling_alerts`` (the isolation event log under its old name) is copied, id
  for id, into ``pack391_scaling_events``;
- alerts in ``pack391_alerts`` written before the new model (no ``dedupKey``) get its
  fields (:func:`convert_alert`). An active ops rule alert takes its rule's key
  (``ops:{rule}``, so the rule resolves it when its condition clears); any other active
  legacy alert gets ``legacy:{id}`` and resolves when a human acknowledges it (its area
  never resolved it and never will). Each active one takes its key's pointer
  (``pack391_alert_keys``) in a transaction, as a raise would;
- ``--delete-old`` then deletes ``pack391_scaling_alerts`` and ``pack391_backup_alerts``
  (the backup alerts already live in ``pack391_alerts``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from shared import collections, thresholds
from shared.alerts.policy import key_id
from shared.models.alerts import (
    ACTIVE_STATUSES,
    SYSTEM_ACTOR,
    AlertKeyDoc,
    Notification,
    NotificationState,
)
from shared.models.scaling import ScalingEventDoc

if TYPE_CHECKING:
    from google.cloud import firestore


# ------------------------------------------------------------------ pure mapping


@dataclass(frozen=True)
class Conversion:
    """What a legacy alert becomes: the fields to set, its key, whether it is active."""

    fields: dict[str, Any]
    dedup_key: str
    active: bool


def legacy_key(alert_id: str) -> str:
    return f"legacy:{alert_id}"


def convert_alert(alert_id: str, data: dict[str, Any], now: datetime) -> Conversion | None:
    """The new-model fields of a legacy alert document (None: it has a ``dedupKey``
    already, nothing to do). Never notifies: old alerts were announced or never will be."""
    if data.get("dedupKey"):
        return None
    status = str(data.get("status") or "open")
    active = status in {s.value for s in ACTIVE_STATUSES}
    rule = data.get("rule")
    ops_rule = data.get("source") == "ops" and isinstance(rule, str) and rule
    key = f"ops:{rule}" if ops_rule else legacy_key(alert_id)
    opened: datetime = data["openedAt"]
    disabled = Notification(state=NotificationState.DISABLED).to_doc()
    fields: dict[str, Any] = {
        "dedupKey": key,
        "lastSeenAt": data.get("lastSeenAt") or opened,
        "occurrences": data.get("occurrences") or 1,
        "resolveOnAcknowledge": not ops_rule,
        "notifyOpen": data.get("notifyOpen") or disabled,
        "updatedAt": now,
    }
    if not active:
        resolved_at: datetime = data.get("resolvedAt") or data.get("updatedAt") or opened
        fields.update(
            {
                "status": "resolved",
                "resolvedAt": resolved_at,
                "resolvedBy": data.get("resolvedBy") or SYSTEM_ACTOR,
                "resolution": data.get("resolution") or "resolved before the one alert model",
                "durationSec": data.get("durationSec")
                if data.get("durationSec") is not None
                else max(0.0, (resolved_at - opened).total_seconds()),
                "notifyResolve": data.get("notifyResolve") or disabled,
                "expireAt": resolved_at + timedelta(days=thresholds.ALERT_RETENTION_DAYS),
            }
        )
    return Conversion(fields, key, active)


def scaling_event(data: dict[str, Any]) -> dict[str, Any]:
    """A ``pack391_scaling_alerts`` document as a ``pack391_scaling_events`` one (same
    shape, validated)."""
    return ScalingEventDoc.model_validate(data).to_doc()


# ------------------------------------------------------------------- adapter


@dataclass
class MigrationReport:
    events_copied: int = 0
    events_present: int = 0
    alerts_converted: int = 0
    alerts_current: int = 0
    keys_claimed: list[str] = field(default_factory=list)
    deleted: dict[str, int] = field(default_factory=dict)


def migrate(db: firestore.Client, now: datetime, delete_old: bool = False) -> MigrationReport:
    """Run the migration against ``db`` (see the module docstring)."""
    report = MigrationReport()
    _copy_events(db, report)
    for snap in db.collection(collections.ALERTS).stream():
        data = snap.to_dict() or {}
        conversion = convert_alert(snap.id, data, now)
        if conversion is None:
            report.alerts_current += 1
            continue
        if conversion.active:
            report.keys_claimed.append(_claim(db, snap.id, conversion, now))
        else:
            snap.reference.update(conversion.fields)
        report.alerts_converted += 1
    if delete_old:
        from shared.firestore import delete_matching

        for name in (collections.LEGACY_SCALING_ALERTS, collections.LEGACY_BACKUP_ALERTS):
            everything = cast("firestore.Query", db.collection(name))
            report.deleted[name] = delete_matching(db, everything)
    return report


def _copy_events(db: firestore.Client, report: MigrationReport) -> None:
    old = list(db.collection(collections.LEGACY_SCALING_ALERTS).stream())
    events = db.collection(collections.SCALING_EVENTS)
    batch, pending = db.batch(), 0
    for snap in old:
        target = events.document(snap.id)
        if target.get().exists:
            report.events_present += 1
            continue
        batch.set(target, scaling_event(snap.to_dict() or {}))
        report.events_copied += 1
        pending += 1
        if pending == 400:
            batch.commit()
            batch, pending = db.batch(), 0
    if pending:
        batch.commit()


def _claim(db: firestore.Client, alert_id: str, conversion: Conversion, now: datetime) -> str:
    """Convert an active legacy alert and point its key at it, in one transaction (the
    key's own key when another active alert holds it already). The key it took."""
    from google.api_core import exceptions as gexc
    from google.cloud import firestore

    keys = db.collection(collections.ALERT_KEYS)
    alert_ref = db.collection(collections.ALERTS).document(alert_id)
    fallback = legacy_key(alert_id)
    for key in (conversion.dedup_key, fallback):
        with contextlib.suppress(gexc.AlreadyExists):
            keys.document(key_id(key)).create(AlertKeyDoc(dedup_key=key).to_doc())

    @firestore.transactional
    def run(tx: firestore.Transaction) -> str:
        pointer = keys.document(key_id(conversion.dedup_key)).get(transaction=tx)
        holder = (pointer.to_dict() or {}).get("alertId")
        if holder and holder != alert_id:
            held = db.collection(collections.ALERTS).document(holder).get(transaction=tx)
            if held.exists and (held.to_dict() or {}).get("status") in ACTIVE_STATUSES:
                key = fallback
            else:
                key = conversion.dedup_key
        else:
            key = conversion.dedup_key
        fields = dict(conversion.fields)
        fields["dedupKey"] = key
        fields["resolveOnAcknowledge"] = key == fallback
        tx.update(alert_ref, fields)
        pointer_doc = AlertKeyDoc(dedup_key=key, alert_id=alert_id, updated_at=now)
        tx.set(keys.document(key_id(key)), pointer_doc.to_doc())
        return key

    from shared.firestore import transact

    return cast(str, transact(db, run))
