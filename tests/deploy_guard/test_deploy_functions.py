"""The deploy guard end to end in the local stack: the callables through the callable
protocol, the state machine on the real Firestore emulator, the local traffic split and
the pushed metrics in a real redis-server.

The clock of a monitor step is passed in (``guard.step(id, now)``); metrics are pushed for
the minute before it, as services push them live.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import pytest
from google.cloud import firestore

from functions.deploy_guard.local import LocalTraffic
from functions.deploy_guard.wiring import deploy_guard
from functions.scaling.api import PushedMetricsStore
from shared import collections
from shared.firestore import get_db
from shared.models.scaling import IsolationState, ReportMetricsRequest, ServiceDoc, ServiceState
from shared.redis import get_redis
from stack.platform.scheduler import scheduler_headers
from tests.conftest import Backends, Caller
from tests.fakes.http_api import FakeHttpApi
from tests.scaling.helpers import service_config

ENV = "production"
SERVICE = "api"
OLD, NEW = "api-00001-abc", "api-00002-def"
FUNCTIONS = [
    "pack391_preDeployValidator",
    "pack391_startDeployment",
    "pack391_rollbackController",
    "pack391_getDeploymentStatus",
    "pack391_controlDeployment",
    "pack391_pinTraffic",
    "pack391_reportRevisionMetrics",
]
OPS_FUNCTIONS = {"pack391_getDeploymentStatus", "pack391_reportRevisionMetrics"}


def platform() -> LocalTraffic:
    return LocalTraffic(get_redis())


def land_new_revision(caller: Caller) -> None:
    """The first version serves; pin it (the snapshot of the stable side); "firebase
    deploy" lands the new one at 100 %, as the Cloud Functions API does; the start that
    follows puts it at 5 %, the stable side taken from the snapshot."""
    platform().deploy(SERVICE, OLD)
    pinned = caller.call("pack391_pinTraffic", {"environment": ENV, "services": [SERVICE]})
    assert pinned.result["pinned"] == [{"service": SERVICE, "revision": OLD, "before": {OLD: 100}}]
    assert pinned.result["snapshotAt"]
    platform().deploy(SERVICE, NEW)
    assert platform().observe(SERVICE, "").shares == {NEW: 100}


def validate(caller: Caller, version: str = "v2") -> dict[str, Any]:
    result: dict[str, Any] = caller.call(
        "pack391_preDeployValidator", {"version": version, "environment": ENV}
    ).result
    return result


def start(caller: Caller, **over: Any) -> dict[str, Any]:
    data = {
        "version": "v2",
        "environment": ENV,
        "strategy": "canary",
        "services": [SERVICE],
        "bakeSec": 60,
        "minRequestsPerStep": 100,
        **over,
    }
    result: dict[str, Any] = caller.call("pack391_startDeployment", data).result
    return result


def push(
    minute: datetime, revision: str, requests: int, errors: int = 0, p95: float = 200.0
) -> None:
    req = ReportMetricsRequest.model_validate(
        {"serviceId": revision, "requests": requests, "errors": errors, "p95LatencyMs": p95}
    )
    PushedMetricsStore(get_redis()).record(req, minute + timedelta(seconds=5))


def healthy_minute(minute: datetime, canary_requests: int = 200) -> None:
    push(minute, NEW, canary_requests, 1, 205.0)
    push(minute, OLD, 2000, 8, 200.0)


def status(caller: Caller, deployment_id: str) -> dict[str, Any]:
    result: dict[str, Any] = caller.call(
        "pack391_getDeploymentStatus", {"deploymentId": deployment_id}, role="ops"
    ).result
    return result


def next_minute() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)


def audit_actions(db: firestore.Client, deployment_id: str) -> list[str]:
    query = db.collection(collections.AUDIT_LOG).where(
        filter=firestore.FieldFilter("target", "==", f"{collections.DEPLOYMENTS}/{deployment_id}")
    )
    return sorted(str((d.to_dict() or {})["action"]) for d in query.stream())


@pytest.fixture
def landed(caller: Caller, backends: Backends) -> Caller:
    land_new_revision(caller)
    report = validate(caller)
    assert report["passed"] is True
    return caller


# ------------------------------------------------------------------- roles


@pytest.mark.parametrize("name", FUNCTIONS)
def test_roles(caller: Caller, backends: Backends, name: str) -> None:
    assert caller.call(name, {}, role=None).error["status"] == "UNAUTHENTICATED"
    assert caller.call(name, {}, role="user").error["status"] == "PERMISSION_DENIED"
    ops = caller.call(name, {}, role="ops")
    if name == "pack391_getDeploymentStatus":
        assert ops.result == {"deployments": []}
    elif name in OPS_FUNCTIONS:
        assert ops.error["status"] == "INVALID_ARGUMENT"  # past the role check
    else:
        assert ops.error["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("name", "data", "field"),
    [
        (
            "pack391_startDeployment",
            {"version": "v2", "environment": ENV, "strategy": "linear"},
            "strategy",
        ),
        (
            "pack391_startDeployment",
            {"version": "v2", "environment": ENV, "bakeSec": "60"},
            "bakeSec",
        ),
        ("pack391_startDeployment", {"environment": ENV}, "version"),
        ("pack391_preDeployValidator", {"version": "v 2", "environment": ENV}, "version"),
        ("pack391_rollbackController", {"deploymentId": "d1"}, "reason"),
        (
            "pack391_controlDeployment",
            {"deploymentId": "d1", "action": "skip", "reason": "x"},
            "action",
        ),
        ("pack391_getDeploymentStatus", {"limit": 0}, "limit"),
    ],
)
def test_bad_input_names_the_field(
    caller: Caller, backends: Backends, name: str, data: dict[str, Any], field: str
) -> None:
    error = caller.call(name, data).error
    assert error["status"] == "INVALID_ARGUMENT"
    assert field in error["message"]


# ------------------------------------------------------------------- gates


def test_validator_reports_seven_gates_and_stores_the_report(
    caller: Caller, backends: Backends
) -> None:
    db = get_db()
    db.document(f"{collections.WALLETS}/u1").set({"balance": 30})
    db.document(f"{collections.WALLETS}/u1/{collections.WALLET_TRANSACTIONS}/t1").set(
        {"amount": 50}
    )
    db.document(f"{collections.WALLETS}/u1/{collections.WALLET_TRANSACTIONS}/t2").set(
        {"amount": -20}
    )
    report = validate(caller)
    gates = {g["name"]: g for g in report["gates"]}
    assert list(gates) == [
        "system_health",
        "payment_system",
        "token_system",
        "auth_system",
        "database_indexes",
        "api_endpoints",
        "error_budget",
    ]
    assert report["passed"] is True
    assert gates["error_budget"]["status"] == "skipped"  # no SLO state yet: no freeze
    assert gates["token_system"]["status"] == "pass"
    assert gates["token_system"]["evidence"]["walletsChecked"] == 1
    assert gates["database_indexes"]["status"] == "skipped"
    assert "emulator" in gates["database_indexes"]["evidence"]["why"]
    stored = db.document(f"{collections.DEPLOY_REPORTS}/{report['reportId']}").get().to_dict()
    assert stored is not None and stored["passed"] is True


def test_failing_gates_block_the_start_unless_forced(caller: Caller, backends: Backends) -> None:
    db = get_db()
    now = datetime.now(UTC)
    db.document(f"{collections.WALLETS}/u1").set({"balance": 31})
    db.document(f"{collections.WALLETS}/u1/{collections.WALLET_TRANSACTIONS}/t1").set(
        {"amount": 30}
    )
    db.document(f"{collections.PAYOUTS}/p1").set(
        {
            "status": "pending",
            "createdAt": now - timedelta(hours=2),
            "revision": OLD,
            "anomaly": False,
        }
    )
    for i in range(10):
        db.document(f"{collections.AUTH_EVENTS}/a{i}").set(
            {"at": now - timedelta(minutes=1), "revision": OLD, "failed": i < 2}
        )
    report = validate(caller)
    status_of = {g["name"]: g["status"] for g in report["gates"]}
    assert report["passed"] is False
    assert status_of["token_system"] == "fail"
    assert status_of["payment_system"] == "fail"
    assert status_of["auth_system"] == "fail"  # 20 % > 3 %

    land_new_revision(caller)
    refused = caller.call(
        "pack391_startDeployment", {"version": "v2", "environment": ENV, "services": [SERVICE]}
    ).error
    assert refused["status"] == "FAILED_PRECONDITION"
    assert "failed" in refused["message"]
    no_reason = caller.call(
        "pack391_startDeployment",
        {"version": "v2", "environment": ENV, "services": [SERVICE], "force": True},
    ).error
    assert no_reason["status"] == "INVALID_ARGUMENT" and "reason" in no_reason["message"]
    forced = start(caller, force=True, reason="hotfix for the payout outage")
    assert forced["phase"] == "progressing"
    assert status(caller, forced["deploymentId"])["history"][0]["detail"]["forced"] is True


def test_a_version_without_a_report_cannot_start(landed: Caller) -> None:
    error = landed.call(
        "pack391_startDeployment", {"version": "v3", "environment": ENV, "services": [SERVICE]}
    ).error
    assert error["status"] == "FAILED_PRECONDITION"
    assert "no pre-deploy report" in error["message"]


# ------------------------------------------------------------- the canary


def test_start_step_promote(landed: Caller) -> None:
    guard = deploy_guard()
    started = start(landed)
    dep_id = started["deploymentId"]
    assert (started["phase"], started["trafficPercent"]) == ("progressing", 5)
    assert platform().observe(SERVICE, "").shares == {OLD: 95, NEW: 5}

    second = landed.call(
        "pack391_startDeployment", {"version": "v2", "environment": ENV, "services": [SERVICE]}
    ).error
    assert second["status"] == "FAILED_PRECONDITION"
    assert second["details"]["activeDeploymentId"] == dep_id

    t0 = next_minute()
    healthy_minute(t0)
    after = guard.step(dep_id, t0 + timedelta(minutes=1))
    assert after is not None and (after.phase, after.traffic_percent) == ("progressing", 25)
    assert platform().observe(SERVICE, "").shares == {OLD: 75, NEW: 25}

    healthy_minute(t0 + timedelta(minutes=1))
    after = guard.step(dep_id, t0 + timedelta(minutes=2))
    assert after is not None and (after.phase, after.traffic_percent) == ("promoting", 100)
    assert platform().observe(SERVICE, "").shares == {NEW: 100}

    push(t0 + timedelta(minutes=2), NEW, 2000, 5, 204.0)  # stable serves nothing now
    after = guard.step(dep_id, t0 + timedelta(minutes=3))
    assert after is not None and after.phase == "succeeded"

    shown = status(landed, dep_id)
    assert (shown["phase"], shown["step"], shown["trafficPercent"]) == ("succeeded", 2, 100)
    assert [a["verdict"] for a in shown["analyses"]] == ["pass", "pass", "pass"]
    assert shown["analyses"][0]["canary"]["requests"] == 200
    assert shown["analyses"][0]["stable"]["p95LatencyMs"] == 200.0
    events = [h["event"] for h in shown["history"]]
    assert events == ["created", "validated", "step", "step", "step", "succeeded"]
    listed = landed.call("pack391_getDeploymentStatus", {"environment": ENV}, role="ops").result
    assert [d["deploymentId"] for d in listed["deployments"]] == [dep_id]
    assert "deploy.start" in audit_actions(get_db(), dep_id)
    # the environment is free again; a deploy without a pin first moved all traffic to its
    # revision and left nothing that says which one was stable: refused, naming the fix
    platform().deploy(SERVICE, "api-00003-ghi")
    validate(landed, "v3")
    refused = landed.call(
        "pack391_startDeployment", {"version": "v3", "environment": ENV, "services": [SERVICE]}
    ).error
    assert refused["status"] == "FAILED_PRECONDITION"
    assert "pin-traffic" in refused["message"]
    landed.call("pack391_pinTraffic", {"environment": ENV, "services": [SERVICE]})
    platform().deploy(SERVICE, "api-00004-jkl")
    validate(landed, "v4")
    assert start(landed, version="v4")["phase"] == "progressing"
    assert platform().observe(SERVICE, "").shares == {"api-00003-ghi": 95, "api-00004-jkl": 5}


def test_too_little_traffic_is_inconclusive_not_a_pass(landed: Caller) -> None:
    guard = deploy_guard()
    dep_id = start(landed)["deploymentId"]
    t0 = next_minute()
    healthy_minute(t0, canary_requests=20)
    after = guard.step(dep_id, t0 + timedelta(minutes=1))
    assert after is not None
    assert (after.phase, after.traffic_percent, after.inconclusive) == ("progressing", 5, 1)
    assert after.analyses[-1].verdict == "inconclusive"


def test_error_spike_rolls_back_within_a_minute_and_raises_an_alert(landed: Caller) -> None:
    guard = deploy_guard()
    dep_id = start(landed)["deploymentId"]
    t0 = next_minute()
    healthy_minute(t0)
    after = guard.step(dep_id, t0 + timedelta(minutes=1))
    assert after is not None and after.traffic_percent == 25
    bad = t0 + timedelta(minutes=1)
    push(bad, NEW, 600, 90, 210.0)  # 15 % errors from the first minute at 25 %
    push(bad, OLD, 1800, 9, 200.0)
    after = guard.step(dep_id, bad + timedelta(minutes=1))  # the end of the bad minute
    assert after is not None and after.phase == "rolled_back"
    assert platform().observe(SERVICE, "").shares == {OLD: 100}
    shown = status(landed, dep_id)
    assert shown["analyses"][-1]["verdict"] == "breach"
    rollback = next(h for h in shown["history"] if h["event"] == "rollback")
    assert "error_rate" in rollback["detail"]["reason"]
    alerts = [d.to_dict() or {} for d in get_db().collection(collections.ALERTS).stream()]
    assert [(a["source"], a["kind"], a["severity"]) for a in alerts] == [
        ("deploy", "rollback", "high")
    ]
    assert alerts[0]["evidence"]["deploymentId"] == dep_id
    assert "deploy.monitor" in audit_actions(get_db(), dep_id)


def test_payout_anomalies_on_the_canary_roll_it_back(landed: Caller) -> None:
    guard = deploy_guard()
    dep_id = start(landed)["deploymentId"]
    t0 = next_minute()
    healthy_minute(t0)
    batch = get_db().batch()
    for i in range(40):
        ref = get_db().collection(collections.PAYOUTS).document(f"p{i}")
        batch.set(
            ref,
            {
                "status": "completed",
                "createdAt": t0 + timedelta(seconds=i),
                "revision": NEW if i < 20 else OLD,
                "anomaly": i < 8,  # 8 of the canary's 20: 40 %
            },
        )
    batch.commit()
    after = guard.step(dep_id, t0 + timedelta(minutes=1))
    assert after is not None and after.phase == "rolled_back"
    check = next(c for c in after.analyses[-1].checks if c.metric == "payout_anomaly_rate")
    assert (check.canary, check.stable, check.verdict) == (40.0, 0.0, "breach")


def test_manual_rollback_pause_resume_promote(landed: Caller) -> None:
    dep_id = start(landed)["deploymentId"]
    control = "pack391_controlDeployment"
    paused = landed.call(control, {"deploymentId": dep_id, "action": "pause", "reason": "look"})
    assert paused.result["phase"] == "paused"
    again = landed.call(control, {"deploymentId": dep_id, "action": "pause", "reason": "look"})
    assert again.error["status"] == "FAILED_PRECONDITION"
    resumed = landed.call(control, {"deploymentId": dep_id, "action": "resume", "reason": "ok"})
    assert resumed.result["phase"] == "progressing"
    promoted = landed.call(control, {"deploymentId": dep_id, "action": "promote", "reason": "ok"})
    assert (promoted.result["phase"], promoted.result["trafficPercent"]) == ("succeeded", 100)
    assert platform().observe(SERVICE, "").shares == {NEW: 100}
    late = landed.call(
        "pack391_rollbackController", {"deploymentId": dep_id, "reason": "too late"}
    ).error
    assert late["status"] == "FAILED_PRECONDITION"
    missing = landed.call("pack391_rollbackController", {"deploymentId": "nope", "reason": "x"})
    assert missing.error["status"] == "NOT_FOUND"
    actions = audit_actions(get_db(), dep_id)
    assert {"deploy.pause", "deploy.resume", "deploy.promote"} <= set(actions)


def test_rollback_controller(landed: Caller) -> None:
    dep_id = start(landed)["deploymentId"]
    done = landed.call(
        "pack391_rollbackController", {"deploymentId": dep_id, "reason": "bad smell"}
    ).result
    assert (done["phase"], done["trafficPercent"], done["appliedPercent"]) == ("rolled_back", 0, 0)
    assert platform().observe(SERVICE, "").shares == {OLD: 100}
    assert done["history"][-2]["detail"]["reason"] == "bad smell"
    assert "deploy.rollback" in audit_actions(get_db(), dep_id)


def rollback_alerts() -> list[tuple[str, dict[str, Any]]]:
    snaps = get_db().collection(collections.ALERTS).stream()
    return sorted(
        (s.id, s.to_dict() or {}) for s in snaps if (s.to_dict() or {})["kind"] == "rollback"
    )


def test_a_rollback_alert_resolves_when_a_human_acknowledges_it(landed: Caller) -> None:
    dep_id = start(landed)["deploymentId"]
    landed.call("pack391_rollbackController", {"deploymentId": dep_id, "reason": "bad smell"})
    ((alert_id, alert),) = rollback_alerts()
    assert (alert["source"], alert["status"], alert["dedupKey"]) == (
        "deploy",
        "open",
        f"deploy:rollback:{ENV}:{SERVICE}",
    )
    assert alert["evidence"]["deploymentId"] == dep_id
    acked = landed.call("pack391_acknowledgeAlert", {"alertId": alert_id}, role="ops", uid="olga")
    assert (acked.result["status"], acked.result["changed"]) == ("resolved", True)
    ((_, done),) = rollback_alerts()
    assert (done["status"], done["resolvedBy"], done["acknowledgedBy"]) == (
        "resolved",
        "olga",
        "olga",
    )
    assert landed.call("pack391_getOpsDashboard", role="ops").result["openAlerts"] == []


def test_a_rollback_alert_resolves_when_the_next_deployment_succeeds(landed: Caller) -> None:
    first = start(landed)["deploymentId"]
    landed.call("pack391_rollbackController", {"deploymentId": first, "reason": "bad smell"})
    ((alert_id, alert),) = rollback_alerts()
    assert alert["status"] == "open"
    second = start(landed)["deploymentId"]  # the fixed build, same service
    control = "pack391_controlDeployment"
    promoted = landed.call(control, {"deploymentId": second, "action": "promote", "reason": "ok"})
    assert promoted.result["phase"] == "succeeded"
    ((same_id, done),) = rollback_alerts()
    assert (same_id, done["status"], done["resolvedBy"]) == (alert_id, "resolved", "system")
    assert done["resolution"] == f"deployment {second} (v2) succeeded"


# --------------------------------------------------- exactly-once progress


def test_crash_between_decision_and_traffic_resumes_from_firestore(landed: Caller) -> None:
    from functions.deploy_guard.policy.phases import on_check
    from shared.models.deploy import Analysis, RevisionWindow, Verdict

    guard = deploy_guard()
    dep_id = start(landed)["deploymentId"]
    t0 = next_minute()
    now = t0 + timedelta(minutes=1)
    passing = Analysis(
        at=now,
        window_start=t0,
        step=0,
        traffic_percent=5,
        verdict=Verdict.PASS,
        checks=[],
        canary=RevisionWindow(requests=500),
        stable=RevisionWindow(requests=5000),
    )
    # the run commits its decision, then dies before telling the platform
    guard.p.store.update(dep_id, lambda d: on_check(d, passing, now), None)
    stored = guard.p.store.get(dep_id)
    assert stored is not None and (stored.traffic_percent, stored.applied_percent) == (25, 5)
    assert platform().observe(SERVICE, "").shares == {OLD: 95, NEW: 5}

    resumed = guard.step(dep_id, now + timedelta(seconds=20))  # the retry, same minute
    assert resumed is not None and (resumed.traffic_percent, resumed.applied_percent) == (25, 25)
    assert resumed.step == 1 and len(resumed.analyses) == 1  # not judged twice
    assert platform().observe(SERVICE, "").shares == {OLD: 75, NEW: 25}


def test_two_overlapping_monitor_runs_advance_once(landed: Caller) -> None:
    guard = deploy_guard()
    dep_id = start(landed)["deploymentId"]
    t0 = next_minute()
    healthy_minute(t0)
    now = t0 + timedelta(minutes=1)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            guard.monitor(now)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    guard.monitor(now)  # and a third, late one
    dep = guard.p.store.get(dep_id)
    assert dep is not None
    assert (dep.step, dep.traffic_percent, len(dep.analyses)) == (1, 25, 1)
    assert [h.event for h in dep.history].count("step") == 2  # 5 % at start, 25 % once
    monitor_audits = [a for a in audit_actions(get_db(), dep_id) if a == "deploy.monitor"]
    assert len(monitor_audits) == 2  # pending -> progressing, 5 -> 25


def test_the_scheduled_monitor_judges_pushed_samples_of_the_minute_before_it(
    landed: Caller, app: flask.Flask, backends: Backends
) -> None:
    dep_id = start(landed)["deploymentId"]
    report = "pack391_reportRevisionMetrics"
    for _attempt in range(2):  # both samples must land in one minute
        canary = landed.call(report, {"revision": NEW, "requests": 300, "errors": 1}, role="ops")
        stable = landed.call(
            report,
            {"revision": OLD, "requests": 5000, "errors": 20, "p95LatencyMs": 200},
            role="ops",
        )
        if canary.result["minute"] == stable.result["minute"]:
            break
    minute = datetime.fromisoformat(canary.result["minute"])
    name = "pack391_monitorDeployment"
    response = app.test_client().post(
        f"/{backends.project}/us-central1/{name}",
        data=b"{}",
        headers=scheduler_headers(name, "us-central1", minute + timedelta(minutes=1)),
    )
    assert response.status_code == 200
    shown = status(landed, dep_id)
    analysis = shown["analyses"][0]
    assert datetime.fromisoformat(analysis["windowStart"]) == minute
    assert (analysis["canary"]["requests"], analysis["canary"]["errors"]) == (300, 1)
    assert analysis["stable"]["requests"] == 5000
    assert analysis["verdict"] == "pass"
    bad = landed.call(report, {"revision": NEW, "requests": 1, "errors": 2}, role="ops").error
    assert bad["status"] == "INVALID_ARGUMENT" and "errors" in bad["message"]


def test_health_payment_and_endpoint_gates(
    caller: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = get_db()
    with FakeHttpApi() as probes:
        probes.reply("GET", "/health", 200, {"ok": True})
        probes.reply("GET", "/broken", 503, {"ok": False})
        base = probes.url
        states = {
            "api-gateway": (f"{probes.url}/health", IsolationState.NONE),
            "chat-service": (None, IsolationState.OPEN),
            "payment-processor": (f"{probes.url}/broken", IsolationState.NONE),
        }
        for service_id, (url, isolation) in states.items():
            doc = ServiceDoc(
                config=service_config(service_id=service_id, health_url=url),
                state=ServiceState(current_instances=2, isolation=isolation),
            )
            db.document(f"{collections.SCALING_SERVICES}/{service_id}").set(doc.to_doc())
        monkeypatch.setenv("PACK391_DEPLOY_PROBE_URLS", f"{probes.url}/health,{probes.url}/broken")
        report = validate(caller)
    gates = {g["name"]: g for g in report["gates"]}
    assert report["passed"] is False
    health = gates["system_health"]
    assert health["status"] == "fail"
    assert health["evidence"]["services"] == {
        "api-gateway": "healthy",
        "chat-service": "isolated",
        "payment-processor": "down",
    }
    assert gates["payment_system"]["status"] == "fail"
    assert gates["payment_system"]["evidence"]["processor"] == "down"
    endpoints = gates["api_endpoints"]["evidence"]["probes"]
    assert gates["api_endpoints"]["status"] == "fail"
    assert endpoints[f"{base}/health"]["ok"] is True
    assert endpoints[f"{base}/broken"]["status"] == 503
