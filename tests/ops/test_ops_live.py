"""The live console (``pack391_getOpsLive``: parts and etag) and the timeline
(``pack391_getOpsTimeline``) through the callable protocol, against the Firestore
emulator and redis-server the fixtures start; who acted, by email, in the audit log."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import pytest

from shared import auth, collections
from shared.alerts.policy import AlertSpec
from shared.alerts.store import AlertStore
from shared.audit import Change
from shared.edge import CallContext
from shared.firestore import get_db
from shared.models.alerts import AlertSource, Severity
from shared.models.audit import AuditEntry
from shared.models.ddos import BlockDoc, BlockKind, BlockScope, DetectionDoc, DetectionKind
from shared.models.scaling import DecisionDoc, IsolationState, ScaleAction
from shared.stale import STALE_READ_WAIT_SEC
from tests.conftest import Backends, Caller, Pauser
from tests.ops.helpers import ddos_mode_on, register_service
from tests.shared.stale_helpers import (
    SLACK_SEC,
    assert_unavailable,
    short_budget,  # noqa: F401 (the fixture, by name)
    timed,
)

LIVE = "pack391_getOpsLive"
TIMELINE = "pack391_getOpsTimeline"
PARTS = ("alerts", "ddos", "deployments", "services", "activity")
OLGA = {"email": "olga@example.com"}
NOW_ = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def live(caller: Caller, etag: str | None = None, role: str = "ops") -> dict[str, Any]:
    answer = caller.call(LIVE, {} if etag is None else {"etag": etag}, role=role)
    assert answer.status == 200, answer.body
    result: dict[str, Any] = answer.result
    return result


def changed(caller: Caller, before: str) -> dict[str, Any]:
    """The console after a change: a new etag, every part present, and the new etag
    answered ``notModified`` with every part null."""
    after = live(caller, before)
    assert after["notModified"] is False and after["etag"] != before
    assert all(after[part] is not None for part in PARTS)
    again = live(caller, after["etag"])
    assert (again["notModified"], again["etag"]) == (True, after["etag"])
    assert [again[part] for part in PARTS] == [None] * len(PARTS)
    return after


def spec(key: str, title: str) -> AlertSpec:
    return AlertSpec(AlertSource.SCALING, "isolation", key, Severity.HIGH, title)


# ------------------------------------------------------------------- access


@pytest.mark.parametrize(("name", "data"), [(LIVE, {}), (TIMELINE, {"minutes": 30})])
def test_roles(caller: Caller, name: str, data: dict[str, Any]) -> None:
    assert caller.call(name, data, role=None).error["status"] == "UNAUTHENTICATED"
    assert caller.call(name, data, role="user").error["status"] == "PERMISSION_DENIED"
    assert caller.call(name, data, role="ops").status == 200
    assert caller.call(name, data, role="admin").status == 200


@pytest.mark.parametrize(
    ("name", "data", "field"),
    [
        (LIVE, {"etag": "XYZ"}, "etag"),
        (LIVE, {"etag": "ABCDEF"}, "etag"),  # lower-case hex only
        (LIVE, {"etag": "a" * 65}, "etag"),
        (LIVE, {"etag": ""}, "etag"),
        (LIVE, {"etag": 12}, "etag"),
        (LIVE, {"since": "x"}, "since"),
        (TIMELINE, {"minutes": 4}, "minutes"),
        (TIMELINE, {"minutes": 181}, "minutes"),
        (TIMELINE, {"minutes": "60"}, "minutes"),
        (TIMELINE, {"minutes": 60.5}, "minutes"),
    ],
)
def test_bad_input_names_the_field(
    caller: Caller, name: str, data: dict[str, Any], field: str
) -> None:
    error = caller.call(name, data, role="ops").error
    assert (error["status"], error["details"]["field"]) == ("INVALID_ARGUMENT", field)


def test_a_poll_every_5_s_is_never_refused(caller: Caller) -> None:
    """A minute of one operator's polling (12 calls), twice over, with the timeline."""
    for _ in range(24):
        assert caller.call(LIVE, {}, role="ops").status == 200
    assert caller.call(TIMELINE, {}, role="ops").status == 200


# --------------------------------------------------------------- live console


def test_etag_unchanged_is_not_modified_and_each_change_is_a_new_etag(
    caller: Caller, backends: Backends
) -> None:
    db = get_db()
    first = live(caller)
    assert first["notModified"] is False and re.fullmatch(r"[0-9a-f]{32}", first["etag"])
    assert (first["stale"], first["staleAgeSec"]) == (False, None)
    assert (first["alerts"], first["services"], first["deployments"], first["activity"]) == (
        [], [], [], []
    )  # fmt: skip
    assert first["ddos"] == {
        "modeActive": False, "modeUntil": None, "modeReason": None, "blocks": [], "allowlist": []
    }  # fmt: skip
    same = live(caller, first["etag"])
    assert (same["notModified"], same["etag"]) == (True, first["etag"])
    assert [same[part] for part in PARTS] == [None] * len(PARTS)
    assert same["generatedAt"] >= first["generatedAt"]

    # a service registered
    register_service("api-gateway", IsolationState.NONE, instances=4)
    view = changed(caller, first["etag"])
    assert [(s["name"], s["instances"]) for s in view["services"]] == [("api-gateway", 4)]

    # a new alert
    alert_id = AlertStore(db).raise_alert(spec("t:1", "chat isolated"), datetime.now(UTC))
    view = changed(caller, view["etag"])
    assert [(a["id"], a["status"], a["title"]) for a in view["alerts"]] == [
        (alert_id, "open", "chat isolated")
    ]

    # acknowledged, by an operator whose token has an email
    ack = caller.call(
        "pack391_acknowledgeAlert",
        {"alertId": alert_id, "note": "on it"},
        role="ops",
        uid="olga",
        claims=OLGA,
    )
    assert ack.result["changed"] is True
    view = changed(caller, view["etag"])
    assert [(a["status"], a["acknowledgedBy"]) for a in view["alerts"]] == [
        ("acknowledged", "olga")
    ]
    (entry,) = view["activity"]
    assert {k: v for k, v in entry.items() if k not in ("id", "at", "requestId")} == {
        "actorUid": "olga",
        "actorEmail": "olga@example.com",
        "action": "ops.alert.acknowledge",
        "target": f"{collections.ALERTS}/{alert_id}",
        "reason": "on it",
    }
    assert entry["id"] and entry["requestId"] and entry["at"]

    # DDoS mode on (Redis)
    until = (datetime.now(UTC) + timedelta(minutes=15)).replace(microsecond=0)
    ddos_mode_on(backends.redis_url, until, "traffic spike")
    view = changed(caller, view["etag"])
    assert (view["ddos"]["modeActive"], view["ddos"]["modeReason"]) == (True, "traffic spike")
    assert datetime.fromisoformat(view["ddos"]["modeUntil"]) == until

    # a block (the mirror the detector writes beside the Redis key)
    now = datetime.now(UTC)
    block = BlockDoc(
        scope=BlockScope.IP, subject="203.0.113.9", kind=BlockKind.DDOS, reason="flood",
        blocked_at=now, expires_at=now + timedelta(minutes=15),
    )  # fmt: skip
    db.collection(collections.BLOCKS).document("ddos_ip_203.0.113.9").set(block.to_doc())
    view = changed(caller, view["etag"])
    (shown,) = view["ddos"]["blocks"]
    assert {k: shown[k] for k in ("key", "scope", "subject", "kind", "reason")} == {
        "key": "ddos:ip:203.0.113.9",
        "scope": "ip",
        "subject": "203.0.113.9",
        "kind": "ddos",
        "reason": "flood",
    }
    assert datetime.fromisoformat(shown["until"]) == block.expires_at

    # lifted with what the console lists as its subject, by an admin with an email
    lift = {"scope": shown["scope"], "subject": shown["subject"], "reason": "false positive"}
    assert (
        caller.call("pack391_liftBlock", lift, uid="adam", claims={"email": "adam@x.io"}).status
        == 200
    )
    view = changed(caller, view["etag"])
    assert view["ddos"]["blocks"] == []
    assert [(e["action"], e["actorEmail"]) for e in view["activity"]] == [
        ("ddos.lift.ip", "adam@x.io"),
        ("ops.alert.acknowledge", "olga@example.com"),
    ]

    # an allowlist entry (a caller whose token has no email: none recorded)
    add = {"action": "add", "entry": "198.51.100.0/24", "reason": "office"}
    assert caller.call("pack391_setAllowlist", add, uid="adam").status == 200
    view = changed(caller, view["etag"])
    (allowed,) = view["ddos"]["allowlist"]
    assert (allowed["entry"], allowed["reason"], allowed["addedBy"]) == (
        "198.51.100.0/24", "office", "adam"
    )  # fmt: skip
    assert (view["activity"][0]["action"], view["activity"][0]["actorEmail"]) == (
        "ddos.allowlist.add", None
    )  # fmt: skip

    # a deployment
    db.collection(collections.DEPLOYMENTS).document("dep-1").set(
        {"version": "v42", "environment": "production", "phase": "paused", "trafficPercent": 25,
         "createdAt": now, "updatedAt": now, "analyses": [{"large": "never listed"}]}
    )  # fmt: skip
    view = changed(caller, view["etag"])
    (dep,) = view["deployments"]
    assert {k: v for k, v in dep.items() if k not in ("createdAt", "updatedAt")} == {
        "id": "dep-1", "version": "v42", "environment": "production", "phase": "paused",
        "status": "active", "trafficPercent": 25, "paused": True,
    }  # fmt: skip
    assert datetime.fromisoformat(dep["updatedAt"]) == now


def test_activity_is_the_newest_25_audit_entries(caller: Caller) -> None:
    db = get_db()
    t0 = datetime.now(UTC) - timedelta(hours=1)
    batch = db.batch()
    for i in range(30):
        entry = AuditEntry(
            actor_uid=f"u{i}", action=f"a.{i}", target="t", before={"big": "x" * 100}, after=None,
            request_id=f"r{i}", at=t0 + timedelta(seconds=i),
        )  # fmt: skip
        batch.set(db.collection(collections.AUDIT_LOG).document(f"e{i:02d}"), entry.to_doc())
    batch.commit()
    activity = live(caller)["activity"]
    assert [e["id"] for e in activity] == [f"e{i:02d}" for i in range(29, 4, -1)]
    assert datetime.fromisoformat(activity[0].pop("at")) == t0 + timedelta(seconds=29)
    assert activity[0] == {
        "id": "e29", "actorUid": "u29", "actorEmail": None, "action": "a.29", "target": "t",
        "reason": None, "requestId": "r29",
    }  # fmt: skip


# -------------------------------------------------------------------- timeline


def test_timeline_shows_the_last_hour_of_every_lane_in_order(caller: Caller) -> None:
    db = get_db()
    now = datetime.now(UTC)

    def ago(minutes: float) -> datetime:
        return now - timedelta(minutes=minutes)

    store = AlertStore(db)
    alert_id = store.raise_alert(spec("t:new", "chat isolated"), ago(40))
    store.raise_alert(spec("t:old", "an old alert"), ago(150))
    store.resolve("t:old", ago(90))
    for minutes, name in ((30, "new"), (130, "old")):
        detection = DetectionDoc(
            minute=ago(minutes), kind=DetectionKind.TRAFFIC_SPIKE, severity=Severity.CRITICAL,
            evidence={}, mitigated=True, blocked_sources=["203.0.113.9"], detected_at=ago(minutes),
        )  # fmt: skip
        db.collection(collections.DDOS_DETECTIONS).document(name).set(detection.to_doc())
    history = [
        {"at": ago(120), "event": "started", "phase": "pending", "trafficPercent": 0},
        {"at": ago(20), "event": "step", "phase": "progressing", "trafficPercent": 25},
    ]
    db.collection(collections.DEPLOYMENTS).document("dep-1").set(
        {"deploymentId": "dep-1", "version": "v42", "environment": "production",
         "phase": "progressing", "history": history, "createdAt": ago(120), "updatedAt": ago(20),
         "analyses": [{"large": "not read"}]}
    )  # fmt: skip
    db.collection(collections.DEPLOYMENTS).document("dep-0").set(
        {"deploymentId": "dep-0", "version": "v41", "environment": "production",
         "phase": "succeeded", "history": [{**history[0], "at": ago(170)}],
         "createdAt": ago(170), "updatedAt": ago(170)}
    )  # fmt: skip
    for minutes, action in ((10, ScaleAction.SCALE_UP), (5, ScaleAction.NONE),
                            (140, ScaleAction.SCALE_DOWN)):  # fmt: skip
        decision = DecisionDoc(
            service_id="api-gateway", at=ago(minutes), source="guard", dry_run=False,
            current_instances=3, desired_instances=6 if action is ScaleAction.SCALE_UP else 3,
            action=action, reasons=["cpu 91% over 70%"], acted=True, run_id="r",
        )  # fmt: skip
        db.collection(collections.SCALING_DECISIONS).document(f"d{minutes}").set(decision.to_doc())
    old_entry = AuditEntry(
        actor_uid="olga", action="ops.alert.acknowledge", target="x", before=None, after=None,
        request_id="old", at=ago(100),
    )  # fmt: skip
    db.collection(collections.AUDIT_LOG).document("old").set(old_entry.to_doc())
    ack = caller.call(
        "pack391_acknowledgeAlert", {"alertId": alert_id}, role="ops", uid="olga", claims=OLGA
    )
    assert ack.status == 200

    view = caller.call(TIMELINE, {"minutes": 60}, role="ops").result
    span = datetime.fromisoformat(view["to"]) - datetime.fromisoformat(view["from"])
    assert span == timedelta(minutes=60)
    assert datetime.fromisoformat(view["to"]) >= now
    assert [(e["lane"], e["title"]) for e in view["events"]] == [
        ("alert", "chat isolated"),
        ("mitigation", "DDoS: traffic spike"),
        ("deployment", "v42 (production): step"),
        ("scale", "api-gateway: scale up 3 → 6"),
        ("action", "ops.alert.acknowledge"),
    ]
    ats = [e["at"] for e in view["events"]]
    assert ats == sorted(ats, key=datetime.fromisoformat)
    alert, mitigation, deployment, scale, action = view["events"]
    assert datetime.fromisoformat(alert["at"]) == ago(40) and alert["endAt"] is None
    assert alert["severity"] == "high" and "acknowledged by olga" in alert["detail"]
    assert mitigation["detail"] == "mitigated; 1 sources blocked"
    assert deployment["detail"] == "dep-1 · progressing · 25% traffic"
    assert action["detail"] == f"olga@example.com · {collections.ALERTS}/{alert_id}"
    assert scale["detail"] == "guard · cpu 91% over 70%"

    # the default window is an hour; three hours take the older records in
    default = caller.call(TIMELINE, {}, role="ops").result
    assert len(default["events"]) == 5
    wide = caller.call(TIMELINE, {"minutes": 180}, role="ops").result
    assert len(wide["events"]) == 5 + 6  # old alert, detection, 2 history entries, scale, action


# ------------------------------------------------------------ Firestore stalls


@pytest.mark.usefixtures("short_budget")
def test_both_answer_stale_while_firestore_pauses(
    caller: Caller, backends: Backends, firestore_paused: Pauser
) -> None:
    register_service("api-gateway", IsolationState.NONE)
    AlertStore(get_db()).raise_alert(spec("t:s", "chat isolated"), datetime.now(UTC))
    warm = live(caller)
    warm_timeline = caller.call(TIMELINE, {"minutes": 60}, role="ops").result
    with firestore_paused():
        same, took_same = timed(caller, LIVE, {"etag": warm["etag"]}, role="ops")
        ddos_mode_on(backends.redis_url, datetime.now(UTC) + timedelta(minutes=5), "flood")
        full, took_full = timed(caller, LIVE, {}, role="ops")
        timeline, took_timeline = timed(caller, TIMELINE, {"minutes": 60}, role="ops")
        other, took_other = timed(caller, TIMELINE, {"minutes": 30}, role="ops")
    for took in (took_same, took_full, took_timeline):
        assert took < STALE_READ_WAIT_SEC + SLACK_SEC, f"answered after {took:.2f}s"
    assert (same.result["notModified"], same.result["stale"]) == (True, True)
    assert same.result["staleAgeSec"] > 0
    # the Firestore parts are the copy; DDoS mode (Redis) is read now: a new etag
    result = full.result
    assert result["stale"] is True and result["etag"] != warm["etag"]
    assert result["services"] == warm["services"] and result["activity"] == warm["activity"]
    assert (result["ddos"]["modeActive"], result["ddos"]["modeReason"]) == (True, "flood")
    assert timeline.result["stale"] is True
    assert [e["title"] for e in warm_timeline["events"]] == ["chat isolated"]
    assert timeline.result["events"] == warm_timeline["events"]
    assert_unavailable(other, took_other)  # a window never read: no copy
    started = time.monotonic()
    fresh = live(caller)
    assert time.monotonic() - started < 2 * STALE_READ_WAIT_SEC
    assert (fresh["stale"], fresh["staleAgeSec"]) == (False, None)


# ------------------------------------------------------------- who acted


@pytest.mark.parametrize(
    ("claims", "email"),
    [
        ({"ops": True, "email": "olga@example.com"}, "olga@example.com"),
        ({"ops": True}, None),
        ({"ops": True, "email": ["not", "a", "string"]}, None),
    ],
)
def test_a_calls_change_carries_the_callers_email(
    claims: dict[str, Any], email: str | None
) -> None:
    ctx = CallContext(auth.Caller("olga", claims), "req-1", NOW_, flask.Request({}))
    change = ctx.change("ops.alert.acknowledge", "on it")
    assert change == Change("olga", "ops.alert.acknowledge", "on it", "req-1", NOW_, email)
