"""Raising and resolving alerts: ``pack391_alerts`` and its dedup pointers
``pack391_alert_keys``, written race-free in one transaction (:class:`AlertChanges`).
:class:`shared.alerts.store.AlertStore` raises and resolves through it.

Dedup is race-free: a raise or resolve reads and writes the key's pointer document
(``pack391_alert_keys/{sha1(key)}``, the id of the key's active alert) in its
transaction, so two concurrent raisers serialise on it. A raise first makes sure the
pointer exists (a plain read; the first raise of a key creates it empty), so raisers
serialise on an existing document; pointers are never deleted. Should the pointer still
be missing inside the transaction, the raise creates it there with ``create``, which
fails (``ALREADY_EXISTS``, retried) if a concurrent raiser made it first: dedup does not
rest on how a database locks a document that does not exist yet. (The emulator does
lock it: concurrent raisers that find the pointer missing still serialise.)

Contention is retried, never surfaced as a failed raise: the pointer's creation and the
transaction are one unit, run in up to ``TX_ROUNDS`` rounds with a jittered,
doubling pause between them. A round fails on ``ABORTED`` (raised by a read or a write
that waited on another transaction's lock: the emulator's "Transaction lock timeout"),
on the client giving up after ``TX_MAX_ATTEMPTS`` aborted commits (its
``ValueError``), or on ``ALREADY_EXISTS`` (a pointer created by a concurrent raiser).
Only the last round's error reaches the caller.

:meth:`AlertChanges.apply` (and :meth:`raise_alert`, :meth:`resolve`) take the caller's
transaction, so an area raises or resolves atomically with its own state change; the
caller must make every read of its own before calling (Firestore transactions read
before they write), and write after. Without one they run their own transaction.

google-cloud-firestore is imported where it is used: a rate-limit instance imports this
module (through its area) without loading the client at start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from shared import collections, thresholds
from shared.alerts.policy import (
    AlertChange,
    AlertResolve,
    AlertSpec,
    alert_id_for,
    is_active,
    key_id,
    new_alert,
    raised_again,
    resolution,
)
from shared.firestore import contended
from shared.models.alerts import SYSTEM_ACTOR, AlertDoc, AlertKeyDoc

if TYPE_CHECKING:
    from google.cloud import firestore


def webhook_configured() -> bool:
    """Whether an ops webhook is configured (new alerts' notifications are pending then,
    disabled otherwise)."""
    from shared.config import OPS_WEBHOOK_ENABLED, OPS_WEBHOOK_URL

    # the flag in functions that raise alerts without sending them (the URL, a secret, is
    # bound only to the sender); the URL itself where it is bound (or set locally)
    return OPS_WEBHOOK_ENABLED.value or bool(OPS_WEBHOOK_URL.value)


class AlertChanges:
    """Firestore: raise and resolve the alerts of every area, deduplicated by key."""

    def __init__(self, db: firestore.Client, notify: Callable[[], bool] = webhook_configured):
        self._db = db
        self._notify = notify

    # ------------------------------------------------------------------ refs

    def alert_ref(self, alert_id: str) -> firestore.DocumentReference:
        return self._db.collection(collections.ALERTS).document(alert_id)

    def key_ref(self, dedup_key: str) -> firestore.DocumentReference:
        return self._db.collection(collections.ALERT_KEYS).document(key_id(dedup_key))

    def _ensure_keys(self, keys: Sequence[str], now: datetime) -> None:
        """Make sure each key's pointer exists (outside any transaction: see the module).

        A plain read first: pointers are never deleted, so after a key's first raise this
        is all it costs, and it never waits on a lock (a ``create`` of an existing
        pointer that raisers hold in their transactions waits for them, and can time out
        with ``ABORTED``). Contention is retried here, in rounds
        (:func:`shared.firestore.contended`)."""
        from google.api_core import exceptions as gexc

        for key in dict.fromkeys(keys):
            ref = self.key_ref(key)

            def create(ref: firestore.DocumentReference = ref, key: str = key) -> None:
                if ref.get().exists:
                    return
                with contextlib.suppress(gexc.AlreadyExists):
                    ref.create(AlertKeyDoc(dedup_key=key, updated_at=now).to_doc())

            contended(create)

    # ---------------------------------------------------------- raise, resolve

    def raise_alert(
        self, spec: AlertSpec, now: datetime, tx: firestore.Transaction | None = None
    ) -> str:
        """Open an alert for ``spec``, or update the active one of its dedup key. Its id."""
        (alert_id,) = self.apply([spec], now, tx)
        assert alert_id is not None  # a raise always names its alert
        return alert_id

    def resolve(
        self,
        dedup_key: str,
        now: datetime,
        by: str = SYSTEM_ACTOR,
        reason: str = "condition cleared",
        tx: firestore.Transaction | None = None,
    ) -> str | None:
        """Resolve the active alert of ``dedup_key``: its id, None when none was active."""
        (alert_id,) = self.apply([AlertResolve(dedup_key, reason, by)], now, tx)
        return alert_id

    def apply(
        self,
        changes: Sequence[AlertChange],
        now: datetime,
        tx: firestore.Transaction | None = None,
    ) -> list[str | None]:
        """Raise or resolve each change (in ``tx``, or one transaction of their own): per
        change the id of the alert raised/updated or resolved (None: nothing to resolve).
        All reads happen before any write, so several changes share one transaction."""
        raised = [c.dedup_key for c in changes if isinstance(c, AlertSpec)]
        if tx is not None:
            # the caller's transaction retries its own commit; the pointer is made sure
            # of before any read of ours (a missing one is created in ``tx`` anyway)
            self._ensure_keys(raised, now)
            return self._apply_in(tx, changes, now)
        from google.cloud import firestore

        @firestore.transactional
        def run(own: firestore.Transaction) -> list[str | None]:
            return self._apply_in(own, changes, now)

        def unit() -> list[str | None]:
            self._ensure_keys(raised, now)
            own = self._db.transaction(max_attempts=thresholds.TX_MAX_ATTEMPTS)
            return cast(list[str | None], run(own))

        from google.api_core import exceptions as gexc

        return contended(unit, also=(gexc.AlreadyExists,))

    def _apply_in(
        self, tx: firestore.Transaction, changes: Sequence[AlertChange], now: datetime
    ) -> list[str | None]:
        notify = any(isinstance(c, AlertSpec) for c in changes) and self._notify()
        # reads: each key's pointer, then the alert it points at
        active: dict[str, tuple[str, AlertDoc] | None] = {}
        missing: set[str] = set()
        for change in changes:
            key = change.dedup_key
            if key in active:
                continue
            pointer = self.key_ref(key).get(transaction=tx)
            if not pointer.exists:
                missing.add(key)
            alert_id = (pointer.to_dict() or {}).get("alertId") if pointer.exists else None
            active[key] = None
            if alert_id:
                snap = self.alert_ref(alert_id).get(transaction=tx)
                if snap.exists:
                    doc = AlertDoc.model_validate(snap.to_dict())
                    if is_active(doc):
                        active[key] = (alert_id, doc)
        # writes
        out: list[str | None] = []
        for change in changes:
            key = change.dedup_key
            found = active[key]
            if isinstance(change, AlertSpec):
                if found is not None:
                    alert_id, doc = found
                    fields = raised_again(doc, change, now)
                    tx.update(self.alert_ref(alert_id), fields)
                    active[key] = (alert_id, with_fields(doc, fields))
                else:
                    alert_id = alert_id_for(change, now)
                    doc = new_alert(change, now, notify)
                    tx.create(self.alert_ref(alert_id), doc.to_doc())
                    self.point(tx, key, alert_id, now, create=key in missing)
                    missing.discard(key)
                    active[key] = (alert_id, doc)
                out.append(alert_id)
            elif found is not None:
                alert_id, doc = found
                tx.update(self.alert_ref(alert_id), resolution(doc, now, change.by, change.reason))
                self.point(tx, key, None, now)
                active[key] = None
                out.append(alert_id)
            else:
                out.append(None)
        return out

    def point(
        self,
        tx: firestore.Transaction,
        key: str,
        alert_id: str | None,
        now: datetime,
        create: bool = False,
    ) -> None:
        """Point ``key`` at ``alert_id``; ``create``: the pointer was missing when read, so
        the commit fails (``ALREADY_EXISTS``, retried) if a concurrent raiser made it."""
        pointer = AlertKeyDoc(dedup_key=key, alert_id=alert_id, updated_at=now).to_doc()
        if create:
            tx.create(self.key_ref(key), pointer)
        else:
            tx.set(self.key_ref(key), pointer)


def with_fields(doc: AlertDoc, fields: dict[str, Any]) -> AlertDoc:
    """``doc`` with Firestore field updates (camelCase) applied."""
    data = doc.model_dump(mode="python", by_alias=True)
    data.update(fields)
    return AlertDoc.model_validate(data)
