"""The alert lifecycle's decisions: literal tables, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared import thresholds
from shared.alerts.policy import (
    AlertSpec,
    acknowledgement,
    alert_id_for,
    key_id,
    may_send,
    new_alert,
    notification_text,
    raised_again,
    resolution,
)
from shared.models.alerts import AlertDoc, AlertSource, AlertStatus, NotificationState, Severity

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def spec(severity: Severity = Severity.HIGH, **kw: object) -> AlertSpec:
    fields: dict[str, object] = {
        "source": AlertSource.SCALING,
        "kind": "isolation",
        "dedup_key": "scaling:isolation:api",
        "severity": severity,
        "title": "api isolated",
        "evidence": {"errorRatePct": 5.0},
        **kw,
    }
    return AlertSpec(**fields)  # type: ignore[arg-type]


def test_new_alert_is_open_seen_once_and_notifies_when_a_webhook_is_set() -> None:
    doc = new_alert(spec(), at(0), notify=True)
    assert (doc.status, doc.occurrences, doc.opened_at, doc.last_seen_at) == (
        AlertStatus.OPEN,
        1,
        at(0),
        at(0),
    )
    assert doc.dedup_key == "scaling:isolation:api"
    assert doc.notify_open is not None and doc.notify_open.state is NotificationState.PENDING
    quiet = new_alert(spec(), at(0), notify=False)
    assert quiet.notify_open is not None and quiet.notify_open.state is NotificationState.DISABLED
    assert (doc.expire_at, doc.resolved_at) == (None, None)  # active alerts never expire


def test_alert_ids_sort_by_time_and_differ_per_key() -> None:
    first = alert_id_for(spec(), at(0))
    assert first == f"scaling_isolation_20261127T120000000Z_{key_id('scaling:isolation:api')[:8]}"
    assert alert_id_for(spec(dedup_key="scaling:isolation:web"), at(0)) != first
    assert alert_id_for(spec(alert_id="ops_x_1"), at(0)) == "ops_x_1"
    assert key_id("k") == key_id("k") and len(key_id("k")) == 40


@pytest.mark.parametrize(
    ("before", "raised", "after"),
    [
        (Severity.HIGH, Severity.CRITICAL, "critical"),  # escalates
        (Severity.CRITICAL, Severity.HIGH, "critical"),  # never goes down while active
        (Severity.MEDIUM, Severity.MEDIUM, "medium"),
    ],
)
def test_raising_again_counts_and_only_raises_severity(
    before: Severity, raised: Severity, after: str
) -> None:
    doc = new_alert(spec(before), at(0), notify=False)
    fields = raised_again(doc, spec(raised, title="again", evidence={"n": 2}), at(3))
    assert fields == {
        "lastSeenAt": at(3),
        "occurrences": 2,
        "evidence": {"n": 2},
        "title": "again",
        "severity": after,
        "updatedAt": at(3),
    }


def test_raising_again_keeps_the_latest_value_of_a_rule_alert() -> None:
    doc = new_alert(spec(value=11.0, threshold=10.0), at(0), notify=False)
    assert raised_again(doc, spec(value=14.0, threshold=10.0), at(1))["value"] == 14.0


def test_resolution_records_who_why_how_long_and_when_it_expires() -> None:
    doc = new_alert(spec(), at(0), notify=True)
    fields = resolution(doc, at(5), "system", "recovered")
    assert {k: fields[k] for k in ("status", "resolvedAt", "resolvedBy", "resolution")} == {
        "status": "resolved",
        "resolvedAt": at(5),
        "resolvedBy": "system",
        "resolution": "recovered",
    }
    assert fields["durationSec"] == 300.0
    assert fields["expireAt"] == at(5) + timedelta(days=thresholds.ALERT_RETENTION_DAYS)
    assert fields["notifyResolve"]["state"] == "pending"
    quiet = resolution(new_alert(spec(), at(0), notify=False), at(5), "system", "x")
    assert quiet["notifyResolve"]["state"] == "disabled"  # never announced: not resolved either


def test_acknowledgement_of_each_status() -> None:
    open_doc = new_alert(spec(), at(0), notify=False)
    assert acknowledgement(open_doc, at(1), "olga") == {
        "status": "acknowledged",
        "acknowledgedAt": at(1),
        "acknowledgedBy": "olga",
        "updatedAt": at(1),
    }
    acked = open_doc.model_copy(update={"status": AlertStatus.ACKNOWLEDGED})
    resolved = open_doc.model_copy(update={"status": AlertStatus.RESOLVED})
    assert acknowledgement(acked, at(1), "olga") is None  # a no-op answer
    assert acknowledgement(resolved, at(1), "olga") is None
    rollback = new_alert(spec(resolve_on_acknowledge=True), at(0), notify=False)
    fields = acknowledgement(rollback, at(2), "olga")
    assert fields is not None
    assert (fields["status"], fields["resolvedBy"], fields["acknowledgedBy"]) == (
        "resolved",
        "olga",
        "olga",
    )
    assert fields["resolution"] == "acknowledged by olga"


def test_legacy_alerts_still_read() -> None:
    """An alert written before the one alert model (no dedup key, no lifecycle) validates."""
    old = AlertDoc.model_validate(
        {
            "source": "ddos",
            "kind": "traffic_spike",
            "severity": "critical",
            "title": "DDoS: traffic spike",
            "evidence": {},
            "status": "open",
            "openedAt": T0,
        }
    )
    assert (old.dedup_key, old.occurrences, old.notify_open) == (None, 1, None)


def test_notification_text_is_slack_text() -> None:
    rule = new_alert(
        spec(source=AlertSource.OPS, title="Failed payouts", value=11.0, threshold=10.0),
        at(0),
        notify=True,
    )
    assert notification_text(rule, "opened") == (
        ":rotating_light: [pack391 ops] OPENED: Failed payouts (value 11, threshold > 10)"
    )
    done = new_alert(spec(), at(0), notify=True).model_copy(update={"resolution": "recovered"})
    assert notification_text(done, "resolved") == (
        ":white_check_mark: [pack391 scaling] RESOLVED: api isolated (recovered)"
    )


@pytest.mark.parametrize(
    ("state", "attempts", "last_attempt_min_ago", "expected"),
    [
        ("pending", 0, None, True),
        ("failed", 3, 1, True),
        ("failed", 9, 1, False),  # WEBHOOK_MAX_ATTEMPTS reached
        ("sent", 1, 1, False),  # never twice
        ("disabled", 0, None, False),
        ("sending", 1, 1, False),  # another run holds it
        ("sending", 1, 3, True),  # that run died (claim older than 120 s)
    ],
)
def test_may_send(
    state: str, attempts: int, last_attempt_min_ago: float | None, expected: bool
) -> None:
    last = None if last_attempt_min_ago is None else at(-last_attempt_min_ago)
    assert may_send(state, attempts, last, at(0)) is expected
