"""Backup's Firestore side, the catalog: records, verification reports (with the alerts
they raise and resolve, through :mod:`shared.alerts`) and drills (the
:class:`functions.backup.ports.Catalog` port).

Each method is one Firestore step under :func:`shared.firestore.step`'s budget: when Firestore
stalls, the catalog answers :class:`~shared.errors.DependencyUnavailable` after at most
that long, instead of holding a backup run (whose timeout, up to 30 min, is sized for
taking the backup) on one catalog write. A step that does not answer changed nothing
(each is one write or one transaction, made or not)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared import collections
from shared.alerts.policy import AlertChange
from shared.alerts.store import AlertStore
from shared.audit import Change, write_audit
from shared.firestore import step, transact
from shared.models.backup import BackupRecord, BackupStatus, DrillRecord, VerificationReport

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _step(
    method: Callable[Concatenate[BackupCatalog, _P], _R],
) -> Callable[Concatenate[BackupCatalog, _P], _R]:
    """``method`` as one catalog step (:func:`shared.firestore.step`)."""

    @functools.wraps(method)
    def run(catalog: BackupCatalog, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with step(f"backup catalog.{method.__name__}"):
            return method(catalog, *args, **kwargs)

    return run


class BackupCatalog:
    """Firestore: the catalog, verification reports, alerts and drills."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _ref(self, backup_id: str) -> firestore.DocumentReference:
        return self._db.collection(collections.BACKUPS).document(backup_id)

    @_step
    def save(self, record: BackupRecord) -> None:
        self._ref(record.backup_id).set(record.to_doc())

    @_step
    def get(self, backup_id: str) -> BackupRecord | None:
        snap = self._ref(backup_id).get()
        return BackupRecord.model_validate(snap.to_dict()) if snap.exists else None

    @_step
    def claim(self, record: BackupRecord) -> BackupRecord | None:
        """Create ``record`` unless its id exists, in one transaction: None when created
        (the caller owns it), else the entry already there (another attempt's)."""
        ref = self._ref(record.backup_id)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> BackupRecord | None:
            snap = ref.get(transaction=tx)
            if snap.exists:
                return BackupRecord.model_validate(snap.to_dict())
            tx.create(ref, record.to_doc())
            return None

        result: BackupRecord | None = transact(self._db, run)
        return result

    @_step
    def advance(self, record: BackupRecord, expected: BackupStatus) -> bool:
        """Write ``record`` if its entry is still ``expected`` (one transaction): False
        when another run moved it on first (two polls finishing one export)."""
        ref = self._ref(record.backup_id)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> bool:
            snap = ref.get(transaction=tx)
            if not snap.exists or (snap.to_dict() or {}).get("status") != expected.value:
                return False
            tx.set(ref, record.to_doc())
            return True

        done: bool = transact(self._db, run)
        return done

    @_step
    def exporting(self) -> list[BackupRecord]:
        """Managed backups whose export is not finished (one equality filter: no
        composite index)."""
        query = self._db.collection(collections.BACKUPS).where(
            filter=FieldFilter("status", "==", BackupStatus.EXPORTING.value)
        )
        return [BackupRecord.model_validate(snap.to_dict()) for snap in query.stream()]

    @_step
    def apply_alerts(self, alerts: list[AlertChange], now: datetime) -> None:
        """Raise or resolve the poll's alerts (one transaction of their own)."""
        AlertStore(self._db).apply(alerts, now)

    @_step
    def all(self) -> list[BackupRecord]:
        docs = self._db.collection(collections.BACKUPS).order_by("__name__").stream()
        return [BackupRecord.model_validate(snap.to_dict()) for snap in docs]

    @_step
    def save_verification(self, report: VerificationReport, alerts: list[AlertChange]) -> None:
        """The report, and the alerts it raises or resolves, in one transaction."""
        ref = self._db.collection(collections.BACKUP_VERIFICATIONS).document(report.verification_id)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> None:
            AlertStore(self._db).apply(alerts, report.at, tx)  # its reads before any write
            tx.set(ref, report.to_doc())

        transact(self._db, run)

    def _newest(self, collection: str) -> dict[str, Any] | None:
        query = (
            self._db.collection(collection)
            .order_by("at", direction=firestore.Query.DESCENDING)
            .limit(1)
        )
        for snap in query.stream():
            return snap.to_dict()
        return None

    @_step
    def last_verification(self) -> VerificationReport | None:
        doc = self._newest(collections.BACKUP_VERIFICATIONS)
        return VerificationReport.model_validate(doc) if doc is not None else None

    @_step
    def save_drill(self, drill: DrillRecord, change: Change) -> None:
        """The drill and its audit entry, in one batch."""
        batch = self._db.batch()
        ref = self._db.collection(collections.BACKUP_DRILLS).document(drill.drill_id)
        batch.set(ref, drill.to_doc())
        write_audit(
            self._db,
            batch,
            change,
            target=f"{collections.BACKUP_DRILLS}/{drill.drill_id}",
            before=None,
            after=drill.model_dump(mode="json", by_alias=True),
        )
        batch.commit()

    @_step
    def last_drill(self) -> DrillRecord | None:
        doc = self._newest(collections.BACKUP_DRILLS)
        return DrillRecord.model_validate(doc) if doc is not None else None
