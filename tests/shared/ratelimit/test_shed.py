"""Shedding: the error budgets' ``shed`` action in the rate limiter, against a real
redis-server (and a Redis Cluster), the snapshot written as the evaluator writes it
(:func:`shared.slo.actions.write_actions`).

A shed class is refused before any script runs (no bucket read, no round trip); staff and
trusted services never are; a shadowed shed is counted, not refused; no snapshot, an
expired one or a stale copy sheds nothing; each instance re-reads the snapshot at most
once a second with the other global flags."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis
from firebase_functions import https_fn

from shared import thresholds
from shared.firestore import get_db
from shared.models.slo import ActionMode, ActionsSnapshot, ActionState, SloAction
from shared.ratelimit import keys, middleware
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.door import BlockedAddresses
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.limiter import RateLimiter, Subject
from shared.ratelimit.middleware import rate_limited
from shared.ratelimit.policy import EndpointClass, Reason, ShedVerdict, shed_verdict
from shared.redis import get_redis
from shared.slo.actions import ACTIONS_KEY, read_shadow, write_actions
from stack.platform.server import create_app
from tests.conftest import Backends, Caller, RedisBackend, one_redis

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
AI, SWIPE, GENERAL, PAYMENT = (
    EndpointClass.AI,
    EndpointClass.SWIPE,
    EndpointClass.GENERAL,
    EndpointClass.PAYMENT,
)


def shed(
    mode: ActionMode = ActionMode.ENFORCE,
    classes: tuple[str, ...] = ("ai", "swipe"),
    at: datetime = NOW,
    *,
    wanted: bool = True,
    lifted: bool = False,
) -> ActionsSnapshot:
    """A snapshot whose ``shed`` action is wanted for ``classes`` in ``mode`` (enforced
    when the mode is ``enforce``, unless ``lifted``)."""
    state = ActionState(
        action=SloAction.SHED,
        mode=mode,
        wanted=wanted,
        enforced=wanted and mode is ActionMode.ENFORCE and not lifted,
        since=at if wanted else None,
        reason="platform availability burns at 15.2x over 1 h and 5 min",
        scopes=["platform"],
        classes=list(classes),
        lifted_until=at + timedelta(minutes=30) if lifted else None,
        lifted_by="ops-1" if lifted else None,
    )
    return ActionsSnapshot(at=at, actions={SloAction.SHED: state})


def who(uid: str | None = "alice", ip: str = "198.51.100.1") -> Subject:
    return Subject(uid, ClientInfo(ip, None, "fp-1"))


# ------------------------------------------------------------------ the verdict (pure)

ENF, SHA, OFF = ActionMode.ENFORCE, ActionMode.SHADOW, ActionMode.OFF


@pytest.mark.parametrize(
    ("snapshot", "cls", "principal", "verdict"),
    [
        (None, AI, False, ShedVerdict.NONE),
        (shed(ENF), AI, False, ShedVerdict.ENFORCE),
        (shed(ENF), SWIPE, False, ShedVerdict.ENFORCE),
        (shed(ENF), GENERAL, False, ShedVerdict.NONE),  # not among the classes
        (shed(ENF), PAYMENT, False, ShedVerdict.NONE),
        (shed(ENF), AI, True, ShedVerdict.NONE),  # staff, a trusted service
        (shed(ENF, lifted=True), AI, False, ShedVerdict.NONE),  # an ops lift
        (shed(ENF, wanted=False), AI, False, ShedVerdict.NONE),  # the burn stopped
        (shed(SHA), AI, False, ShedVerdict.SHADOW),
        (shed(SHA), GENERAL, False, ShedVerdict.NONE),
        (shed(SHA), AI, True, ShedVerdict.NONE),
        (shed(SHA, wanted=False), AI, False, ShedVerdict.NONE),
        (shed(OFF), AI, False, ShedVerdict.NONE),
        (ActionsSnapshot(at=NOW), AI, False, ShedVerdict.NONE),  # no shed action at all
    ],
)
def test_shed_verdict(
    snapshot: ActionsSnapshot | None, cls: EndpointClass, principal: bool, verdict: ShedVerdict
) -> None:
    assert shed_verdict(snapshot, cls, principal) is verdict


# ------------------------------------------------------------------ the limiter


@pytest.fixture
def limiter(redis_backend: RedisBackend) -> RateLimiter:
    return RateLimiter(get_redis(), GeoRules(get_db, first_wait_sec=10))


def publish(limiter: RateLimiter, snapshot: ActionsSnapshot) -> None:
    """The evaluator's write, and this instance's next read (it re-reads within 1 s)."""
    write_actions(get_redis(), snapshot)
    limiter.blocked.invalidate()


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval")
    )


def test_an_enforced_shed_refuses_its_classes_only(limiter: RateLimiter) -> None:
    publish(limiter, shed(ENF, ("ai", "swipe")))
    for cls in (AI, SWIPE):
        refused = limiter.decide(cls, who(), NOW)
        assert (refused.allowed, refused.reason) == (False, Reason.SHED)
        assert refused.retry_after_sec == thresholds.SLO_SHED_RETRY_SEC
        assert refused.limit == thresholds.RATE_LIMIT_PER_MIN[cls.value]
        assert refused.endpoint_class is cls
    for cls in (GENERAL, PAYMENT, EndpointClass.AUTH, EndpointClass.WALLET):
        decision = limiter.decide(cls, who(), NOW)
        assert (decision.allowed, decision.reason) == (True, Reason.OK), cls
    # staff and trusted services are never shed, whatever their function's class
    for flags in ({"staff": True}, {"service": True}):
        kept = limiter.decide(AI, who("ops-1"), NOW, **flags)
        assert (kept.allowed, kept.reason) == (True, Reason.OK), flags


def test_a_shed_request_reads_no_bucket_and_is_counted_as_denied(
    limiter: RateLimiter, redis_backend: RedisBackend
) -> None:
    publish(limiter, shed(ENF, ("ai",)))
    limiter.decide(GENERAL, who(), NOW)  # the snapshot is read now, with the global flags
    servers = (
        [redis_backend.client]
        if redis_backend.mode == "single"
        else [
            redis.Redis(host=n.host, port=n.port)
            for n in redis_backend.client.get_primaries()  # type: ignore[attr-defined]
        ]
    )
    before = [evalsha_calls(s) for s in servers]
    for i in range(25):  # far past ai's per-user limit: nothing is spent, nothing is read
        assert limiter.decide(AI, who("alice", f"203.0.113.{i}"), NOW).reason is Reason.SHED
    assert [evalsha_calls(s) for s in servers] == before
    assert redis_backend.client.exists(keys.bucket("ai", "u", "alice")) == 0
    limiter.flush_counters()
    counters = redis_backend.client.hgetall(keys.stats(keys.minute_of(NOW)))
    assert (counters["den:ai"], counters["why:shed"], counters["req:ai"]) == ("25", "25", "25")


def test_a_shadowed_shed_counts_once_per_request_and_refuses_nothing(
    limiter: RateLimiter, redis_backend: RedisBackend
) -> None:
    publish(limiter, shed(SHA, ("ai", "swipe")))
    results = [limiter.decide(cls, who(), NOW) for cls in (AI, AI, SWIPE, GENERAL)]
    staff = limiter.decide(AI, who("ops-1"), NOW, staff=True)
    assert all(r.allowed and r.reason is Reason.OK for r in [*results, staff])
    assert limiter.shedding.shadow.pending() == 3  # ai twice, swipe once; not general, not staff
    assert read_shadow(get_redis(), keys.minute_of(NOW)) == {}  # batched: no round trip yet
    limiter.flush_counters()
    assert read_shadow(get_redis(), keys.minute_of(NOW)) == {"shed": 3}
    assert limiter.shedding.shadow.pending() == 0
    limiter.decide(AI, who("bob"), NOW)
    limiter.flush_counters()
    assert read_shadow(get_redis(), keys.minute_of(NOW)) == {"shed": 4}
    ttl = redis_backend.client.ttl(f"pack391:slo:shadow:{keys.minute_of(NOW)}")
    assert 0 < ttl <= thresholds.SLO_RECENT_MINUTES_TTL_SEC


def test_no_snapshot_an_expired_one_or_a_stale_copy_sheds_nothing(
    limiter: RateLimiter, redis_backend: RedisBackend
) -> None:
    assert limiter.decide(AI, who(), NOW).allowed  # none written: nothing shed
    publish(limiter, shed(ENF, ("ai",)))
    assert limiter.decide(AI, who(), NOW).reason is Reason.SHED
    # the evaluator stopped: its copy outlived the snapshot's TTL (here, on this instance)
    late = NOW + timedelta(seconds=thresholds.SLO_ACTIONS_TTL_SEC + 1)
    assert limiter.blocked.slo_actions(int(late.timestamp() * 1000)) is None
    assert limiter.decide(AI, who("bob", "198.51.100.2"), late).allowed
    # Redis's own TTL: the key expires and the next read finds none
    redis_backend.client.pexpire(ACTIONS_KEY, 1)
    deadline = time.monotonic() + 5
    while redis_backend.client.exists(ACTIONS_KEY):
        assert time.monotonic() < deadline, "the snapshot's key did not expire"
        time.sleep(0.005)
    limiter.blocked.invalidate()
    assert limiter.decide(AI, who("carol", "198.51.100.3"), NOW).allowed
    # an unreadable snapshot is no action either
    redis_backend.client.set(ACTIONS_KEY, "{not json", ex=60)
    limiter.blocked.invalidate()
    assert limiter.decide(AI, who("dave", "198.51.100.4"), NOW).allowed


@one_redis  # the refresh's pipeline runs on the cluster in every test above
def test_the_snapshot_is_re_read_at_most_once_a_second(redis_backend: RedisBackend) -> None:
    clock = [100.0]
    blocked = BlockedAddresses(get_redis(), refresh_sec=1.0, monotonic=lambda: clock[0])
    now_ms = int(NOW.timestamp() * 1000)
    assert blocked.slo_actions(now_ms) is None  # the first read: nothing yet
    write_actions(get_redis(), shed(ENF, ("ai",)))
    clock[0] += 0.999
    assert blocked.slo_actions(now_ms) is None  # the copy of 0.999 s ago stands
    clock[0] += 0.001
    seen = blocked.slo_actions(now_ms)
    assert seen is not None and seen.enforced(SloAction.SHED) is not None
    redis_backend.client.delete(ACTIONS_KEY)  # the burn stopped and the evaluator said so
    clock[0] += 0.5
    assert blocked.slo_actions(now_ms) == seen  # until this instance's next read
    clock[0] += 0.5
    assert blocked.slo_actions(now_ms) is None


# ------------------------------------------------------------------ through a callable


@https_fn.on_call()
@rate_limited(EndpointClass.AI)
def companion(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    """What another bundle of the app writes: an AI companion's callable."""
    return {"ok": True}


@https_fn.on_call()
@rate_limited(EndpointClass.GENERAL)
def profile(req: https_fn.CallableRequest[Any]) -> dict[str, Any]:
    return {"ok": True}


@pytest.fixture
def app_bundle(backends: Backends, functions: dict[str, Any]) -> Caller:
    app = create_app(cast(Any, {"companion": companion, "profile": profile}), backends.project)
    return Caller(app, backends.project)


def test_a_shed_call_is_resource_exhausted_with_the_reason(
    app_bundle: Caller, redis_backend: RedisBackend
) -> None:
    write_actions(get_redis(), shed(ENF, ("ai",), at=datetime.now(UTC)))
    middleware.default_limiter().blocked.invalidate()
    refused = app_bundle.call("companion", {}, role="user", uid="u1")
    assert refused.status == 429
    error = refused.error
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert "shed" in error["message"]
    details = error["details"]
    assert (details["reason"], details["endpointClass"], details["retryAfterSec"]) == (
        "shed",
        "ai",
        thresholds.SLO_SHED_RETRY_SEC,
    )
    assert app_bundle.call("profile", {}, role="user", uid="u1").result == {"ok": True}
    # a trusted service's own call is never shed
    assert app_bundle.call("companion", {}, role="service", uid="svc-1").result == {"ok": True}
