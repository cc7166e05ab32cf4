"""Traffic protection's Firestore side: geo rules, block mirrors, pass records,
detections and the allowlist (the :class:`functions.ddos.ports.ProtectionRecords` port)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from functions.ddos import api
from shared import collections
from shared.audit import DELETE, Change, Delete, audited_write, write_audit
from shared.clock import ms
from shared.firestore import delete_matching
from shared.models.ddos import (
    AllowlistEntryDoc,
    BlockDoc,
    BlockScope,
    DetectionDoc,
    GeoThrottleDoc,
    PanicPassDoc,
)

if TYPE_CHECKING:
    # The Firestore client is imported where it is used, so that a cold instance of a
    # function that only talks to Redis (pack391_checkRateLimit) does not load it.
    from google.cloud import firestore


class ProtectionRepository:
    """Firestore side: geo rules, block mirrors, pass records, detections, alerts."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def set_geo(self, doc: GeoThrottleDoc, change: Change) -> GeoThrottleDoc:
        """Replace a country's throttle (versioned, audited, in one transaction)."""
        ref = self._db.collection(collections.GEO_THROTTLES).document(doc.country)
        _, after, _ = audited_write(self._db, ref, change, GeoThrottleDoc, lambda _: doc)
        assert after is not None  # a replacement always writes
        return after

    def geo_rules(self) -> list[GeoThrottleDoc]:
        docs = self._db.collection(collections.GEO_THROTTLES).stream()
        return [GeoThrottleDoc.model_validate(s.to_dict()) for s in docs]

    def mirror_block(self, block: BlockDoc) -> None:
        doc_id = f"{block.kind.value}_{block.scope.value}_{block.subject}_{ms(block.expires_at)}"
        self._db.collection(collections.BLOCKS).document(doc_id.replace("/", "_")).set(
            block.to_doc()
        )

    def active_blocks(self, now: datetime, limit: int = 100) -> list[BlockDoc]:
        return api.active_blocks(self._db, now, limit)

    def mark_lifted(self, scope: BlockScope, subject: str, change: Change) -> int:
        """End the mirrors of ``subject``'s active blocks (``liftedAt``/``liftedBy``, and
        ``expiresAt`` now, so they leave the active lists and are cleaned up), with one
        audit entry, in one batch. Returns how many mirrors it ended."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self._db.collection(collections.BLOCKS).where(
            filter=FieldFilter("subject", "==", subject)
        )
        batch = self._db.batch()
        ended = []
        for snap in query.stream():
            doc = BlockDoc.model_validate(snap.to_dict())
            if doc.scope is not scope or doc.expires_at <= change.now or doc.lifted_at:
                continue
            batch.update(
                snap.reference,
                {"liftedAt": change.now, "liftedBy": change.actor_uid, "expiresAt": change.now},
            )
            ended.append(doc.model_dump(mode="json", by_alias=True))
        write_audit(
            self._db,
            batch,
            change,
            target=f"{collections.BLOCKS}/{scope.value}:{subject}",
            before={"blocks": ended},
            after=None,
        )
        batch.commit()
        return len(ended)

    def audit_only(self, change: Change, target: str, before: Any, after: Any) -> None:
        batch = self._db.batch()
        write_audit(self._db, batch, change, target=target, before=before, after=after)
        batch.commit()

    def allowlist(self) -> list[AllowlistEntryDoc]:
        return api.allowlist(self._db)

    def set_allowlisted(self, entry: str, add: bool, change: Change) -> bool:
        """Add or remove an allowlist entry with its audit entry; False when nothing changed."""
        ref = self._db.collection(collections.DDOS_ALLOWLIST).document(allowlist_id(entry))

        def build(current: AllowlistEntryDoc | None) -> AllowlistEntryDoc | Delete | None:
            if (current is not None) == add:
                return None
            if not add:
                return DELETE
            return AllowlistEntryDoc(
                entry=entry,
                reason=change.reason or "",
                added_by=change.actor_uid,
                added_at=change.now,
            )

        target = f"{collections.DDOS_ALLOWLIST}/{entry}"
        return audited_write(self._db, ref, change, AllowlistEntryDoc, build, target=target)[2]

    def delete_expired_blocks(self, now: datetime, page: int = 400) -> int:
        from google.cloud.firestore_v1.base_query import FieldFilter

        expired = self._db.collection(collections.BLOCKS).where(
            filter=FieldFilter("expiresAt", "<=", now)
        )
        return delete_matching(self._db, expired, page)

    def record_pass(self, doc: PanicPassDoc) -> None:
        self._db.collection(collections.PANIC_PASSES).document().set(doc.to_doc())

    def passes_since(self, since: datetime) -> int:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query: Any = self._db.collection(collections.PANIC_PASSES).where(
            filter=FieldFilter("grantedAt", ">=", since)
        )
        return int(query.count(alias="n").get()[0][0].value)

    def record_detection(self, doc_id: str, detection: DetectionDoc) -> None:
        """One detection (its id is minute and kind: a re-run overwrites, never duplicates).
        Its alert goes through :mod:`shared.alerts`."""
        self._db.collection(collections.DDOS_DETECTIONS).document(doc_id).set(detection.to_doc())

    def recent_detections(self, limit: int = 20) -> list[DetectionDoc]:
        return api.recent_detections(self._db, limit)


def allowlist_id(entry: str) -> str:
    """The document id of an allowlist entry (a CIDR's "/" is not allowed in ids)."""
    return entry.replace("/", "_").replace(":", "-")
