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
