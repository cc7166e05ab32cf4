"""Audit entries: one per admin mutation, written atomically with the change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared import collections
from shared.models.audit import AuditEntry

if TYPE_CHECKING:
    from google.cloud import firestore


@dataclass(frozen=True)
class Change:
    """Who is changing something, and why: what every audit entry records."""

    actor_uid: str
    action: str
    reason: str | None
    request_id: str
    now: datetime


def write_audit(
    db: firestore.Client,
    writer: firestore.Transaction | firestore.WriteBatch,
    change: Change,
    *,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEntry:
    """Add the audit entry to ``writer`` (the transaction or batch making the change)."""
    entry = AuditEntry(
        actor_uid=change.actor_uid,
        action=change.action,
        target=target,
        before=before,
        after=after,
        reason=change.reason,
        request_id=change.request_id,
        at=change.now,
    )
    writer.set(db.collection(collections.AUDIT_LOG).document(), entry.to_doc())
    return entry
