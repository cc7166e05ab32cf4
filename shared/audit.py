"""Audit entries: one per admin mutation, written atomically with the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.cloud import firestore

from shared import collections
from shared.models.audit import AuditEntry


def write_audit(
    db: firestore.Client,
    writer: firestore.Transaction | firestore.WriteBatch,
    *,
    actor_uid: str,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    reason: str | None,
    request_id: str,
    now: datetime,
) -> AuditEntry:
    """Add the audit entry to ``writer`` (the transaction or batch making the change)."""
    entry = AuditEntry(
        actor_uid=actor_uid,
        action=action,
        target=target,
        before=before,
        after=after,
        reason=reason,
        request_id=request_id,
        at=now,
    )
    writer.set(db.collection(collections.AUDIT_LOG).document(), entry.to_doc())
    return entry
