"""The audit log entry written with every admin mutation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.models import WireModel


class AuditEntry(WireModel):
    """Who changed what, when, and why; written in the same transaction as the change."""

    actor_uid: str
    actor_email: str | None = None
    """The caller's email from its ID token, when it has one (entries written before it
    was recorded have none)."""
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None = None
    request_id: str
    at: datetime
