"""Alerts raised by any area for the ops team (``pack391_alerts``)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from shared.models import WireModel


class Severity(enum.StrEnum):
    """How bad it is. Closed set, ordered from least to most severe."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class AlertDoc(WireModel):
    """An alert: where it came from, how bad, what happened, and the evidence."""

    source: str
    """The area that raised it: ``ddos``, ``scaling``, ``deploy``, ``ops``, ``backup``."""
    kind: str
    severity: Severity
    title: str
    evidence: dict[str, Any]
    status: str = "open"
    opened_at: datetime


# Ops alert lifecycle (issue 7): optional fields, so every existing alert still reads.


class AlertStatus(enum.StrEnum):
    """Lifecycle of an alert. Closed: ``open`` -> ``acknowledged`` (an ops action) ->
    ``resolved`` (its condition cleared); ``open`` -> ``resolved`` directly too."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


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


class OpsAlertDoc(AlertDoc):
    """An ops alert in ``pack391_alerts`` (``source: "ops"``): :class:`AlertDoc` plus its
    lifecycle. Id ``ops_{rule}_{openedMinute}``, so a re-run in the same minute never
    duplicates it."""

    rule: str
    threshold: float
    value: float
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    duration_sec: float | None = None
    notify_open: Notification = Notification()
    notify_resolve: Notification | None = None
    updated_at: datetime | None = None
