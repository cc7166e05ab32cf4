"""The ops timeline and the live console's pure parts: literal records and ``now``, no
I/O (functions/ops/timeline.py, functions/ops/policy.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.ops.policy import block_views, content_etag, deployment_rows
from functions.ops.timeline import (
    DDoSModeNow,
    TimelineRecords,
    action_events,
    alert_events,
    build_timeline,
    deployment_events,
    mitigation_events,
    scale_events,
)
from shared.models.alerts import AlertDoc
from shared.models.ddos import BlockDoc, DetectionDoc
from shared.models.deploy import DeploymentHistory
from shared.models.ops import ActivityEntry, TimelineEvent
from shared.models.scaling import DecisionDoc, ScalingEventDoc

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=60)


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


TITLE = "Failed payouts over 10"
KIND = "ops/failed_payouts"


def alert(opened: float, resolved: float | None = None, **extra: Any) -> AlertDoc:
    fields: dict[str, Any] = {
        "source": "ops",
        "kind": "failed_payouts",
        "severity": "high",
        "title": TITLE,
        "status": "open" if resolved is None else "resolved",
        "openedAt": ago(opened),
        **({"resolvedAt": ago(resolved), "resolution": "cleared"} if resolved is not None else {}),
    }
    return AlertDoc.model_validate({**fields, **extra})


def brief(events: list[TimelineEvent]) -> list[tuple[Any, ...]]:
    return [(e.lane, e.at, e.end_at, e.title, e.detail, e.severity) for e in events]


# ------------------------------------------------------------------- alerts


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        # opened in the window, still open: no end
        (alert(30), [("alert", ago(30), None, TITLE, f"{KIND} · open", "high")]),
        # opened and resolved in the window
        (alert(30, 10), [("alert", ago(30), ago(10), TITLE, f"{KIND} · resolved", "high")]),
        # opened before the window, resolved inside it: its real start is kept
        (alert(90, 50), [("alert", ago(90), ago(50), TITLE, f"{KIND} · resolved", "high")]),
        # opened and resolved before the window: not shown
        (alert(120, 70), []),
        # acknowledged, raised again: who, and how many times
        (
            alert(20, status="acknowledged", acknowledgedBy="olga", occurrences=3),
            [("alert", ago(20), None, TITLE, f"{KIND} · acknowledged by olga · raised 3 times",
              "high")],
        ),
        # DDoS mode's alert is a mitigation, ended by its resolution
        (
            alert(40, 25, source="ddos", kind="ddos_mode", title="DDoS mode on",
                  severity="critical", resolution="DDoS mode ended"),
            [("mitigation", ago(40), ago(25), "DDoS mode", "DDoS mode ended", "critical")],
        ),
    ],
)  # fmt: skip
def test_alert_events(doc: AlertDoc, want: list[tuple[Any, ...]]) -> None:
    assert brief(alert_events([("a1", doc)], SINCE, NOW, None)) == want


def test_ddos_mode_still_on_ends_at_its_scheduled_end() -> None:
    doc = alert(5, source="ddos", kind="ddos_mode", title="DDoS mode on", severity="critical")
    until = NOW + timedelta(minutes=10)
    records = TimelineRecords(alerts=[("m", doc)], ddos_mode=DDoSModeNow(until, "spike"))
    assert brief(build_timeline(records, SINCE, NOW)) == [
        ("mitigation", ago(5), until, "DDoS mode", "DDoS mode on", "critical")
    ]


def test_ddos_mode_on_without_its_alert_in_the_window_shows_from_now() -> None:
    until = NOW + timedelta(minutes=10)
    records = TimelineRecords(ddos_mode=DDoSModeNow(until, "set by hand"))
    assert brief(build_timeline(records, SINCE, NOW)) == [
        ("mitigation", NOW, until, "DDoS mode", "set by hand", None)
    ]
    # a resolved mode alert in the window does not stand for the mode on now
    old = alert(50, 40, source="ddos", kind="ddos_mode", title="DDoS mode on", severity="critical",
                resolution="ended")  # fmt: skip
    records = TimelineRecords(alerts=[("m", old)], ddos_mode=DDoSModeNow(until, "again"))
    assert [e.at for e in build_timeline(records, SINCE, NOW)] == [ago(50), NOW]


# ------------------------------------------------------------ mitigation


def detection(minutes: float, **extra: Any) -> DetectionDoc:
    base = {"minute": ago(minutes), "kind": "traffic_spike", "severity": "critical",
            "evidence": {}, "mitigated": True, "detectedAt": ago(minutes)}  # fmt: skip
    return DetectionDoc.model_validate({**base, **extra})


def block(minutes: float, **extra: Any) -> BlockDoc:
    base = {"scope": "ip", "subject": "203.0.113.7", "kind": "ddos", "reason": "flood",
            "blockedAt": ago(minutes), "expiresAt": ago(minutes - 30)}  # fmt: skip
    return BlockDoc.model_validate({**base, **extra})


@pytest.mark.parametrize(
    ("records", "want"),
    [
        (
            TimelineRecords(detections=[detection(3, blockedSources=["a", "b"], blockedUsers=["u"],
                                                  held=[{"action": "block_ip"}])]),
            [("mitigation", ago(3), None, "DDoS: traffic spike",
              "mitigated; 2 sources blocked; 1 users blocked; 1 actions held", "critical")],
        ),
        (
            TimelineRecords(detections=[detection(3, mitigated=False, severity="medium")]),
            [("mitigation", ago(3), None, "DDoS: traffic spike", "not mitigated", "medium")],
        ),
        (TimelineRecords(detections=[detection(61)]), []),  # before the window
        (
            TimelineRecords(blocks=[block(10)]),
            [("mitigation", ago(10), NOW + timedelta(minutes=20), "ddos block: ip 203.0.113.7",
              "flood", None)],
        ),
        (
            TimelineRecords(blocks=[block(10, kind="brute_force", scope="user", subject="u1",
                                          liftedAt=ago(2), liftedBy="olga")]),
            [("mitigation", ago(10), ago(2), "brute force block: user u1", "flood · lifted by olga",
              None)],
        ),
    ],
)  # fmt: skip
def test_mitigation_events(records: TimelineRecords, want: list[tuple[Any, ...]]) -> None:
    assert brief(mitigation_events(records, SINCE, NOW, mode_shown=False)) == want


# ------------------------------------------------------------ deployments


def test_deployment_events_are_the_history_entries_in_the_window() -> None:
    dep = DeploymentHistory.model_validate(
        {
            "deploymentId": "d1", "version": "v42", "environment": "production",
            "phase": "rolled_back", "updatedAt": ago(5),
            "history": [
                {"at": ago(70), "event": "started", "phase": "pending", "trafficPercent": 0},
                {"at": ago(30), "event": "step", "phase": "progressing", "trafficPercent": 5},
                {"at": ago(5), "event": "rolled_back", "phase": "rolled_back", "trafficPercent": 0},
            ],
        }
    )  # fmt: skip
    assert brief(deployment_events([dep], SINCE, NOW)) == [
        ("deployment", ago(30), None, "v42 (production): step", "d1 · progressing · 5% traffic",
         None),
        ("deployment", ago(5), None, "v42 (production): rolled back",
         "d1 · rolled back · 0% traffic", "high"),
    ]  # fmt: skip


# ------------------------------------------------------------------ scale


def decision(minutes: float, **extra: Any) -> DecisionDoc:
    base = {"serviceId": "api-gateway", "at": ago(minutes), "source": "guard", "dryRun": False,
            "currentInstances": 3, "desiredInstances": 6, "action": "scale_up",
            "reasons": ["cpu 91% over 70%"], "acted": True, "runId": "r"}  # fmt: skip
    return DecisionDoc.model_validate({**base, **extra})


def isolation(minutes: float, kind: str) -> ScalingEventDoc:
    return ScalingEventDoc.model_validate(
        {"serviceId": "chat", "kind": kind, "at": ago(minutes), "errorRatePct": 7.5,
         "thresholdPct": 5.0, "message": f"chat {kind}"}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("decisions", "events", "want"),
    [
        ([decision(8)], [],
         [("scale", ago(8), None, "api-gateway: scale up 3 → 6", "guard · cpu 91% over 70%",
           None)]),
        ([decision(8, dryRun=True, acted=False, action="scale_down", desiredInstances=2)], [],
         [("scale", ago(8), None, "api-gateway: scale down 3 → 2",
           "guard · dry run · cpu 91% over 70%", None)]),
        ([decision(8, source="manual", acted=False, reasons=[])], [],
         [("scale", ago(8), None, "api-gateway: scale up 3 → 6", "manual · not applied", None)]),
        ([decision(65)], [], []),
        ([], [isolation(9, "isolated"), isolation(4, "recovered")],
         [("scale", ago(9), None, "chat: isolated", "chat isolated", "high"),
          ("scale", ago(4), None, "chat: recovered", "chat recovered", None)]),
    ],
)  # fmt: skip
def test_scale_events(
    decisions: list[DecisionDoc], events: list[ScalingEventDoc], want: list[tuple[Any, ...]]
) -> None:
    assert brief(scale_events(decisions, events, SINCE, NOW)) == want


# ----------------------------------------------------------------- actions


def entry(minutes: float, **extra: Any) -> ActivityEntry:
    base = {"id": "e", "at": ago(minutes), "actorUid": "ops-1", "action": "ops.alert.acknowledge",
            "target": "pack391_alerts/a1", "reason": "on it", "requestId": "q"}  # fmt: skip
    return ActivityEntry.model_validate({**base, **extra})


@pytest.mark.parametrize(
    ("audit", "want"),
    [
        ([entry(2, actorEmail="olga@example.com")],
         [("action", ago(2), None, "ops.alert.acknowledge",
           "olga@example.com · pack391_alerts/a1 · on it", None)]),
        ([entry(2, reason=None)],
         [("action", ago(2), None, "ops.alert.acknowledge", "ops-1 · pack391_alerts/a1", None)]),
        ([entry(2, actorUid="system:monitor", action="deploy.monitor")], []),  # the system's
        ([entry(61)], []),
    ],
)  # fmt: skip
def test_action_events(audit: list[ActivityEntry], want: list[tuple[Any, ...]]) -> None:
    assert brief(action_events(audit, SINCE, NOW)) == want


# ------------------------------------------------------------------ together


def test_every_lane_sorted_by_time_then_lane() -> None:
    records = TimelineRecords(
        alerts=[("a", alert(20))],
        detections=[detection(20)],
        decisions=[decision(40)],
        audit=[entry(1), entry(90)],
    )
    events = build_timeline(records, SINCE, NOW)
    assert [(e.lane, e.at) for e in events] == [
        ("scale", ago(40)),
        ("alert", ago(20)),
        ("mitigation", ago(20)),
        ("action", ago(1)),
    ]


def test_empty_records_empty_timeline() -> None:
    assert build_timeline(TimelineRecords(), SINCE, NOW) == []


# ------------------------------------------------------ the live console


def test_block_views_one_per_block_in_force_latest_expiry_first() -> None:
    first = block(20)  # expires in 10 min
    repeat = block(5)  # the same subject blocked again: expires in 25 min, holds
    brute = block(5, kind="brute_force", expiresAt=NOW + timedelta(minutes=5))
    lifted = block(5, subject="198.51.100.1", liftedAt=ago(1))
    expired = block(40, subject="198.51.100.2")
    views = block_views([first, repeat, brute, lifted, expired], NOW)
    assert [(v.key, v.until, v.subject, v.scope) for v in views] == [
        ("ddos:ip:203.0.113.7", NOW + timedelta(minutes=25), "203.0.113.7", "ip"),
        ("brute_force:ip:203.0.113.7", NOW + timedelta(minutes=5), "203.0.113.7", "ip"),
    ]


@pytest.mark.parametrize(
    ("item", "status", "paused"),
    [
        ({"phase": "progressing"}, "active", False),
        ({"phase": "paused"}, "active", True),
        ({"phase": "succeeded"}, "ended", False),
        ({"phase": "rolled_back"}, "ended", False),
        ({}, None, None),  # the document does not say
    ],
)
def test_deployment_rows(item: dict[str, Any], status: str | None, paused: bool | None) -> None:
    (row,) = deployment_rows([{"id": "d", "version": "v1", **item}], 10)
    assert (row["id"], row["status"], row["paused"]) == ("d", status, paused)
    assert set(row) == {"id", "version", "environment", "phase", "status", "trafficPercent",
                        "paused", "createdAt", "updatedAt"}  # fmt: skip


def test_deployment_rows_keep_the_newest_few() -> None:
    items = [{"id": f"d{i}", "phase": "succeeded"} for i in range(20)]
    assert [r["id"] for r in deployment_rows(items, 10)] == [f"d{i}" for i in range(10)]


def test_content_etag_is_canonical_and_short() -> None:
    a = content_etag({"alerts": [], "ddos": {"modeActive": False, "blocks": []}})
    b = content_etag({"ddos": {"blocks": [], "modeActive": False}, "alerts": []})
    c = content_etag({"alerts": [], "ddos": {"modeActive": True, "blocks": []}})
    assert a == b != c
    assert len(a) == 32 and int(a, 16) >= 0
