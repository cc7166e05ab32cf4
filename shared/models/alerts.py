"""The one alert model of every area (``pack391_alerts``), and its dedup pointers
(``pack391_alert_keys``). Raised, resolved and acknowledged only through
:mod:`shared.alerts`."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import Field

from shared.models import WireModel


class AlertSource(enum.StrEnum):
    """The area that raised an alert. Closed: one member per area of the bundle."""

    SCALING = "scaling"
    LOAD = "load"
    DEPLOY = "deploy"
    DDOS = "ddos"
    OPS = "ops"
    MARKET = "market"
    BACKUP = "backup"


class Severity(enum.StrEnum):
    """How bad it is. Closed set, ordered from least to most severe."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class AlertStatus(enum.StrEnum):
    """Lifecycle of an alert. Closed: ``open`` -> ``acknowledged`` (an ops action) ->
    ``resolved`` (its condition cleared, or a human resolved it); ``open`` -> ``resolved``
    directly too. Open and acknowledged alerts are "active": they are listed on the
    dashboard, and raising the same dedup key updates them."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


ACTIVE_STATUSES = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
"""Statuses of an alert that is not resolved yet."""

SYSTEM_ACTOR = "system"
"""``resolvedBy`` of an alert resolved by its area because the condition cleared."""


class NotificationState(enum.StrEnum):
    """Where an alert's webhook notification is. Closed."""

    PENDING = "pending"
    """Not sent yet (a run claims it next)."""
    SENDING = "sending"
    """Claimed by a run; claimable again after ``WEBHOOK_CLAIM_SEC`` if that run died."""
    SENT = "sent"
    """Delivered (2xx); never sent again."""
    FAILED = "failed"
    """Not delivered yet; retried by later runs until ``WEBHOOK_MAX_ATTEMPTS``."""
    DISABLED = "disabled"
    """No webhook configured."""


class Notification(WireModel):
    """One webhook notification of an alert (``opened`` or ``resolved``)."""

    state: NotificationState = NotificationState.PENDING
    attempts: int = 0
    last_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    last_error: str | None = None


class AlertDoc(WireModel):
    """``pack391_alerts/{alertId}``: one alert of any area, from open to resolved.

    While it is open or acknowledged, raising its ``dedupKey`` again updates it
    (``lastSeenAt``, ``occurrences``, evidence; severity only goes up) instead of adding
    another. The fields added when every area moved to this one model (``dedupKey``,
    ``lastSeenAt``, ``occurrences``, ...) have defaults, so alerts written before still
    read (``pack391 migrate-alerts`` fills them in)."""

    source: AlertSource
    kind: str
    """What happened, within the area (``isolation``, ``rollback``, a rule name...)."""
    dedup_key: str | None = None
    """One active alert per key (``scaling:isolation:api-gateway``); None on legacy alerts."""
    severity: Severity
    title: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    status: AlertStatus = AlertStatus.OPEN
    opened_at: datetime
    last_seen_at: datetime | None = None
    """The last time the condition was raised (``openedAt`` for a single occurrence)."""
    occurrences: int = 1
    """How many times it was raised while active."""
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    """``system`` (the area saw the condition clear) or the uid of the human."""
    resolution: str | None = None
    """Why it was resolved, in words."""
    duration_sec: float | None = None
    """Seconds from ``openedAt`` to ``resolvedAt``."""
    resolve_on_acknowledge: bool = False
    """A human's acknowledgement resolves it (an area with no condition to watch clear,
    e.g. a deploy rollback)."""
    notify_open: Notification | None = None
    notify_resolve: Notification | None = None
    updated_at: datetime | None = None
    expire_at: datetime | None = None
    """Set when resolved (``ALERT_RETENTION_DAYS`` later): the Firestore TTL policy
    deletes it then. Active alerts never expire."""
    rule: str | None = None
    """Ops rule alerts: the rule, its threshold and the value that crossed it."""
    threshold: float | None = None
    value: float | None = None


class AlertKeyDoc(WireModel):
    """``pack391_alert_keys/{sha1(dedupKey)}``: which alert is active for a dedup key.

    Read and written in the transaction that raises or resolves the key: two concurrent
    raisers serialise on this document, so one key never has two active alerts. Kept
    (with ``alertId`` None) after its alert resolves, so the next raise finds it."""

    dedup_key: str
    alert_id: str | None = None
    updated_at: datetime | None = None
