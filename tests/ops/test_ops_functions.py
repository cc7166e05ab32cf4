"""The ops functions against the Firestore emulator and redis-server, the webhook a real
local HTTP endpoint; the clock is injected through the service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.ops.panels import RecentDocsPanel
from functions.ops.policy import flatten
from functions.ops.wiring import ops_service
from functions.scaling.policy import isolation_alert
from shared import collections, thresholds
from shared import redis as shared_redis
from shared.alerts.policy import AlertSpec
from shared.alerts.store import AlertStore
from shared.audit import Change
from shared.firestore import get_db
from shared.models.alerts import AlertSource, Severity
from shared.models.ops import LiveMetrics
from shared.models.scaling import AlertKind, IsolationState
from stack.ops_seed import SeedSpec, expected, seed
from stack.platform.procs import free_port
from tests.conftest import Backends, Caller
from tests.fakes.http_api import FakeHttpApi
from tests.ops.helpers import ddos_mode_on, docs, register_service

CALLABLES = ["pack391_getLiveMetrics", "pack391_getOpsDashboard"]
T0 = datetime.now(UTC).replace(second=10, microsecond=0)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHttpApi]:
    with FakeHttpApi() as api:
        api.reply("POST", "/hook", 200, {"ok": True})
        monkeypatch.setenv("PACK391_OPS_WEBHOOK_URL", f"{api.url}/hook")
        yield api


def trigger(caller: Caller, name: str) -> int:
    response = caller.app.test_client().post(
        caller.url(name),
        data=b"{}",
        headers={"Content-Type": "application/json", "X-CloudScheduler": "true"},
    )
    return response.status_code


# ------------------------------------------------------------------- auth


@pytest.mark.parametrize("name", [*CALLABLES, "pack391_getHistoricalMetrics"])
def test_roles(caller: Caller, name: str) -> None:
    data = {"range": "1h"} if name == "pack391_getHistoricalMetrics" else {}
    assert caller.call(name, data, role=None).error["status"] == "UNAUTHENTICATED"
    assert caller.call(name, data, role="user").error["status"] == "PERMISSION_DENIED"
    assert caller.call(name, data, role="ops").status == 200
    assert caller.call(name, data, role="admin").status == 200


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"range": "2h"}, "range"),
        ({}, "range"),
        ({"range": "1h", "fields": "activeUsers"}, "fields"),
        ({"range": "1h", "fields": []}, "fields"),
        ({"range": "1h", "extra": 1}, "extra"),
    ],
)
def test_history_bad_input_names_the_field(
    caller: Caller, data: dict[str, object], field: str
) -> None:
    error = caller.call("pack391_getHistoricalMetrics", data, role="ops").error
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"]["field"] == field


# ---------------------------------------------------------------- metrics


def test_live_metrics_match_seeded_counts(caller: Caller, backends: Backends) -> None:
    spec = SeedSpec()
    seed(get_db(), spec, datetime.now(UTC))
    before = caller.call("pack391_getLiveMetrics", role="ops").result
    assert before == {"at": None, "ageSec": None, "metrics": None}
    assert trigger(caller, "pack391_updateLiveMetrics") == 200
    live = caller.call("pack391_getLiveMetrics", role="ops").result
    assert 0 <= live["ageSec"] < 30
    values = flatten(LiveMetrics.model_validate(live["metrics"]))
    want = expected(spec, thresholds.TOKEN_VELOCITY_WINDOW_MIN)
    assert {k: values[k] for k in want} == want
    assert live["metrics"]["panicActivations"] == {"last24h": 0, "active": 0}
    assert live["metrics"]["systemHealth"] == {
        "status": "healthy",
        "services": [{"name": "firestore", "status": "up"}, {"name": "redis", "status": "up"}],
    }
    history = docs(collections.OPS_METRICS_HISTORY)
    assert len(history) == 1
    (point,) = history.values()
    assert point["values"]["payoutQueue.failed"] == 11
    assert point["expireAt"] - point["at"] == timedelta(days=30)


def test_panic_and_scaling_services_feed_the_metrics(backends: Backends) -> None:
    db = get_db()
    for i, (granted, expires) in enumerate(
        [(at(-2), at(3)), (at(-60 * 5), at(-60 * 5 + 5)), (at(-60 * 30), at(-60 * 30 + 5))]
    ):
        db.collection(collections.PANIC_PASSES).document(f"p{i}").set(
            {"uid": f"u{i}", "grantedAt": granted, "expiresAt": expires}
        )
    register_service("api-gateway", IsolationState.NONE)
    register_service("chat-service", IsolationState.HALF_OPEN)
    metrics = ops_service().compute(at(0))
    assert metrics.panic_activations.model_dump() == {"last24h": 2, "active": 1}
    assert metrics.system_health.status == "degraded"
    assert [(s.name, s.status.value) for s in metrics.system_health.services][2:] == [
        ("api-gateway", "up"),
        ("chat-service", "degraded"),
    ]
    register_service("wallet-service", IsolationState.OPEN)
    assert ops_service().compute(at(0)).system_health.status == "critical"


# ----------------------------------------------------------------- alerts


def test_alerts_fire_once_notify_once_and_resolve(backends: Backends, webhook: FakeHttpApi) -> None:
    seed(get_db(), SeedSpec(), at(0))  # 6 critical fraud (> 5), 11 failed payouts (> 10)
    service = ops_service()
    first = service.update(at(0), "run-1")
    assert first.actions == {
        "critical_fraud": "open",
        "failed_payouts": "open",
        "urgent_support": "none",
        "service_down": "none",
    }
    assert first.notifications_sent == 2
    again = service.update(at(0) + timedelta(seconds=20), "run-1b")  # overlapping run
    assert set(again.actions.values()) == {"none"}
    second = service.update(at(1), "run-2")
    assert second.actions["failed_payouts"] == "keep"
    alerts = {k: v for k, v in docs(collections.ALERTS).items() if v["source"] == "ops"}
    assert sorted(alerts) == [
        f"ops_critical_fraud_{at(0):%Y%m%dT%H%MZ}",
        f"ops_failed_payouts_{at(0):%Y%m%dT%H%MZ}",
    ]
    posts = webhook.received("POST", "/hook")
    assert len(posts) == 2
    assert {p.body["alert"]["rule"] for p in posts} == {"critical_fraud", "failed_payouts"}
    assert all(p.body["text"].startswith(":rotating_light:") for p in posts)

    # Failed payouts are retried and succeed: the condition clears.
    for snap in (
        get_db()
        .collection(collections.APP_PAYOUTS)
        .where(filter=FieldFilter("status", "==", "failed"))
        .stream()
    ):
        snap.reference.update({"status": "paid"})
    third = service.update(at(3), "run-3")
    assert third.actions["failed_payouts"] == "resolve"
    payouts_alert = docs(collections.ALERTS)[f"ops_failed_payouts_{at(0):%Y%m%dT%H%MZ}"]
    assert payouts_alert["status"] == "resolved"
    assert payouts_alert["durationSec"] == 180.0
    assert payouts_alert["notifyResolve"]["state"] == "sent"
    resolved_posts = [p for p in webhook.received("POST") if p.body["alert"]["event"] == "resolved"]
    assert len(resolved_posts) == 1
    service.update(at(4), "run-4")
    assert len(webhook.received("POST")) == 3  # nothing sent twice


def test_for_minutes_holds_back_flapping(
    backends: Backends, webhook: FakeHttpApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK391_OPS_ALERT_FOR_MINUTES", "3")
    register_service("api-gateway", IsolationState.OPEN)
    seed(get_db(), SeedSpec(), at(0))
    service = ops_service()
    assert service.update(at(0), "r0").actions["service_down"] == "open"  # no for
    assert service.update(at(0), "r0").actions["failed_payouts"] == "none"
    assert service.update(at(1), "r1").actions["failed_payouts"] == "none"
    assert service.update(at(2), "r2").actions["failed_payouts"] == "open"


def test_webhook_retries_then_later_run_delivers_once(
    backends: Backends, webhook: FakeHttpApi
) -> None:
    webhook.reply("POST", "/hook", 503, {"error": "busy"})
    register_service("api-gateway", IsolationState.OPEN)
    service = ops_service()
    service.update(at(0), "r0")
    (alert_id,) = [k for k, v in docs(collections.ALERTS).items() if v["source"] == "ops"]
    notify = docs(collections.ALERTS)[alert_id]["notifyOpen"]
    assert (notify["state"], notify["attempts"], notify["lastError"]) == ("failed", 3, "HTTP 503")
    assert len(webhook.received("POST")) == 3
    assert {p.headers["X-Pack391-Notification-Id"] for p in webhook.received()} == {
        f"{alert_id}:opened"
    }
    webhook.reply("POST", "/hook", 200, {"ok": True})
    service.update(at(1), "r1")
    service.update(at(2), "r2")
    notify = docs(collections.ALERTS)[alert_id]["notifyOpen"]
    assert (notify["state"], notify["attempts"]) == ("sent", 4)
    assert len(webhook.received("POST")) == 4


def test_acknowledge_is_an_audited_ops_action(caller: Caller, backends: Backends) -> None:
    register_service("api-gateway", IsolationState.OPEN)
    ops_service().update(at(0), "r0")
    (alert_id,) = [k for k, v in docs(collections.ALERTS).items() if v["source"] == "ops"]
    assert docs(collections.ALERTS)[alert_id]["notifyOpen"]["state"] == "disabled"
    data = {"alertId": alert_id, "note": "on it"}
    assert caller.call("pack391_acknowledgeAlert", data, role=None).error["status"] == (
        "UNAUTHENTICATED"
    )
    assert caller.call("pack391_acknowledgeAlert", data, role="user").error["status"] == (
        "PERMISSION_DENIED"
    )
    result = caller.call("pack391_acknowledgeAlert", data, role="ops", uid="olga").result
    assert (result["status"], result["acknowledgedBy"], result["changed"]) == (
        "acknowledged",
        "olga",
        True,
    )
    again = caller.call("pack391_acknowledgeAlert", data, role="ops", uid="olga").result
    assert again["changed"] is False
    (audit,) = docs(collections.AUDIT_LOG).values()
    assert (audit["action"], audit["actorUid"], audit["reason"]) == (
        "ops.alert.acknowledge",
        "olga",
        "on it",
    )
    assert audit["after"] == {"status": "acknowledged"}
    missing = caller.call("pack391_acknowledgeAlert", {"alertId": "nope"}, role="ops").error
    assert (missing["status"], missing["details"]["field"]) == ("NOT_FOUND", "alertId")
    bad = caller.call("pack391_acknowledgeAlert", {"alertId": "a/b"}, role="ops").error
    assert (bad["status"], bad["details"]["field"]) == ("INVALID_ARGUMENT", "alertId")
    # acknowledged stays on the dashboard until its condition clears
    dash = caller.call("pack391_getOpsDashboard", role="ops").result
    assert [(a["id"], a["status"]) for a in dash["openAlerts"]] == [(alert_id, "acknowledged")]
    register_service("api-gateway", IsolationState.NONE)
    ops_service().update(at(1), "r1")
    assert docs(collections.ALERTS)[alert_id]["status"] == "resolved"
    change = Change("olga", "ops.alert.acknowledge", None, "req", at(2))
    assert ops_service().acknowledge(alert_id, change).changed is False


# ------------------------------------------------------- history, cleanup


def test_history_downsampled_and_cleaned_up(caller: Caller, backends: Backends) -> None:
    service = ops_service()
    now = datetime.now(UTC)
    seed(get_db(), SeedSpec(active_users=2, paying_users=0), now)
    for minutes in (-3, -2, -1):
        service.update(now + timedelta(minutes=minutes), f"r{minutes}")
    old = now - timedelta(days=31)
    service.update(old, "old")
    view = service.history("1h", ["activeUsers", "payoutQueue.failed"], now)
    assert view.bucket_sec == 60
    assert [b.count for b in view.series["activeUsers"]] == [1, 1, 1]
    assert [b.avg for b in view.series["activeUsers"]] == [2.0, 2.0, 2.0]
    assert [b.max for b in view.series["payoutQueue.failed"]] == [11.0, 11.0, 11.0]
    assert set(view.series) == {"activeUsers", "payoutQueue.failed"}
    day = service.history("24h", None, now)
    assert day.bucket_sec == 300 and sum(b.count for b in day.series["activeUsers"]) == 3
    result = caller.call(
        "pack391_getHistoricalMetrics", {"range": "7d", "fields": ["activeUsers"]}, role="ops"
    ).result
    assert result["bucketSec"] == 3600 and list(result["series"]) == ["activeUsers"]
    assert sum(b["count"] for b in result["series"]["activeUsers"]) == 3
    assert len(docs(collections.OPS_METRICS_HISTORY)) == 4
    assert trigger(caller, "pack391_cleanupMetrics") == 200
    assert len(docs(collections.OPS_METRICS_HISTORY)) == 3


# -------------------------------------------------------------- dashboard


def test_dashboard_gathers_every_area(caller: Caller, backends: Backends) -> None:
    db = get_db()
    register_service("api-gateway", IsolationState.OPEN, instances=5)
    ops_service().update(datetime.now(UTC), "r0")
    store = AlertStore(db)
    for service_id in ("chat-service", "feed-service"):
        isolated = isolation_alert(service_id, AlertKind.ISOLATED, 4.0, 1.5, False)
        assert isinstance(isolated, AlertSpec)
        store.raise_alert(isolated, at(-5))
    store.apply([isolation_alert("feed-service", AlertKind.RECOVERED, 0.2, 1.5, False)], at(-4))
    # an alert written before the one alert model (no dedup key, no lifecycle) still shows
    db.collection(collections.ALERTS).document("ddos_x").set(
        {
            "source": "ddos",
            "kind": "traffic_spike",
            "severity": "critical",
            "title": "DDoS: traffic spike",
            "evidence": {},
            "status": "open",
            "openedAt": at(-1),
        }
    )
    ddos_mode_on(backends.redis_url, at(10), "traffic spike")
    caller.call(
        "pack391_updateMarketControl",
        {"country": "PL", "config": {"launchStatus": "soft_launch", "trafficLimit": 10}},
    )
    dash = caller.call("pack391_getOpsDashboard", role="ops").result
    assert dash["live"]["metrics"]["systemHealth"]["status"] == "critical"
    assert dash["services"] == [
        {
            "name": "api-gateway",
            "status": "down",
            "instances": 5,
            "isolation": "open",
            "lastAction": None,
            "lastDecisionAt": None,
        }
    ]
    sources = sorted((a["source"], a["kind"]) for a in dash["openAlerts"])
    assert sources == [("ddos", "traffic_spike"), ("ops", "service_down"), ("scaling", "isolation")]
    assert dash["ddos"]["modeActive"] is True and dash["ddos"]["modeReason"] == "traffic spike"
    assert dash["markets"][0]["country"] == "PL"
    assert dash["markets"][0]["launchStatus"] == "soft_launch"
    assert (dash["deployments"]["available"], dash["deployments"]["items"]) == (True, [])
    assert (dash["backups"]["available"], dash["backups"]["items"]) == (True, [])
    assert (dash["loadTests"]["available"], dash["loadTests"]["items"]) == (True, [])


def test_recent_docs_panel_reads_an_areas_collection(backends: Backends) -> None:
    """The reader deployments, load tests and backups get once their areas are merged."""
    db = get_db()
    for i in range(3):
        db.collection("pack391_some_area").document(f"d{i}").set(
            {"status": f"s{i}", "startedAt": at(i)}
        )
    panel = RecentDocsPanel(db, "pack391_some_area", "startedAt").read(at(5))
    assert panel.available is True
    assert [(item["id"], item["status"]) for item in panel.items] == [
        ("d2", "s2"),
        ("d1", "s1"),
        ("d0", "s0"),
    ]


def test_redis_down_shows_as_down_and_the_dashboard_still_loads(
    backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    shared_redis.reset_clients()
    try:
        service = ops_service()
        service.update(at(0), "r0")
        dash = service.dashboard(at(0))
        assert dash.live.metrics is not None
        statuses = {s.name: s.status.value for s in dash.live.metrics.system_health.services}
        assert statuses == {"firestore": "up", "redis": "down"}
        assert dash.live.metrics.system_health.status == "critical"
        assert (dash.ddos.mode_active, dash.ddos.mode_reason) == (
            False,
            "unknown: Redis is unavailable",
        )
        assert [a.kind for a in dash.open_alerts] == ["service_down"]
    finally:
        monkeypatch.undo()
        shared_redis.reset_clients()


def test_dashboard_shows_recent_deployments_and_backups(caller: Caller) -> None:
    db = get_db()
    now = datetime.now(UTC)
    db.collection(collections.DEPLOYMENTS).document("dep-1").set(
        {
            "version": "v42",
            "environment": "production",
            "phase": "progressing",
            "trafficPercent": 25,
            "createdAt": now,
            "analyses": [{"large": "not shown on the dashboard"}],
        }
    )
    db.collection(collections.BACKUPS).document("20261127T220000Z-abc").set(
        {"backend": "logical", "status": "complete", "documentCount": 12, "startedAt": now}
    )
    dash = caller.call("pack391_getOpsDashboard", role="ops").result
    (deployment,) = dash["deployments"]["items"]
    assert (deployment["id"], deployment["version"], deployment["trafficPercent"]) == (
        "dep-1",
        "v42",
        25,
    )
    assert "analyses" not in deployment
    (backup,) = dash["backups"]["items"]
    assert (backup["id"], backup["status"], backup["documentCount"]) == (
        "20261127T220000Z-abc",
        "complete",
        12,
    )


@pytest.mark.parametrize("source", list(AlertSource))
def test_acknowledge_works_for_every_areas_alert(
    caller: Caller, backends: Backends, source: AlertSource
) -> None:
    """Every area's alert can be acknowledged through the one edge; it stays on the
    dashboard (acknowledged) until its area resolves it, except the alerts that resolve on
    acknowledgement (deploy rollbacks)."""
    store = AlertStore(get_db())
    key = f"{source.value}:test:thing"
    alert_id = store.raise_alert(
        AlertSpec(
            source=source,
            kind="test",
            dedup_key=key,
            severity=Severity.HIGH,
            title=f"{source.value} trouble",
            resolve_on_acknowledge=source is AlertSource.DEPLOY,
        ),
        at(0),
    )
    result = caller.call("pack391_acknowledgeAlert", {"alertId": alert_id}, role="ops", uid="olga")
    expected = "resolved" if source is AlertSource.DEPLOY else "acknowledged"
    assert (result.result["status"], result.result["changed"]) == (expected, True)
    listed = caller.call("pack391_getOpsDashboard", role="ops").result["openAlerts"]
    if source is AlertSource.DEPLOY:
        assert listed == []
        return
    assert [(a["id"], a["source"], a["status"]) for a in listed] == [
        (alert_id, source.value, "acknowledged")
    ]
    assert store.resolve(key, at(1)) == alert_id  # its area saw the condition clear
    assert caller.call("pack391_getOpsDashboard", role="ops").result["openAlerts"] == []


def test_every_areas_alerts_are_notified_when_opened_and_resolved(
    backends: Backends, webhook: FakeHttpApi
) -> None:
    """The ops scheduled function delivers the notifications of every area's alerts."""
    store = AlertStore(get_db())  # the webhook is configured: notifications are pending
    isolated = isolation_alert("chat-service", AlertKind.ISOLATED, 4.0, 1.5, False)
    alert_id = store.apply([isolated], at(0))[0]
    service = ops_service()
    assert service.update(at(0), "r0").notifications_sent == 1
    store.apply([isolation_alert("chat-service", AlertKind.RECOVERED, 0.5, 1.5, False)], at(1))
    assert service.update(at(1), "r1").notifications_sent == 1
    posts = [p.body for p in webhook.received("POST", "/hook")]
    assert [(p["alert"]["id"], p["alert"]["source"], p["alert"]["event"]) for p in posts] == [
        (alert_id, "scaling", "opened"),
        (alert_id, "scaling", "resolved"),
    ]
    assert posts[1]["text"].startswith(":white_check_mark: [pack391 scaling] RESOLVED")
    assert service.update(at(2), "r2").notifications_sent == 0  # nothing sent twice
