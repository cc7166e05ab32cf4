"""Audit entries: one per admin mutation, written atomically with the change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from shared import collections
from shared.firestore import transact
from shared.models import WireModel
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
    actor_email: str | None = None
    """The caller's email as its verified ID token gives it (None: the token has none,
    or the change is the system's): who acted, in words an operator reads."""


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
        actor_email=change.actor_email,
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


class Delete:
    """Sentinel: the audited write deletes the document."""

    def __repr__(self) -> str:
        return "DELETE"


DELETE: Final = Delete()
"""Return this from ``build`` to delete the document (audited like any change)."""

M = TypeVar("M", bound=WireModel)

_VERSION_FIELDS = ("version", "updated_at", "updated_by", "reason")


def audited_write(
    db: firestore.Client,
    ref: firestore.DocumentReference,
    change: Change,
    model: type[M],
    build: Callable[[M | None], M | Delete | None],
    *,
    target: str | None = None,
    history: str | None = None,
) -> tuple[M | None, M | None, bool]:
    """The one audited, versioned, transactional write of an admin's change to a document.

    In one transaction: read ``ref`` as ``model`` (``None`` when absent), ask ``build`` for
    the new document (``None``: nothing changes, nothing is written or audited;
    :data:`DELETE`: delete it), stamp it when ``model`` has the version fields (``version``
    one more than before, ``updatedAt``/``updatedBy``/``reason`` from ``change``), keep
    the previous document under ``history/{version}`` when asked, write it, and add the
    audit entry (``target`` defaults to the document's path). Returns ``(before, after,
    changed)``; ``after`` is ``None`` when the document was deleted or did not change."""
    from google.cloud import firestore as fs

    @fs.transactional
    def run(tx: fs.Transaction) -> tuple[M | None, M | None, bool]:
        snap = ref.get(transaction=tx)
        before = model.model_validate(snap.to_dict()) if snap.exists else None
        built = build(before)
        if built is None:
            return before, None, False
        after: M | None = None
        if isinstance(built, Delete):
            if before is None:
                return None, None, False
            tx.delete(ref)
        else:
            after = built
            if all(name in model.model_fields for name in _VERSION_FIELDS):
                previous = getattr(before, "version", 0) if before is not None else 0
                after = model.model_validate(
                    after.model_copy(
                        update={
                            "version": previous + 1,
                            "updated_at": change.now,
                            "updated_by": change.actor_uid,
                            "reason": change.reason,
                        }
                    ).model_dump()
                )
            if history is not None and before is not None:
                version = getattr(before, "version", None)
                past = ref.collection(history)
                tx.set(past.document(str(version)) if version else past.document(), before.to_doc())
            tx.set(ref, after.to_doc())
        write_audit(
            db,
            tx,
            change,
            target=target or ref.path,
            before=before.model_dump(mode="json", by_alias=True) if before else None,
            after=after.model_dump(mode="json", by_alias=True) if after else None,
        )
        return before, after, True

    return cast(tuple[M | None, M | None, bool], transact(db, run))
