"""The scaling functions through the callable protocol, against the Firestore emulator and
Redis, driven by pushed metrics; the local scaler calls a real HTTP resize hook."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import pytest
import redis
import requests
from google.cloud import firestore
from redis.backoff import NoBackoff
from redis.retry import Retry

from functions.scaling.api import ServiceIsolated, ensure_available, isolation_state
from functions.scaling.wiring import scaling_service
from shared import collections
from shared.firestore import get_db
from shared.models.scaling import IsolationState
from stack.platform.scheduler import scheduler_headers
from tests.conftest import Backends, Caller
from tests.fakes.http_api import FakeHttpApi

INIT = "pack391_initScaling"
HEALTH = "pack391_serviceHealthCheck"
MANUAL = "pack391_manualScale"
REPORT = "pack391_reportServiceMetrics"
GUARD = "pack391_scaleGuard"


@pytest.fixture
def hook() -> Iterator[FakeHttpApi]:
    """A local service: a resize hook and a health URL."""
    with FakeHttpApi() as api:
        api.reply("POST", "/resize", 200, {"ok": True})
        api.reply("GET", "/health", 200, {"status": "ok"})
        yield api


def init(caller: Caller, **data: Any) -> Any:
    return caller.call(INIT, data).result


def report(caller: Caller, **data: Any) -> Any:
    return caller.call(REPORT, data, role="ops").result


def run_guard(app: flask.Flask, project: str, at: datetime) -> int:
    response = app.test_client().post(
        f"/{project}/us-central1/{GUARD}",
        data=b"{}",
        headers=scheduler_headers(GUARD, "us-central1", at),
    )
    return response.status_code


def next_minute() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)


def decisions(db: firestore.Client, service_id: str) -> list[dict[str, Any]]:
    query = db.collection(collections.SCALING_DECISIONS).where(
        filter=firestore.FieldFilter("serviceId", "==", service_id)
    )
    return sorted((d.to_dict() or {} for d in query.stream()), key=lambda d: d["at"])


def service_doc(service_id: str) -> dict[str, Any]:
    return (
        get_db().collection(collections.SCALING_SERVICES).document(service_id).get().to_dict() or {}
    )


# ------------------------------------------------------------------- roles


@pytest.mark.parametrize(
    ("name", "data", "role_ok", "role_denied"),
    [
        (INIT, {}, "admin", "ops"),
        (HEALTH, {}, "ops", "user"),
        (MANUAL, {"serviceId": "api-gateway", "action": "scale_up", "reason": "r"}, "admin", "ops"),
        (REPORT, {"serviceId": "api-gateway", "cpuPct": 10}, "ops", "user"),
    ],
)
def test_roles(caller: Caller, name: str, data: Any, role_ok: str, role_denied: str) -> None:
    init(caller)
    none = caller.call(name, data, role=None)
    assert (none.status, none.error["status"]) == (401, "UNAUTHENTICATED")
    denied = caller.call(name, data, role=role_denied)
    assert (denied.status, denied.error["status"]) == (403, "PERMISSION_DENIED")
    assert caller.call(name, data, role=role_ok).status == 200


# -------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("name", "data", "field"),
    [
        (MANUAL, {"serviceId": "api-gateway", "action": "scale_up", "reason": ""}, "reason"),
        (MANUAL, {"serviceId": "api-gateway", "action": "grow", "reason": "r"}, "action"),
        (
            MANUAL,
            {"serviceId": "api-gateway", "action": "scale_to", "reason": "r"},
            "instanceCount",
        ),
        (
            MANUAL,
            {"serviceId": "api-gateway", "action": "scale_to", "instanceCount": "5", "reason": "r"},
            "instanceCount",
        ),
        (MANUAL, {"serviceId": "API gateway", "action": "scale_up", "reason": "r"}, "serviceId"),
        (
            MANUAL,
            {"serviceId": "api-gateway", "action": "scale_to", "instanceCount": 60, "reason": "r"},
            "instanceCount",
        ),
        (REPORT, {"serviceId": "api-gateway", "cpuPct": 150}, "cpuPct"),
        (REPORT, {"serviceId": "api-gateway", "cpuPct": "50"}, "cpuPct"),
        (REPORT, {"serviceId": "api-gateway", "errors": 5, "requests": 2}, "errors"),
        (REPORT, {"serviceId": "api-gateway", "resizeHookUrl": "file:///etc"}, "resizeHookUrl"),
        (REPORT, {"serviceId": "api-gateway", "queueDepth": -1}, "queueDepth"),
        (
            INIT,
            {"overrides": {"api-gateway": {"minInstances": -1}}},
            "overrides.api-gateway.minInstances",
        ),
        (INIT, {"overrides": {"api-gateway": {"healthUrl": 5}}}, "overrides.api-gateway.healthUrl"),
        (HEALTH, {"serviceId": 7}, "serviceId"),
        (INIT, {"overrides": {"api-gateway": {"minInstances": 60}}}, "overrides.api-gateway"),
    ],
)
def test_bad_input_names_the_field(caller: Caller, name: str, data: Any, field: str) -> None:
    init(caller)
    role = "ops" if name in (REPORT, HEALTH) else "admin"
    res = caller.call(name, data, role=role)
    assert (res.status, res.error["status"]) == (400, "INVALID_ARGUMENT"), res.body
    assert res.error["details"]["field"] == field


def test_unknown_service_is_not_found(caller: Caller) -> None:
    init(caller)
    for name, role, data in [
        (REPORT, "ops", {"serviceId": "no-such", "cpuPct": 1}),
        (HEALTH, "ops", {"serviceId": "no-such"}),
        (MANUAL, "admin", {"serviceId": "no-such", "action": "scale_up", "reason": "r"}),
        (INIT, "admin", {"overrides": {"no-such": {"minInstances": 1}}}),
    ]:
        assert caller.call(name, data, role=role).error["status"] == "NOT_FOUND"


# -------------------------------------------------------------------- init


def test_init_is_idempotent_and_never_resets_live_state(caller: Caller, hook: FakeHttpApi) -> None:
    first = init(caller)
    assert sorted(first["created"]) == [
        "ai-companion",
        "api-gateway",
        "chat-service",
        "matching-engine",
        "media-processing",
        "notification-service",
        "payment-processor",
    ]
    doc = service_doc("ai-companion")
    assert doc["config"]["initialInstances"] == 10 and doc["state"]["currentInstances"] == 10
    assert service_doc("media-processing")["config"]["queueSource"] == "media-processing-jobs"
    assert service_doc("payment-processor")["state"]["currentInstances"] == 2

    scaled = caller.call(
        MANUAL,
        {"serviceId": "api-gateway", "action": "scale_to", "instanceCount": 9, "reason": "launch"},
    ).result
    assert scaled["instances"] == 9
    again = init(caller, overrides={"chat-service": {"healthUrl": f"{hook.url}/health"}})
    assert again["created"] == [] and again["updated"] == ["chat-service"]
    assert len(again["unchanged"]) == 6
    assert service_doc("api-gateway")["state"]["currentInstances"] == 9
    assert service_doc("chat-service")["config"]["healthUrl"] == f"{hook.url}/health"
    # a plain re-run keeps earlier overrides (and state): nothing changes
    third = init(caller)
    assert (third["created"], third["updated"], len(third["unchanged"])) == ([], [], 7)
    assert service_doc("chat-service")["config"]["healthUrl"] == f"{hook.url}/health"
    moved = init(caller, region="europe-west1")
    assert len(moved["updated"]) == 7
    assert service_doc("chat-service")["config"]["region"] == "europe-west1"
    assert service_doc("api-gateway")["state"]["currentInstances"] == 9
    audit = [d.to_dict() or {} for d in get_db().collection(collections.AUDIT_LOG).stream()]
    actions = sorted(a["action"] for a in audit)
    assert actions.count("scaling.init") == 15  # 7 created + 1 updated + 7 moved
    assert actions.count("scaling.manual.scale_to") == 1


# ------------------------------------------- push -> guard -> local scaler


def test_pushed_spike_scales_up_through_the_resize_hook(
    caller: Caller, app: flask.Flask, backends: Backends, hook: FakeHttpApi
) -> None:
    init(caller)
    registered = report(
        caller,
        serviceId="api-gateway",
        cpuPct=97.5,
        p95LatencyMs=380,
        requests=900,
        errors=0,
        resizeHookUrl=f"{hook.url}/resize",
    )
    assert registered["hookRegistered"] is True
    report(caller, serviceId="api-gateway", cpuPct=97.5, requests=100, errors=1)

    assert run_guard(app, backends.project, next_minute()) == 200

    [decision] = decisions(get_db(), "api-gateway")
    assert decision["action"] == "scale_up"
    assert (decision["currentInstances"], decision["desiredInstances"]) == (3, 5)  # ceil(3*97.5/65)
    assert decision["metrics"]["cpuPct"] == 97.5
    assert decision["metrics"]["requestsPerMin"] == 1000
    assert decision["metrics"]["errorRatePct"] == pytest.approx(0.1)
    assert {r["metric"] for r in decision["recommendations"]} == {"cpu_pct", "p95_latency_ms"}
    assert decision["acted"] is True and decision["platform"]["platform"] == "local"
    [resize] = hook.received("POST", "/resize")
    assert resize.body == {"serviceId": "api-gateway", "instances": 5}
    assert service_doc("api-gateway")["state"]["currentInstances"] == 5
    # services with no metrics: no_data, nothing touched
    [quiet] = decisions(get_db(), "chat-service")
    assert (quiet["action"], quiet["desiredInstances"]) == ("no_data", 4)


def test_overlapping_guard_runs_never_act_twice(
    caller: Caller, app: flask.Flask, backends: Backends, hook: FakeHttpApi
) -> None:
    init(caller)
    report(
        caller,
        serviceId="api-gateway",
        cpuPct=97.5,
        p95LatencyMs=380,
        resizeHookUrl=f"{hook.url}/resize",
    )
    lock_key = "{pack391:scaling}:lock:guard"
    client = redis.Redis.from_url(backends.redis_url)
    client.set(lock_key, "another-run", ex=30)
    assert run_guard(app, backends.project, next_minute()) == 200
    assert decisions(get_db(), "api-gateway") == []  # the held lock made this run skip
    client.delete(lock_key)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        reports = list(
            pool.map(lambda _i: scaling_service().guard(next_minute(), f"run-{_i}"), range(2))
        )
    assert sorted(r.locked for r in reports) == [False, True]
    assert len(decisions(get_db(), "api-gateway")) == 1
    assert len(hook.received("POST", "/resize")) == 1


def test_burst_sizes_workers_to_the_backlog(
    caller: Caller, app: flask.Flask, backends: Backends
) -> None:
    init(caller)
    report(caller, serviceId="media-processing", cpuPct=60, p95LatencyMs=300, queueDepth=24000)
    assert run_guard(app, backends.project, next_minute()) == 200
    [decision] = decisions(get_db(), "media-processing")
    assert (decision["action"], decision["desiredInstances"]) == ("scale_up", 24)
    assert any(r.startswith("burst: backlog 24000") for r in decision["reasons"])
    assert service_doc("media-processing")["state"]["burstActive"] is True


# ---------------------------------------------------------------- isolation


def active_alerts() -> list[tuple[str, dict[str, Any]]]:
    """The open and acknowledged alerts in pack391_alerts, by id."""
    snaps = get_db().collection(collections.ALERTS).stream()
    found = [(s.id, s.to_dict() or {}) for s in snaps]
    return sorted((i, d) for i, d in found if d["status"] in ("open", "acknowledged"))


def test_isolation_fails_callers_fast_and_recovers_half_open(
    caller: Caller, backends: Backends
) -> None:
    init(caller)
    service = scaling_service()
    store = service._p.pushed
    from shared.models.scaling import ReportMetricsRequest

    t0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

    def minute(k: int, errors: int) -> None:
        store.record(
            ReportMetricsRequest.model_validate(
                {
                    "serviceId": "payment-processor",
                    "cpuPct": 40,
                    "p95LatencyMs": 200,
                    "requests": 200,
                    "errors": errors,
                }
            ),
            t0 + timedelta(minutes=k, seconds=5),
        )
        service.guard(t0 + timedelta(minutes=k + 1), f"run-{k}")

    minute(0, errors=10)  # 5% > 1.5%: isolated
    assert isolation_state("payment-processor") is IsolationState.OPEN
    with pytest.raises(ServiceIsolated):
        ensure_available("payment-processor")
    res = caller.call(HEALTH, {"serviceId": "payment-processor"}, role="ops").result
    assert res["services"][0]["status"] == "isolated"
    (alert_id, alert), *more = active_alerts()
    assert more == []
    assert (alert["source"], alert["kind"], alert["severity"], alert["status"]) == (
        "scaling",
        "isolation",
        "critical",
        "open",
    )
    assert alert["dedupKey"] == "scaling:isolation:payment-processor"

    minute(1, errors=0)  # still open (open for 2 minutes)
    assert isolation_state("payment-processor") is IsolationState.OPEN
    minute(2, errors=0)  # half-open: 10% of calls pass
    assert isolation_state("payment-processor") is IsolationState.HALF_OPEN
    (same_id, half_open), *more = active_alerts()  # the same alert, updated
    assert (same_id, more, half_open["occurrences"]) == (alert_id, [], 2)
    assert half_open["evidence"]["event"] == "half_open"
    assert half_open["severity"] == "critical"  # never goes down while active
    ensure_available("payment-processor", draw=lambda: 0.05)
    with pytest.raises(ServiceIsolated):
        ensure_available("payment-processor", draw=lambda: 0.5)
    for k in (3, 4, 5):
        minute(k, errors=1)  # 0.5%: under the threshold
    assert isolation_state("payment-processor") is IsolationState.HALF_OPEN
    minute(6, errors=0)  # three minutes under the threshold: recovered
    assert isolation_state("payment-processor") is IsolationState.NONE
    ensure_available("payment-processor")

    events = sorted(
        (d.to_dict() or {} for d in get_db().collection(collections.SCALING_EVENTS).stream()),
        key=lambda a: a["at"],
    )
    assert [a["kind"] for a in events] == ["isolated", "half_open", "recovered"]
    assert events[0]["errorRatePct"] == 5.0 and events[0]["thresholdPct"] == 1.5
    # the isolation alert resolved when the service recovered
    assert active_alerts() == []
    resolved = get_db().collection(collections.ALERTS).document(alert_id).get().to_dict() or {}
    assert (resolved["status"], resolved["resolvedBy"]) == ("resolved", "system")
    assert resolved["resolvedAt"] == t0 + timedelta(minutes=7)
    assert resolved["durationSec"] == 6 * 60.0
    # while isolated, low traffic never scaled it down
    assert all(d["action"] != "scale_down" for d in decisions(get_db(), "payment-processor"))


def test_isolation_check_fails_open_when_redis_is_down() -> None:
    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.05, retry=Retry(NoBackoff(), 0)
    )
    assert isolation_state("payment-processor", dead) is IsolationState.NONE
    ensure_available("payment-processor", dead)


# ------------------------------------------------------------------- manual


def test_manual_scale_bounds_force_audit_and_pin(
    caller: Caller, app: flask.Flask, backends: Backends, hook: FakeHttpApi
) -> None:
    init(caller)
    report(caller, serviceId="chat-service", cpuPct=10, resizeHookUrl=f"{hook.url}/resize")
    over = caller.call(
        MANUAL,
        {
            "serviceId": "chat-service",
            "action": "scale_to",
            "instanceCount": 45,
            "reason": "concert",
        },
    )
    assert over.error["status"] == "INVALID_ARGUMENT"
    assert "outside chat-service's bounds 2..40" in over.error["message"]

    res = caller.call(
        MANUAL,
        {
            "serviceId": "chat-service",
            "action": "scale_to",
            "instanceCount": 45,
            "reason": "concert",
            "force": True,
        },
    ).result
    assert (res["previousInstances"], res["instances"], res["forced"]) == (4, 45, True)
    assert res["platform"]["ok"] is True
    assert hook.received("POST", "/resize")[-1].body == {
        "serviceId": "chat-service",
        "instances": 45,
    }
    [entry] = [
        d.to_dict() or {}
        for d in get_db()
        .collection(collections.AUDIT_LOG)
        .where(filter=firestore.FieldFilter("action", "==", "scaling.manual.scale_to"))
        .stream()
    ]
    assert entry["before"] == {"instances": 4} and entry["after"]["instances"] == 45
    assert entry["after"]["pinnedUntil"] == res["pinnedUntil"].replace("Z", "+00:00")
    assert entry["reason"] == "concert" and entry["actorUid"] == "admin-1"

    # low load (10% CPU) does not scale it down while pinned
    report(caller, serviceId="chat-service", cpuPct=10, p95LatencyMs=50)
    assert run_guard(app, backends.project, next_minute()) == 200
    last = decisions(get_db(), "chat-service")[-1]
    assert last["action"] == "none" and last["reasons"][0].startswith("pinned")


def test_the_specs_troubleshooting_call_works_as_written(
    caller: Caller, backends: Backends, hook: FakeHttpApi
) -> None:
    """``pack391_manualScale({serviceId: "api-gateway", action: "scale_to",
    instanceCount: 10})``, verbatim from the spec's troubleshooting section, answered
    ``reason: Field required``. Now it scales, audited as "no reason given" with the caller
    recorded."""
    init(caller)
    report(caller, serviceId="api-gateway", cpuPct=10, resizeHookUrl=f"{hook.url}/resize")
    res = caller.call(
        MANUAL, {"serviceId": "api-gateway", "action": "scale_to", "instanceCount": 10}
    ).result
    assert res["instances"] == 10
    [entry] = [
        d.to_dict() or {}
        for d in get_db()
        .collection(collections.AUDIT_LOG)
        .where(filter=firestore.FieldFilter("action", "==", "scaling.manual.scale_to"))
        .stream()
    ]
    assert (entry["reason"], entry["actorUid"]) == ("no reason given", "admin-1")


# ------------------------------------------------------------------- health


def test_health_check_statuses(caller: Caller, hook: FakeHttpApi) -> None:
    hook.reply("GET", "/broken", 503, {"status": "down"})
    init(
        caller,
        overrides={
            "api-gateway": {"healthUrl": f"{hook.url}/health"},
            "chat-service": {"healthUrl": f"{hook.url}/broken"},
            "matching-engine": {"healthUrl": "http://127.0.0.1:1/health"},
            "ai-companion": {"healthUrl": f"{hook.url}/health"},
        },
    )
    report(caller, serviceId="api-gateway", cpuPct=50, p95LatencyMs=200, requests=100, errors=0)
    report(caller, serviceId="ai-companion", cpuPct=90, p95LatencyMs=200)
    res = caller.call(HEALTH, {}, role="ops").result
    by_id = {s["serviceId"]: s for s in res["services"]}
    assert len(by_id) == 7
    # this minute's samples are not yet a complete minute: no metrics -> degraded
    assert by_id["api-gateway"]["status"] == "degraded"
    assert by_id["api-gateway"]["probeOk"] is True and by_id["api-gateway"]["probeStatus"] == 200
    assert by_id["chat-service"]["status"] == "down"
    assert by_id["chat-service"]["probeStatus"] == 503
    assert by_id["matching-engine"]["status"] == "down"
    assert by_id["matching-engine"]["probeError"]
    assert by_id["payment-processor"]["probeOk"] is None

    later = scaling_service().health("api-gateway", next_minute())
    assert later.services[0].status.value == "healthy"
    assert later.services[0].metrics is not None and later.services[0].metrics.cpu_pct == 50
    busy = scaling_service().health("ai-companion", next_minute())
    assert busy.services[0].status.value == "degraded"


def test_over_real_http_on_the_local_server(
    live_server: str, backends: Backends, hook: FakeHttpApi
) -> None:
    from stack.platform.scheduler import fire
    from stack.platform.tokens import role_token

    def call(name: str, data: Any, role: str) -> Any:
        response = requests.post(
            f"{live_server}/{backends.project}/us-central1/{name}",
            json={"data": data},
            headers={"Authorization": f"Bearer {role_token(backends.project, role)}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()["result"]

    call(INIT, {}, "admin")
    call(
        REPORT,
        {
            "serviceId": "notification-service",
            "cpuPct": 30.0,
            "p95LatencyMs": 90.0,
            "queueDepth": 12000,
            "resizeHookUrl": f"{hook.url}/resize",
        },
        "ops",
    )
    assert fire(live_server, backends.project, "us-central1", GUARD, next_minute()) == 200
    [resize] = hook.received("POST", "/resize")
    assert resize.body == {"serviceId": "notification-service", "instances": 12}
    health = call(HEALTH, {"serviceId": "notification-service"}, "ops")
    assert health["services"][0]["currentInstances"] == 12
    assert health["services"][0]["lastDecision"]["action"] == "scale_up"


def test_guard_lock_is_only_renewed_and_released_by_its_holder(backends: Backends) -> None:
    from functions.scaling.coordination import GuardLock

    client = redis.Redis.from_url(backends.redis_url, decode_responses=True)
    lock = GuardLock(client, "test")
    token = lock.acquire(30)
    assert token is not None
    assert lock.acquire(30) is None  # held
    assert lock.renew(token, 30)
    client.set("{pack391:scaling}:lock:test", "a-later-run")  # ours expired, another took it
    assert not lock.renew(token, 30)
    assert not lock.release(token)
    assert client.get("{pack391:scaling}:lock:test") == "a-later-run"


def test_decisions_carry_an_expiry_for_the_ttl_policy(
    caller: Caller, app: flask.Flask, backends: Backends
) -> None:
    init(caller)
    at = next_minute()
    assert run_guard(app, backends.project, at) == 200
    decision = decisions(get_db(), "api-gateway")[0]
    assert decision["expireAt"] - decision["at"] == timedelta(days=30)


def test_a_failing_resize_hook_is_recorded_and_retried(
    caller: Caller, app: flask.Flask, backends: Backends, hook: FakeHttpApi
) -> None:
    init(caller)
    hook.reply("POST", "/resize", 500, {"error": "cannot grow"})
    report(
        caller,
        serviceId="api-gateway",
        cpuPct=97.5,
        p95LatencyMs=380,
        resizeHookUrl=f"{hook.url}/resize",
    )
    assert run_guard(app, backends.project, next_minute()) == 200
    [decision] = decisions(get_db(), "api-gateway")
    assert decision["action"] == "scale_up" and decision["acted"] is False
    assert decision["platform"]["detail"]["status"] == 500
    assert any("local did not apply it" in r for r in decision["reasons"])
    assert service_doc("api-gateway")["state"]["currentInstances"] == 3  # not taken
    assert (
        scaling_service()._p.scaler.observed(
            scaling_service()._p.registry.get("api-gateway").config  # type: ignore[union-attr]
        )
        is None
    )
