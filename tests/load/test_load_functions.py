"""The load-test functions in the local stack: roles, validation, every scenario end to
end against the sandbox (shards in worker processes), abort, cleanup, failover log."""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.load.local import wait_local_workers
from functions.load.scenarios import build_plan
from functions.load.service import LoadService, wait_for
from functions.load.store import LoadAdmissions
from functions.load.wiring import load_service
from shared import collections
from shared.audit import Change
from shared.errors import FailedPrecondition
from shared.firestore import get_db
from shared.models.load import LoadRunDoc, RunLoadTestRequest
from tests.conftest import Caller


def run(caller: Caller, scenario: str, target: str, **overrides: Any) -> str:
    res = caller.call(
        "pack391_runLoadTest",
        {"scenarioId": scenario, "overrides": {"target": target, **overrides}},
    )
    assert res.status == 200, res.body
    run_id: str = res.result["runId"]
    return run_id


@pytest.mark.parametrize(
    ("name", "data", "role_ok", "role_denied"),
    [
        ("pack391_runLoadTest", {"scenarioId": "nope"}, "admin", "ops"),
        ("pack391_getLoadTestResults", {"runId": "missing-run"}, "ops", "user"),
        ("pack391_abortLoadTest", {"runId": "missing-run", "reason": "x"}, "admin", "ops"),
        ("pack391_cleanupLoadTests", {"runId": "missing-run"}, "admin", "ops"),
    ],
)
def test_roles(caller: Caller, name: str, data: Any, role_ok: str, role_denied: str) -> None:
    none = caller.call(name, data, role=None)
    assert (none.status, none.error["status"]) == (401, "UNAUTHENTICATED")
    denied = caller.call(name, data, role=role_denied)
    assert (denied.status, denied.error["status"]) == (403, "PERMISSION_DENIED")
    ok = caller.call(name, data, role=role_ok)
    assert ok.error["status"] in ("INVALID_ARGUMENT", "NOT_FOUND"), ok.body


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"scenarioId": "nope"}, "scenarioId"),
        ({"scenarioId": "swipe_load", "overrides": {"rps": "10"}}, "overrides.rps"),
        ({"scenarioId": "swipe_load", "overrides": {"rps": 0}}, "overrides.rps"),
        ({"scenarioId": "swipe_load", "overrides": {"durationSec": 99999}},
         "overrides.durationSec"),
        ({"scenarioId": "swipe_load", "overrides": {"shards": 0}}, "overrides.shards"),
        ({"scenarioId": "swipe_load", "overrides": {"color": 1}}, "overrides.color"),
        (
            {"scenarioId": "swipe_load", "overrides": {"thresholds": {"p95Ms": -1}}},
            "overrides.thresholds.p95Ms",
        ),
        ({"scenarioId": "swipe_load", "overrides": {"target": "http://10.1.2.3:80"}},
         "overrides.target"),
    ],
)  # fmt: skip
def test_invalid_requests_name_the_field(caller: Caller, data: Any, field: str) -> None:
    res = caller.call("pack391_runLoadTest", data)
    assert (res.status, res.error["status"]) == (400, "INVALID_ARGUMENT"), res.body
    assert field in res.error["message"]


def hold_share(run_id: str, rps: float, deadline: datetime) -> None:
    """Another run's share of the cap, as its start left it in the admission ledger."""
    get_db().collection(collections.CONFIG).document(collections.CONFIG_LOAD_ADMISSIONS_DOC).set(
        {"runs": {run_id: {"rps": rps, "deadline": deadline}}}, merge=True
    )


def test_global_cap_refuses_a_run_that_would_exceed_it(caller: Caller, sandbox_url: str) -> None:
    hold_share("other-run", 4000, datetime.now(UTC) + timedelta(minutes=10))
    res = caller.call(
        "pack391_runLoadTest",
        {"scenarioId": "live_calls", "overrides": {"target": sandbox_url, "rps": 1500}},
    )
    assert (res.status, res.error["status"]) == (400, "FAILED_PRECONDITION"), res.body
    assert "global cap" in res.error["message"]
    assert get_db().collection(collections.LOAD_RUNS).get() == []  # nothing recorded


def test_concurrent_starts_never_exceed_the_cap_together(backends: Any) -> None:
    """The cap used to be checked and written outside a transaction. Four admins
    start 2,000 RPS runs at once under a 5,000 RPS cap: exactly two are admitted."""
    service = load_service()
    change = Change("admin-1", "loadtest.run", None, "req", datetime.now(UTC))
    request = RunLoadTestRequest.model_validate(
        {
            "scenarioId": "live_calls",
            "overrides": {"target": "http://127.0.0.1:9/", "rps": 2000, "durationSec": 30},
        }
    )

    class Parked:  # the shards are not the point: record what would be dispatched
        name = "parked"

        def __init__(self) -> None:
            self.dispatched: list[str] = []

        def dispatch(self, run_id: str, shards: int, start_at: float) -> None:
            self.dispatched.append(run_id)

    parked = Parked()
    service = LoadService(dataclasses.replace(service._p, dispatcher=parked))

    def start(_: int) -> str:
        try:
            return service.start(request, change).run_id
        except FailedPrecondition:
            return "refused"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(start, range(4)))
    admitted = [o for o in outcomes if o != "refused"]
    assert len(admitted) == 2, outcomes
    assert sorted(parked.dispatched) == sorted(admitted)
    runs = get_db().collection(collections.LOAD_RUNS).get()
    assert sorted(s.id for s in runs) == sorted(admitted)
    ledger = LoadAdmissions(get_db()).held()
    assert sorted(ledger) == sorted(admitted) and sum(a.rps for a in ledger.values()) == 4000


def test_a_run_whose_shards_died_is_reaped_and_releases_its_share(
    caller: Caller, sandbox_url: str
) -> None:
    """A run whose single-attempt task died once stayed "running" and held the cap."""
    now = datetime.now(UTC)
    plan = build_plan("swipe_load", sandbox_url).to_json()
    stuck = LoadRunDoc(
        run_id="stuck-run", scenario_id="swipe_load", plan=plan, status="running", peak_rps=4000,
        shards=5, requested_by="admin-1", created_at=now, start_at=now, expire_at=now,
    )  # fmt: skip
    get_db().collection(collections.LOAD_RUNS).document("stuck-run").set(stuck.to_doc())
    hold_share("stuck-run", 4995, now - timedelta(seconds=1))  # its deadline has passed
    run_id = run(caller, "live_calls", sandbox_url, rps=12, durationSec=1)  # 5,007 with it
    reaped = caller.call("pack391_getLoadTestResults", {"runId": "stuck-run"}, role="ops")
    assert reaped.result["status"] == "aborted"
    held = LoadAdmissions(get_db()).held()
    assert "stuck-run" not in held and run_id in held
    wait_local_workers(60)
    wait_for(load_service(), run_id, 60)
    assert run_id not in LoadAdmissions(get_db()).held()  # released when it ended


def test_cleanup_removes_exactly_the_runs_data(caller: Caller, sandbox_url: str) -> None:
    keep = run(caller, "swipe_load", sandbox_url, rps=10, durationSec=1, shards=1)
    drop = run(caller, "payout_surge", sandbox_url, rps=10, durationSec=1, shards=1)
    wait_local_workers(60)
    db = get_db()
    swipes, _, payouts, _ = collections.LOAD_SANDBOX_COLLECTIONS
    assert len(list(db.collection(payouts).stream())) > 0
    res = caller.call("pack391_cleanupLoadTests", {"runId": drop})
    out = res.result
    assert out["runs"] == 1 and out["syntheticDocuments"] > 0 and out["syntheticRedisKeys"] > 0
    assert out["runDocuments"] > 1
    assert list(db.collection(payouts).stream()) == []
    assert not db.collection(collections.LOAD_RUNS).document(drop).get().exists
    assert db.collection(collections.LOAD_RUNS).document(keep).get().exists
    assert {(s.to_dict() or {})["loadRunId"] for s in db.collection(swipes).stream()} == {keep}
    older = caller.call("pack391_cleanupLoadTests", {"olderThanDays": 0}).result
    assert older["runs"] == 1
    assert caller.call("pack391_cleanupLoadTests", {}).error["status"] == "INVALID_ARGUMENT"


def test_failover_log_shows_the_bundles_events_in_the_run_window(
    caller: Caller, sandbox_url: str
) -> None:
    run_id = run(caller, "event_purchase_spike", sandbox_url, rps=10, durationSec=2, shards=1)
    db = get_db()
    db.collection(collections.SCALING_DECISIONS).document("d1").set(
        {"at": datetime.now(UTC), "serviceId": "api-gateway", "action": "scale_up"}
    )
    db.collection(collections.SCALING_DECISIONS).document("old").set(
        {"at": datetime(2020, 1, 1, tzinfo=UTC), "serviceId": "api-gateway"}
    )
    time.sleep(2.5)  # inside the run's window (it starts 2 s after being recorded)
    db.collection(collections.ALERTS).document("a1").set(
        {"openedAt": datetime.now(UTC), "kind": "ddos", "title": "spike"}
    )
    wait_local_workers(60)
    out = caller.call("pack391_getLoadTestResults", {"runId": run_id}, role="ops").result
    kinds = {(e["kind"], e["id"]) for e in out["failoverLog"]}
    assert ("alert", "a1") in kinds
    assert ("scaling_decision", "old") not in kinds
