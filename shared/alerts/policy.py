"""Alert decisions: pure functions of data and ``now``, no I/O.

- :class:`AlertSpec` (raise) and :class:`AlertResolve` (resolve): what an area's policy
  decides about its alerts; :mod:`shared.alerts.store` carries it out;
- :func:`new_alert`, :func:`raised_again`, :func:`resolution`, :func:`acknowledgement`:
  the document (or the fields to update) for each step of the lifecycle;
- :func:`notification_text`, :func:`may_send`: the webhook's text and retry rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import thresholds
from shared.models.alerts import (
    ACTIVE_STATUSES,
    SYSTEM_ACTOR,
    AlertDoc,
    AlertSource,
    AlertStatus,
    Notification,
    NotificationState,
    Severity,
)


@dataclass(frozen=True)
class AlertSpec:
    """Raise an alert: its content, decided by the raising area's policy."""

    source: AlertSource
    kind: str
    dedup_key: str
    """While an alert with this key is open or acknowledged, raising updates it."""
    severity: Severity
    title: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    resolve_on_acknowledge: bool = False
    """A human's acknowledgement resolves it (nothing else would)."""
    alert_id: str | None = None
    """Id of the alert if this raise opens one (default: :func:`alert_id_for`)."""
    rule: str | None = None
    threshold: float | None = None
    value: float | None = None


@dataclass(frozen=True)
class AlertResolve:
    """Resolve the active alert of ``dedup_key`` (nothing when none is active)."""

    dedup_key: str
    reason: str
    by: str = SYSTEM_ACTOR


AlertChange = AlertSpec | AlertResolve
"""What an area decides about one of its alerts."""


def key_id(dedup_key: str) -> str:
    """The ``pack391_alert_keys`` document id of a dedup key (any string is a valid key)."""
    return hashlib.sha1(dedup_key.encode("utf-8")).hexdigest()


def alert_id_for(spec: AlertSpec, now: datetime) -> str:
    """A new alert's id: sorts by source, kind and time; unique per key and millisecond."""
    if spec.alert_id is not None:
        return spec.alert_id
    stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
    return f"{spec.source.value}_{spec.kind}_{stamp}_{key_id(spec.dedup_key)[:8]}"


def new_alert(spec: AlertSpec, now: datetime, notify: bool) -> AlertDoc:
    """The document of an alert opened by ``spec`` at ``now``."""
    return AlertDoc(
        source=spec.source,
        kind=spec.kind,
        dedup_key=spec.dedup_key,
        severity=spec.severity,
        title=spec.title,
        evidence=dict(spec.evidence),
        status=AlertStatus.OPEN,
        opened_at=now,
        last_seen_at=now,
        occurrences=1,
        resolve_on_acknowledge=spec.resolve_on_acknowledge,
        notify_open=Notification(
            state=NotificationState.PENDING if notify else NotificationState.DISABLED
        ),
        updated_at=now,
        rule=spec.rule,
        threshold=spec.threshold,
        value=spec.value,
    )


def is_active(alert: AlertDoc) -> bool:
    return alert.status in ACTIVE_STATUSES


def raised_again(alert: AlertDoc, spec: AlertSpec, now: datetime) -> dict[str, Any]:
    """Fields to update when ``spec`` is raised onto the active ``alert``: seen again,
    one more occurrence, the latest evidence and title; the severity only goes up (an
    escalation is not undone by a milder repeat). Status and notifications stay."""
    severity = spec.severity if spec.severity.rank > alert.severity.rank else alert.severity
    fields: dict[str, Any] = {
        "lastSeenAt": max(now, alert.last_seen_at or alert.opened_at),
        "occurrences": alert.occurrences + 1,
        "evidence": dict(spec.evidence),
        "title": spec.title,
        "severity": severity.value,
        "updatedAt": now,
    }
    if spec.value is not None:
        fields["value"] = spec.value
    return fields


def resolution(alert: AlertDoc, now: datetime, by: str, reason: str) -> dict[str, Any]:
    """Fields that resolve ``alert``: who and why, how long it lasted, when it expires,
    and its resolve notification (disabled when its open notification was)."""
    disabled = alert.notify_open is None or alert.notify_open.state is NotificationState.DISABLED
    notify = Notification(
        state=NotificationState.DISABLED if disabled else NotificationState.PENDING
    )
    return {
        "status": AlertStatus.RESOLVED.value,
        "resolvedAt": now,
        "resolvedBy": by,
        "resolution": reason,
        "durationSec": max(0.0, (now - alert.opened_at).total_seconds()),
        "notifyResolve": notify.to_doc(),
        "updatedAt": now,
        "expireAt": now + timedelta(days=thresholds.ALERT_RETENTION_DAYS),
    }


def acknowledgement(alert: AlertDoc, now: datetime, by: str) -> dict[str, Any] | None:
    """Fields that acknowledge ``alert`` (None: it is not open, nothing to do). An alert
    that resolves on acknowledgement is resolved by the human instead."""
    if alert.status is not AlertStatus.OPEN:
        return None
    acked = {"acknowledgedAt": now, "acknowledgedBy": by, "updatedAt": now}
    if alert.resolve_on_acknowledge:
        return {**resolution(alert, now, by, f"acknowledged by {by}"), **acked}
    return {"status": AlertStatus.ACKNOWLEDGED.value, **acked}


def notification_text(alert: AlertDoc, event: str) -> str:
    """Slack-compatible text of a notification (``event``: opened or resolved)."""
    icon = ":rotating_light:" if event == "opened" else ":white_check_mark:"
    text = f"{icon} [pack391 {alert.source.value}] {event.upper()}: {alert.title}"
    if alert.value is not None and alert.threshold is not None:
        text += f" (value {alert.value:g}, threshold > {alert.threshold:g})"
    elif event == "resolved" and alert.resolution:
        text += f" ({alert.resolution})"
    return text


def may_send(state: str, attempts: int, last_attempt_at: datetime | None, now: datetime) -> bool:
    """Whether a run may claim a notification now: pending, or failed with attempts left,
    or claimed by a run that died long enough ago. Sent is never sent again."""
    if attempts >= thresholds.WEBHOOK_MAX_ATTEMPTS:
        return False
    if state in ("pending", "failed"):
        return True
    if state == "sending":
        return last_attempt_at is None or now - last_attempt_at >= timedelta(
            seconds=thresholds.WEBHOOK_CLAIM_SEC
        )
    return False
