"""Reading the backup area's alerts (``pack391_alerts``, ``source: "backup"``) in tests."""

from __future__ import annotations

from typing import Any

from shared import collections
from shared.firestore import get_db


def backup_alerts() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every backup alert, by the promise it is about: (alert id, document)."""
    snaps = get_db().collection(collections.ALERTS).stream()
    found = {}
    for snap in snaps:
        doc = snap.to_dict() or {}
        if doc.get("source") == "backup":
            found[doc["evidence"]["check"]] = (snap.id, doc)
    return found


def alert_problems(verification_id: str) -> list[str]:
    """The broken promises a verification raised (or raised again), one line each."""
    return sorted(
        doc["evidence"]["problem"]
        for _, doc in backup_alerts().values()
        if doc["evidence"]["verificationId"] == verification_id and doc["status"] != "resolved"
    )
