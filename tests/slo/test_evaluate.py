"""The SLO evaluator end to end: calls recorded by the real edges into a real
redis-server, scale-guard decisions and the state in the Firestore emulator, alerts
through the one alert model, the actions' snapshot where the hot paths read it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis

from functions.slo import policy
from functions.slo.service import SloService
from functions.slo.store import ServiceMinutes, SloStateStore
from shared import collections
from shared.alerts.store import AlertStore
from shared.firestore import get_db
from shared.models.slo import ActionMode, BurnLevel, SloAction, SloStateDoc
from shared.slo.actions import read_actions
from shared.slo.objectives import Objective
from shared.slo.recorder import SliRecorder, default_recorder, minute_key, read_minutes
from tests.conftest import Backends, Caller

NOW = datetime(2026, 12, 7, 12, 0, 20, tzinfo=UTC)
MINUTE = policy.evaluated_minute(NOW)
START = policy.minute_start(MINUTE)


@pytest.fixture
def client(backends: Backends) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(backends.redis_url)
    yield c
    c.close()


def _service(
    client: redis.Redis,
    modes: dict[SloAction, ActionMode] | None = None,
    overrides: dict[str, Objective] | None = None,
) -> SloService:
    db = get_db()
    chosen = modes or dict.fromkeys(SloAction, ActionMode.ENFORCE)
    return SloService(
        SloStateStore(db),
        ServiceMinutes(db, lambda: overrides or {}),
        client,
        AlertStore(db),
        lambda: overrides or {},
        lambda: chosen,
    )


def _record(
    client: redis.Redis,
    minutes_back: range,
    per_minute: int,
    bad: int,
    scopes: tuple[str, ...] = ("class:ai", "callable:ai_message"),
) -> None:
    """``per_minute`` calls in each minute ``minutes_back`` before the evaluated one,
    ``bad`` of them failed, through a recorder on the test's Redis."""
    recorder = SliRecorder(lambda: client, dict, flush_every_sec=3600)
    for back in minutes_back:
        at = START - timedelta(minutes=back) + timedelta(seconds=10)
        for i in range(per_minute):
            recorder.record(at, scopes, i < bad, 20.0)
    recorder.flush()


def _decision(
    service_id: str, at: datetime, requests: float, error_pct: float, p95: float
) -> dict[str, Any]:
    return {
        "serviceId": service_id,
        "at": at + timedelta(seconds=5),
        "source": "guard",
        "dryRun": False,
        "currentInstances": 2,
        "desiredInstances": 2,
        "action": "hold",
        "reasons": [],
        "metrics": {
            "at": at,
            "source": "monitoring",
            "requestsPerMin": requests,
            "errorRatePct": error_pct,
            "p95LatencyMs": p95,
        },
        "runId": "r1",
    }


def test_a_burning_platform_pages_freezes_pauses_and_sheds(client: redis.Redis) -> None:
    _record(client, range(0, 60), per_minute=20, bad=4)  # 20 % failed: 20x a 99 % objective
    db = get_db()
    db.collection(collections.SCALING_DECISIONS).add(_decision("chat", START, 600, 0.0, 120.0))
    db.collection(collections.SCALING_DECISIONS).add(
        _decision("chat", START - timedelta(minutes=1), 9, 0, 0)
    )

    report = _service(client).evaluate(NOW)

    assert report.evaluated
    assert report.levels["platform"] == "page"
    assert report.levels["class:ai"] == "page"
    assert report.levels["service:chat"] == "none"
    assert "callable:ai_message" not in report.levels  # recorded, judged only with an objective
    # the minute, for loadtest --from-metrics
    minute_doc = _d(db.collection(collections.SLI_MINUTES).document(policy.minute_id(MINUTE)).get())
    assert minute_doc["callables"]["ai_message"] == {"n": 20, "bad": 4, "slow": 0}
    assert minute_doc["services"]["chat"] == {"n": 600, "bad": 0, "slow": 0}
    assert minute_doc["at"] == START
    # the state and its actions, in Firestore and in Redis
    state: SloStateDoc | None = SloStateDoc.model_validate(
        _d(db.collection(collections.SLO_STATE).document(collections.SLO_STATE_DOC).get())
    )
    assert state is not None
    assert state.scopes["platform"].level is BurnLevel.PAGE
    assert state.scopes["platform"].availability_budget_left_pct < 0  # an hour at 20x
    snapshot = read_actions(client)
    assert snapshot is not None
    assert snapshot.enforced(SloAction.DEPLOY_FREEZE) is not None
    assert snapshot.enforced(SloAction.DEPLOY_FREEZE).scopes == ["platform"]  # type: ignore[union-attr]
    assert snapshot.enforced(SloAction.ADMISSIONS_PAUSE) is not None
    assert snapshot.enforced(SloAction.SHED).classes == ["ai"]  # type: ignore[union-attr]
    # alerts through the one model
    alerts = [_d(d) for d in db.collection(collections.ALERTS).stream()]
    keys = sorted((a["dedupKey"], a["severity"]) for a in alerts)
    assert keys == [("slo:class:ai:page", "critical"), ("slo:platform:page", "critical")]
    # every automatic action audited by the system
    audit = sorted(_d(d)["action"] for d in db.collection(collections.AUDIT_LOG).stream())
    assert audit == [
        "slo.admissions_pause.started",
        "slo.deploy_freeze.started",
        "slo.shed.started",
    ]

    # the same minute again (Cloud Scheduler's retry): nothing changes, nothing doubles
    again = _service(client).evaluate(NOW + timedelta(seconds=10))
    assert not again.evaluated
    assert len(list(db.collection(collections.AUDIT_LOG).stream())) == 3
    assert read_minutes(client, [MINUTE])[MINUTE]["service:chat"] == {"n": 600, "bad": 0, "slow": 0}

    # the burn stops. The 5 min window is clean of it at once: the page ends and the
    # shedding steps down; the 30 min window still holds it: a ticket, the freeze and the
    # pause go on, the platform's alert goes down to medium
    for step in range(1, 6):
        _record(client, range(-step, -step + 1), per_minute=40, bad=0)
        _service(client).evaluate(NOW + timedelta(minutes=step))
    state = _service(client).status()
    assert state is not None
    assert state.scopes["platform"].level is BurnLevel.TICKET
    assert not state.actions[SloAction.SHED].wanted
    assert state.actions[SloAction.DEPLOY_FREEZE].enforced
    assert state.actions[SloAction.ADMISSIONS_PAUSE].enforced
    assert _alert(db, "slo:platform:page")["status"] == "resolved"
    alert = _alert(db, "slo:platform:ticket")
    assert (alert["severity"], alert["status"]) == ("medium", "open")
    # once the last 30 minutes are clean, the ticket ends too: resolved, nothing in force
    for step in range(6, 32):
        _record(client, range(-step, -step + 1), per_minute=40, bad=0)
        _service(client).evaluate(NOW + timedelta(minutes=step))
    state = _service(client).status()
    assert state is not None
    assert state.scopes["platform"].level is BurnLevel.NONE
    assert not any(a.wanted for a in state.actions.values())
    assert _alert(db, "slo:platform:ticket")["status"] == "resolved"
    snapshot = read_actions(client)
    assert snapshot is not None
    assert all(snapshot.enforced(a) is None for a in SloAction)
    ended = sorted(
        _d(d)["action"]
        for d in db.collection(collections.AUDIT_LOG).stream()
        if _d(d)["action"].endswith(".ended")
    )
    assert ended == ["slo.admissions_pause.ended", "slo.deploy_freeze.ended", "slo.shed.ended"]


def _d(snap: Any) -> dict[str, Any]:
    """A document's data (it exists)."""
    data = snap.to_dict()
    assert data is not None, snap.reference.path
    return cast(dict[str, Any], data)


def _alert(db: Any, key: str) -> dict[str, Any]:
    found = [_d(d) for d in db.collection(collections.ALERTS).stream()]
    mine = [a for a in found if a["dedupKey"] == key]
    assert mine, f"no alert {key}: {[a['dedupKey'] for a in found]}"
    return sorted(mine, key=lambda a: a["openedAt"])[-1]


def test_shadow_mode_decides_counts_and_never_acts(client: redis.Redis) -> None:
    _record(client, range(0, 60), per_minute=20, bad=4)
    shadow = dict.fromkeys(SloAction, ActionMode.SHADOW)
    _service(client, shadow).evaluate(NOW)
    snapshot = read_actions(client)
    assert snapshot is not None
    for action in SloAction:
        assert snapshot.enforced(action) is None
        assert snapshot.shadowed(action) is not None
    audit = sorted(_d(d)["action"] for d in get_db().collection(collections.AUDIT_LOG).stream())
    assert audit == [
        "slo.admissions_pause.started",
        "slo.deploy_freeze.started",
        "slo.shed.started",
    ]


def test_a_service_burns_on_its_own_metrics(client: redis.Redis) -> None:
    db = get_db()
    for back in range(0, 60):
        at = START - timedelta(minutes=back)
        db.collection(collections.SCALING_DECISIONS).add(
            _decision("payments", at, 100, 10.0, 900.0)
        )
    svc = _service(client)
    for back in range(59, -1, -1):  # one run a minute, as Cloud Scheduler runs it
        svc.evaluate(NOW - timedelta(minutes=back))
    state = svc.status()
    assert state is not None
    status = state.scopes["service:payments"]
    assert status.level is BurnLevel.PAGE
    assert status.availability_burn["1h"] == pytest.approx(10.0)  # 10 % of a 1 % budget
    assert status.latency_burn["1h"] == pytest.approx(20.0)  # every minute over 400 ms
    assert status.why.startswith("latency")
    assert state.actions[SloAction.DEPLOY_FREEZE].scopes == ["service:payments"]
    assert not state.actions[SloAction.ADMISSIONS_PAUSE].wanted  # the platform is fine


def test_real_edges_record_their_calls(caller: Caller, client: redis.Redis) -> None:
    assert caller.call("pack391_getSloStatus", {}, role="ops").result == {"state": None}
    denied = caller.call("pack391_getSloStatus", {}, role="user")
    assert denied.error["status"] == "PERMISSION_DENIED"
    bad = caller.call(
        "pack391_liftSloAction", {"action": "nope", "minutes": 5, "reason": "x y z"}, role="ops"
    )
    assert bad.error["status"] == "INVALID_ARGUMENT"
    assert "action" in bad.error["message"]
    too_long = caller.call(
        "pack391_liftSloAction",
        {"action": "shed", "minutes": 100000, "reason": "x y z"},
        role="ops",
    )
    assert too_long.error["status"] == "INVALID_ARGUMENT"
    assert "minutes" in too_long.error["message"]
    before_any = caller.call(
        "pack391_liftSloAction", {"action": "shed", "minutes": 5, "reason": "x y z"}, role="ops"
    )
    assert before_any.error["status"] == "FAILED_PRECONDITION"
    default_recorder().flush()
    minute = int(datetime.now(UTC).timestamp()) // 60
    got = read_minutes(client, [minute - 1, minute])
    counts: dict[str, int] = {}
    for per in got.values():
        for scope, c in per.items():
            counts[scope] = counts.get(scope, 0) + c["n"]
    assert counts["callable:pack391_getSloStatus"] == 2
    assert counts["callable:pack391_liftSloAction"] == 3
    assert counts["class:staff"] == 5  # ops functions count as the staff class
    # caller errors are good events for the service: nothing failed by the system
    bad_events = sum(c["bad"] for per in got.values() for c in per.values())
    assert bad_events == 0
    assert client.ttl(minute_key(minute)) > 6 * 3600


def test_a_lift_holds_an_action_off_at_once_and_is_audited(
    caller: Caller, client: redis.Redis
) -> None:
    _record(client, range(0, 60), per_minute=20, bad=4)
    _service(client).evaluate(NOW)
    lifted = caller.call(
        "pack391_liftSloAction",
        {"action": "deploy_freeze", "minutes": 30, "reason": "hotfix for the burn"},
        role="ops",
    )
    state = lifted.result["state"]
    assert (state["wanted"], state["enforced"]) == (True, False)
    assert lifted.result["lift"]["reason"] == "hotfix for the burn"
    snapshot = read_actions(client)
    assert snapshot is not None
    assert snapshot.enforced(SloAction.DEPLOY_FREEZE) is None
    assert snapshot.enforced(SloAction.ADMISSIONS_PAUSE) is not None  # only the one lifted
    entries = [_d(d) for d in get_db().collection(collections.AUDIT_LOG).stream()]
    lift_entries = [e for e in entries if e["action"] == "slo.deploy_freeze.lifted"]
    assert len(lift_entries) == 1
    assert lift_entries[0]["actorUid"] == "ops-1"
    # the next minute's run keeps the lift
    _record(client, range(-1, 0), per_minute=20, bad=4)
    _service(client).evaluate(NOW + timedelta(minutes=1))
    snapshot = read_actions(client)
    assert snapshot is not None and snapshot.enforced(SloAction.DEPLOY_FREEZE) is None
    # removing the lift (minutes 0) puts the freeze back at once
    caller.call(
        "pack391_liftSloAction",
        {"action": "deploy_freeze", "minutes": 0, "reason": "hotfix is out"},
        role="ops",
    )
    snapshot = read_actions(client)
    assert snapshot is not None and snapshot.enforced(SloAction.DEPLOY_FREEZE) is not None
    status = caller.call("pack391_getSloStatus", {}, role="ops").result["state"]
    assert status["scopes"]["platform"]["level"] == "page"
    assert "days" not in status


def test_the_scheduled_edge_runs(caller: Caller) -> None:
    assert caller.trigger("pack391_evaluateSlos") == 200
    state = SloStateStore(get_db()).get()
    assert state is not None
    assert state.scopes["platform"].level is BurnLevel.NONE
