"""Alert notifications: the webhook (JSON POST, Slack-compatible ``text``) and the
delivery loop that sends every undelivered ``opened``/``resolved`` notification of every
area's alerts, each claimed in a transaction first so two runs never send one twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared import thresholds
from shared.alerts.policy import may_send, notification_text
from shared.alerts.store import AlertStore
from shared.clock import iso
from shared.models.alerts import AlertDoc, Notification, NotificationState


@dataclass(frozen=True)
class SendResult:
    ok: bool
    attempts: int
    error: str | None


class Notifier(Protocol):
    @property
    def enabled(self) -> bool: ...

    def send(self, payload: dict[str, Any], idempotency_key: str) -> SendResult: ...


class WebhookNotifier:
    """JSON POST to a webhook (Slack incoming webhooks accept ``{"text": ...}``), retried
    with doubling backoff; 2xx is delivered, anything else (or no answer) is retried."""

    def __init__(
        self,
        url: str,
        attempts: int = thresholds.WEBHOOK_ATTEMPTS_PER_RUN,
        backoff_sec: float = thresholds.WEBHOOK_BACKOFF_SEC,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url, self._attempts, self._backoff, self._sleep = url, attempts, backoff_sec, sleep

    @property
    def enabled(self) -> bool:
        return bool(self._url)

    def send(self, payload: dict[str, Any], idempotency_key: str) -> SendResult:
        import requests

        error: str | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                response = requests.post(
                    self._url,
                    json=payload,
                    headers={"X-Pack391-Notification-Id": idempotency_key},
                    timeout=thresholds.WEBHOOK_TIMEOUT_SEC,
                )
                if 200 <= response.status_code < 300:
                    return SendResult(True, attempt, None)
                error = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                error = type(exc).__name__
            if attempt < self._attempts:
                self._sleep(self._backoff * 2 ** (attempt - 1))
        return SendResult(False, self._attempts, error)


def payload(alert_id: str, alert: AlertDoc, event: str) -> dict[str, Any]:
    """The JSON body of one notification (``event``: opened or resolved)."""
    return {
        "text": notification_text(alert, event),
        "alert": {
            "id": alert_id,
            "event": event,
            "source": alert.source.value,
            "kind": alert.kind,
            "dedupKey": alert.dedup_key,
            "severity": alert.severity.value,
            "title": alert.title,
            "rule": alert.rule,
            "value": alert.value,
            "threshold": alert.threshold,
            "openedAt": iso(alert.opened_at),
            "resolvedAt": iso(alert.resolved_at) if alert.resolved_at else None,
            "resolvedBy": alert.resolved_by,
            "resolution": alert.resolution,
        },
    }


def deliver(store: AlertStore, notifier: Notifier, now: datetime) -> int:
    """Send every undelivered notification once (claimed in a transaction first); how
    many were delivered. Nothing is sent without a webhook."""
    if not notifier.enabled:
        return 0
    sent = 0
    for alert_id, alert in store.pending_notifications():
        for doc_field, event in (("notifyOpen", "opened"), ("notifyResolve", "resolved")):
            claimed = store.claim_notification(
                alert_id,
                doc_field,
                lambda n: may_send(n.state, n.attempts, n.last_attempt_at, now),
                now,
            )
            if claimed is None:
                continue
            result = notifier.send(payload(alert_id, alert, event), f"{alert_id}:{event}")
            store.set_notification(
                alert_id,
                doc_field,
                Notification(
                    state=NotificationState.SENT if result.ok else NotificationState.FAILED,
                    attempts=claimed.attempts + result.attempts,
                    last_attempt_at=now,
                    sent_at=now if result.ok else None,
                    last_error=result.error,
                ),
            )
            sent += int(result.ok)
    return sent
