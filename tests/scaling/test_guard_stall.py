"""The scale guard while Firestore stalls: the run
answers within its budget, is recorded as skipped, scales nothing on data it could not
read, frees its locks, and the next run after the stall works as before. The emulator is
paused with SIGSTOP (``firestore_paused``), as ``pack391 chaos firestore-pause`` does."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis

from functions.scaling.api import isolation_state
from shared.edge_budget import skipped_runs
from shared.models.scaling import IsolationState
from tests.conftest import Backends, Caller, Pauser
from tests.fakes.http_api import FakeHttpApi, Recorded
from tests.scaling.test_scaling_functions import (
    GUARD,
    decisions,
    init,
    next_minute,
    report,
    service_doc,
)

STEP_BUDGET_MS = 1500
"""A scheduled run's budget in these tests (``PACK391_BUDGET_SCHEDULED_MS``): the guard's
Firestore steps wait at most this long (``shared.firestore.step``)."""

SLACK_SEC = 1.5
"""What a skipped run may take beyond one step's budget: the steps before the stalled one
(Redis lock, pushed metrics: milliseconds), the client library's last retry pause after the
deadline, and the scheduling of a shared 2-core machine running another worker."""

LOCKS = ("{pack391:scaling}:lock:guard", "{pack391:scaling}:lock:service:api-gateway")


@pytest.fixture
def hook() -> Iterator[FakeHttpApi]:
    with FakeHttpApi() as api:
        api.reply("POST", "/resize", 200, {"ok": True})
        yield api


@pytest.fixture
def spiking(caller: Caller, hook: FakeHttpApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry, api-gateway's CPU over target (the guard would scale it 3 -> 5), and
    the short budget."""
    init(caller)
    report(
        caller,
        serviceId="api-gateway",
        cpuPct=97.5,
        p95LatencyMs=380,
        requests=900,
        errors=0,
        resizeHookUrl=f"{hook.url}/resize",
    )
    monkeypatch.setenv("PACK391_BUDGET_SCHEDULED_MS", str(STEP_BUDGET_MS))
    monkeypatch.setenv("PACK391_FIRESTORE_STEP_MAX_MS", str(STEP_BUDGET_MS))


def timed_trigger(caller: Caller, at: Any) -> tuple[int, float]:
    started = time.monotonic()
    status = caller.trigger(GUARD, at)
    return status, time.monotonic() - started


def held_locks(backends: Backends) -> list[str]:
    client = redis.Redis.from_url(backends.redis_url)
    return [key for key in LOCKS if client.exists(key)]


@pytest.mark.usefixtures("spiking")
def test_a_run_during_a_stall_is_skipped_scales_nothing_and_the_next_one_scales(
    caller: Caller, backends: Backends, hook: FakeHttpApi, firestore_paused: Pauser
) -> None:
    before = service_doc("api-gateway")
    minute = next_minute()
    with firestore_paused():
        status, took = timed_trigger(caller, minute)
    assert status == 200  # answered: Cloud Scheduler does not retry into the stall
    assert took < STEP_BUDGET_MS / 1000 + SLACK_SEC, f"the run took {took:.2f}s"
    skipped = skipped_runs()[GUARD]
    assert skipped["dependency"] == "firestore"
    assert "firestore did not answer" in skipped["message"]
    # nothing decided: no resize, the registry and the decisions as they were
    assert hook.received("POST", "/resize") == []
    assert service_doc("api-gateway") == before
    assert decisions_of_all() == []
    assert isolation_state("api-gateway") is IsolationState.NONE
    assert held_locks(backends) == []  # released on the way out, not left to their TTL

    status, took = timed_trigger(caller, minute)  # the stall is over: a normal run
    assert status == 200 and took < 10, f"the run after the stall took {took:.2f}s"
    [decision] = decisions(_db(), "api-gateway")
    assert (decision["action"], decision["desiredInstances"]) == ("scale_up", 5)
    assert [r.body for r in hook.received("POST", "/resize")] == [
        {"serviceId": "api-gateway", "instances": 5}
    ]
    assert service_doc("api-gateway")["state"]["currentInstances"] == 5


@pytest.mark.usefixtures("spiking")
def test_a_stall_after_the_platform_call_leaves_an_intent_the_next_runs_converge_from(
    caller: Caller, backends: Backends, hook: FakeHttpApi, firestore_paused: Pauser
) -> None:
    """Firestore stops answering between the resize and the transaction that records it:
    the platform holds 5 instances, Firestore still 3 with the run's intent pending. The
    next run holds the service (its intent may still be in flight); once the intent is
    older than the operation timeout plus one interval, a run decides from what the
    platform holds and records 5."""
    with contextlib.ExitStack() as stall:

        def resize_then_stall(_req: Recorded, _m: re.Match[str]) -> tuple[int, Any]:
            stall.enter_context(firestore_paused())  # resumed when the stack closes
            return 200, {"ok": True}

        hook.on("POST", "/resize", resize_then_stall)
        minute = next_minute()
        status, took = timed_trigger(caller, minute)
    assert status == 200
    # the steps before the resize answered at once; the outcome's step waited its budget
    assert took < STEP_BUDGET_MS / 1000 + SLACK_SEC, f"the run took {took:.2f}s"
    assert skipped_runs()[GUARD]["dependency"] == "firestore"
    assert len(hook.received("POST", "/resize")) == 1
    state = service_doc("api-gateway")["state"]
    assert state["currentInstances"] == 3
    assert state["pending"]["desiredInstances"] == 5  # the intent, recorded before the call
    # (the other services' no-data decisions may have been saved before the stall began)
    assert decisions(_db(), "api-gateway") == []
    assert held_locks(backends) == []

    hook.reply("POST", "/resize", 200, {"ok": True})
    assert caller.trigger(GUARD, minute + timedelta(minutes=1)) == 200
    [held] = decisions(_db(), "api-gateway")
    assert held["action"] == "none" and held["desiredInstances"] == 3
    assert "to 5 instances in flight" in held["reasons"][0]
    assert len(hook.received("POST", "/resize")) == 1  # nothing sent twice

    # past the intent's limit (60 s operation + one 60 s interval): abandoned; the run
    # decides from the 5 instances the platform holds (and, the CPU still over target,
    # scales them on: ceil(5 x 97.5 / 65) = 8)
    assert caller.trigger(GUARD, minute + timedelta(minutes=3)) == 200
    last = decisions(_db(), "api-gateway")[-1]
    assert any("abandoned" in r for r in last["reasons"])
    assert (last["currentInstances"], last["desiredInstances"]) == (5, 8)
    state = service_doc("api-gateway")["state"]
    assert (state["currentInstances"], state["pending"]) == (8, None)
    assert [r.body["instances"] for r in hook.received("POST", "/resize")] == [5, 8]


def decisions_of_all() -> list[dict[str, Any]]:
    from shared import collections

    return [d.to_dict() or {} for d in _db().collection(collections.SCALING_DECISIONS).stream()]


def _db() -> Any:
    from shared.firestore import get_db

    return get_db()
