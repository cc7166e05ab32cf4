"""Budgets that act, end to end: an hour of failing calls in Redis as the edges record
them (a real edge's call is checked to land there too), the scheduled evaluator
(``pack391_evaluateSlos``, triggered as Cloud Scheduler triggers it) turns them into a
burn, and the burn reaches the two doors it shuts: the pre-deploy validator's
``error_budget`` gate and soft-launch signups. Lifting each opens its door again at once,
and the next run keeps the lift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.slo import policy
from shared.redis import get_redis
from shared.slo.recorder import SliRecorder, default_recorder, read_minutes
from tests.conftest import Backends, Caller
from tests.deploy_guard.test_deploy_functions import ENV
from tests.market.test_market_functions import configure, signup


def validate(caller: Caller) -> dict[str, Any]:
    result: dict[str, Any] = caller.call(
        "pack391_preDeployValidator", {"version": "v9", "environment": ENV, "services": ["api"]}
    ).result
    return result


def budget_gate(report: dict[str, Any]) -> dict[str, Any]:
    gate: dict[str, Any] = next(g for g in report["gates"] if g["name"] == "error_budget")
    return gate


def burning_hour() -> None:
    """The hour before the minute a run now evaluates, one call in five failed (the edge
    records the current minute; the rest of the hour is recorded as the edges would
    have recorded it)."""
    minute = policy.evaluated_minute(datetime.now(UTC))
    recorder = SliRecorder(get_redis, dict, flush_every_sec=3600)
    for back in range(60):
        at = policy.minute_start(minute - back) + timedelta(seconds=5)
        for i in range(20):
            recorder.record(at, ("class:general", "callable:app_feed"), i < 4, 15.0)
    recorder.flush()


def test_a_burn_freezes_deploys_and_pauses_admissions_until_lifted(
    caller: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK391_SLO_DEPLOY_FREEZE", "enforce")
    monkeypatch.setenv("PACK391_SLO_ADMISSIONS_PAUSE", "enforce")
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=100)
    assert signup(caller, "PL", "early")["signupAdmitted"] is True
    assert validate(caller)["passed"] is True  # nothing burns yet

    # a real edge's system failure is recorded as a bad event of its scopes
    bad = caller.call(
        "pack391_liftSloAction", {"action": "shed", "minutes": 5, "reason": "x y z"}, role="ops"
    )
    assert bad.error["status"] == "FAILED_PRECONDITION"  # the caller's error: a good event
    default_recorder().flush()
    now_minute = int(datetime.now(UTC).timestamp()) // 60
    seen = read_minutes(get_redis(), [now_minute - 1, now_minute])
    assert sum(m.get("callable:pack391_liftSloAction", {}).get("n", 0) for m in seen.values()) == 1

    burning_hour()
    assert caller.trigger("pack391_evaluateSlos", datetime.now(UTC)) == 200
    status = caller.call("pack391_getSloStatus", {}, role="ops").result["state"]
    assert status["scopes"]["platform"]["level"] == "page"
    assert status["actions"]["deploy_freeze"]["enforced"] is True
    assert status["actions"]["admissions_pause"]["enforced"] is True

    # the release is refused by the gate, naming the platform's burn
    refused = validate(caller)
    assert refused["passed"] is False
    gate = budget_gate(refused)
    assert gate["status"] == "fail"
    assert gate["evidence"]["frozenBy"] == ["platform"]
    # a new soft-launch signup is paused; the early user keeps the place
    paused = signup(caller, "PL", "late")
    assert (paused["signupAdmitted"], paused["reason"]) == (False, "paused_budget")
    assert signup(caller, "PL", "early")["reason"] == "already_admitted"

    # ops lift both: the doors open at once, before the next evaluation
    for action in ("deploy_freeze", "admissions_pause"):
        lifted = caller.call(
            "pack391_liftSloAction",
            {"action": action, "minutes": 15, "reason": "incident owned"},
            role="ops",
        ).result
        assert lifted["state"]["enforced"] is False
    assert budget_gate(validate(caller))["status"] == "pass"
    assert signup(caller, "PL", "late")["signupAdmitted"] is True
    # the next run keeps the lifts while the burn goes on
    assert caller.trigger("pack391_evaluateSlos", datetime.now(UTC)) == 200
    status = caller.call("pack391_getSloStatus", {}, role="ops").result["state"]
    assert status["actions"]["deploy_freeze"]["wanted"] is True
    assert status["actions"]["deploy_freeze"]["enforced"] is False
