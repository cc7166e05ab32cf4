"""The SLI recorder on a real redis-server: what a call adds, when it reaches Redis,
and what happens when Redis does not answer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis
from firebase_functions import https_fn
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.ratelimit.middleware import rate_limited
from shared.ratelimit.policy import EndpointClass
from shared.slo.objectives import Objective
from shared.slo.recorder import (
    MAX_MINUTES_HELD,
    SliRecorder,
    default_recorder,
    is_bad_code,
    minute_key,
    read_minutes,
    write_scope_counts,
)
from stack.platform.server import create_app
from tests.conftest import Backends, Caller, Pauser

AT = datetime(2026, 12, 7, 12, 0, 5, tzinfo=UTC)
MINUTE = int(AT.timestamp()) // 60


@pytest.fixture
def client(backends: Backends) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(backends.redis_url, socket_timeout=0.5)
    yield c
    c.close()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(
    ("status", "bad"),
    [
        (None, False),
        ("internal", True),
        ("unavailable", True),
        ("deadline-exceeded", True),
        ("DEADLINE_EXCEEDED", True),
        ("unknown", True),
        ("data-loss", True),
        ("invalid-argument", False),  # the caller's error: the service worked
        ("permission-denied", False),
        ("resource-exhausted", False),  # a rate limit doing its job
        ("failed-precondition", False),
        ("not-found", False),
    ],
)
def test_bad_codes(status: str | None, bad: bool) -> None:
    assert is_bad_code(status) is bad


def test_counts_reach_redis_once_a_flush_is_due(client: redis.Redis) -> None:
    clock = Clock()
    overrides = {"class:payment": Objective(99.9, 800, 95)}
    rec = SliRecorder(lambda: client, lambda: overrides, flush_every_sec=1.0, monotonic=clock)
    scopes = ("callable:pay", "class:payment")
    rec.record(AT, scopes, False, 500.0)  # slow for the platform (400 ms), not for payment
    rec.record(AT, scopes, True, 900.0)  # failed, and slow for both
    assert client.exists(minute_key(MINUTE)) == 0  # not due yet: held in memory
    clock.t += 1.0
    rec.record(AT + timedelta(seconds=1), scopes, False, 10.0)  # due: this call flushes
    got = read_minutes(client, [MINUTE])[MINUTE]
    assert got == {
        "platform": {"n": 3, "bad": 1, "slow": 2},
        "callable:pay": {"n": 3, "bad": 1, "slow": 2},
        "class:payment": {"n": 3, "bad": 1, "slow": 1},
    }
    assert 0 < client.ttl(minute_key(MINUTE)) <= 7 * 3600


def test_instances_add_up_and_a_minute_boundary_splits(client: redis.Redis) -> None:
    a = SliRecorder(lambda: client, dict, flush_every_sec=3600)
    b = SliRecorder(lambda: client, dict, flush_every_sec=3600)
    a.record(AT, ("class:ai",), False, 1.0)
    b.record(AT, ("class:ai",), False, 1.0)
    b.record(AT + timedelta(seconds=60), ("class:ai",), False, 1.0)
    assert a.flush() == 1
    assert b.flush() == 2
    got = read_minutes(client, [MINUTE, MINUTE + 1])
    assert got[MINUTE]["class:ai"]["n"] == 2
    assert got[MINUTE + 1]["class:ai"]["n"] == 1


def test_a_failed_flush_keeps_the_counts_for_the_next(
    client: redis.Redis, redis_paused: Pauser
) -> None:
    rec = SliRecorder(lambda: client, dict, flush_every_sec=3600)
    rec.record(AT, ("class:ai",), True, 1.0)
    with redis_paused():
        assert rec.flush() == 0  # timed out: kept
    rec.record(AT, ("class:ai",), False, 1.0)
    assert rec.flush() == 1
    assert read_minutes(client, [MINUTE])[MINUTE]["class:ai"] == {"n": 2, "bad": 1, "slow": 0}
    assert rec.dropped == 0


def test_an_unwritable_redis_bounds_what_an_instance_holds() -> None:
    # nothing listens on port 1; no retries (redis-py retries a refused connect with
    # backoff by default: seconds per flush)
    dead = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    rec = SliRecorder(lambda: dead, dict, flush_every_sec=3600)
    for m in range(MAX_MINUTES_HELD + 3):
        rec.record(AT + timedelta(minutes=m), (), False, 1.0)
        rec.flush()
    assert rec.dropped == 3  # the three oldest minutes, one call each


def test_recording_never_fails_the_call() -> None:
    def broken() -> dict[str, Objective]:
        raise RuntimeError("objectives unreadable")

    rec = SliRecorder(lambda: redis.Redis(port=1, retry=Retry(NoBackoff(), 0)), broken, 0)
    rec.record(AT, ("class:ai",), False, 1.0)  # logged, not raised


def test_service_counts_are_set_not_added(client: redis.Redis) -> None:
    counts = {"service:chat": {"n": 600, "bad": 6, "slow": 0}}
    write_scope_counts(client, MINUTE, counts)
    write_scope_counts(client, MINUTE, counts)  # a re-run of the minute
    assert read_minutes(client, [MINUTE])[MINUTE]["service:chat"] == {"n": 600, "bad": 6, "slow": 0}


@https_fn.on_call()
@rate_limited(EndpointClass.AI)
def companion_reply(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    """What another bundle of the app writes: a callable behind the rate limiter, which
    records its answers. ``mode`` picks the answer."""
    mode = (req.data or {}).get("mode")
    if mode == "crash":
        raise RuntimeError("the model server went away")
    if mode == "refuse":
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode.INVALID_ARGUMENT, "mode: refused")
    if mode == "down":
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode.UNAVAILABLE, "model busy")
    return {"ok": True}


def test_an_app_handler_behind_the_limiter_records_its_answers(
    backends: Backends, functions: dict[str, Any], client: redis.Redis
) -> None:
    app = Caller(
        create_app(cast(Any, {"companion_reply": companion_reply}), backends.project),
        backends.project,
    )
    for mode in ("ok", "ok", "refuse", "crash", "down"):
        app.call("companion_reply", {"mode": mode}, role="user", uid="u1")
    default_recorder().flush()
    minute = int(datetime.now(UTC).timestamp()) // 60
    got = read_minutes(client, [minute - 1, minute])
    total: dict[str, dict[str, int]] = {}
    for per in got.values():
        for scope, c in per.items():
            into = total.setdefault(scope, {"n": 0, "bad": 0, "slow": 0})
            for k in into:
                into[k] += c[k]
    # INTERNAL (an exception) and UNAVAILABLE are the system's; INVALID_ARGUMENT is not
    assert total["callable:companion_reply"]["n"] == 5
    assert total["callable:companion_reply"]["bad"] == 2
    assert total["class:ai"] == total["callable:companion_reply"]
