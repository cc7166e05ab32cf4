"""Panic passes that need trust, against the emulator and redis-server
through the callable protocol: only established accounts get a pass, and a pass never
skips a country cap."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.ddos.redis_store import TrafficStore
from shared import collections
from shared.clock import ms
from shared.firestore import get_db
from shared.ratelimit import keys
from shared.ratelimit.middleware import default_limiter, geo_rules
from shared.redis import get_redis
from tests.conftest import Backends, Caller, CallResult
from tests.redis_now import redis_now

pytestmark = pytest.mark.usefixtures("redis_backend")
"""Every test here runs on one Redis and again on a Redis Cluster (tests/conftest.py)."""

PANIC = "pack391_panicEscalation"
CHECK = "pack391_checkRateLimit"
GEO = "pack391_setGeoThrottle"

DAY_SEC = 24 * 3600
ANONYMOUS: dict[str, Any] = {"firebase": {"identities": {}, "sign_in_provider": "anonymous"}}


def signed_in_ago(seconds: float, **claims: Any) -> dict[str, Any]:
    """Claims of an account whose sign-in (``auth_time``) was ``seconds`` ago."""
    return {"auth_time": int(time.time() - seconds), **claims}


def ask_pass(caller: Caller, uid: str, claims: dict[str, Any] | None) -> CallResult:
    headers = {}
    if claims is not None:
        headers["Authorization"] = f"Bearer {caller.token('user', uid, **claims)}"
    response = caller.app.test_client().post(caller.url(PANIC), json={"data": {}}, headers=headers)
    return CallResult(response.status_code, response.get_json())


def passes() -> list[dict[str, Any]]:
    return [s.to_dict() or {} for s in get_db().collection(collections.PANIC_PASSES).stream()]


@pytest.mark.parametrize(
    ("account", "claims"),
    [
        ("anonymous", {**ANONYMOUS, **signed_in_ago(2 * DAY_SEC)}),
        ("new", signed_in_ago(60, email_verified=True)),  # a minute-old account
        ("new", {"auth_time": None}),  # no sign-in time: never established
        ("staff", signed_in_ago(2 * DAY_SEC, ops=True)),
        ("staff", signed_in_ago(2 * DAY_SEC, admin=True)),
        ("service", signed_in_ago(2 * DAY_SEC, service=True)),
    ],
)
def test_a_pass_needs_an_established_account(
    caller: Caller, backends: Backends, account: str, claims: dict[str, Any]
) -> None:
    refused = ask_pass(caller, "asker", claims)
    assert (refused.status, refused.error["status"]) == (400, "FAILED_PRECONDITION")
    details = refused.error["details"]
    assert (details["reason"], details["account"], details["minAgeMin"]) == (
        "not_established",
        account,
        60,
    )
    assert "established" in refused.error["message"]
    # nothing granted, nothing used, nothing recorded
    client = redis_now()
    day = datetime.now(UTC).strftime("%Y%m%d")
    assert client.exists(keys.panic_pass("asker"), keys.panic_count("asker", day)) == 0
    assert passes() == []


def test_established_accounts_get_passes_after_the_configured_age(
    caller: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ask_pass(caller, "nobody", None).error["status"] == "UNAUTHENTICATED"
    old = ask_pass(caller, "old", signed_in_ago(2 * DAY_SEC)).result
    assert (old["granted"], old["passesLeftToday"]) == (True, 2)

    monkeypatch.setenv("PACK391_ESTABLISHED_MIN_AGE_MIN", "5")
    early = ask_pass(caller, "fresh", signed_in_ago(2 * 60))
    details = early.error["details"]
    assert (details["reason"], details["account"], details["minAgeMin"]) == (
        "not_established",
        "new",
        5,
    )
    assert "signed in 2 min ago" in early.error["message"]
    assert "PACK391_ESTABLISHED_MIN_AGE_MIN" in early.error["message"]
    later = ask_pass(caller, "fresh", signed_in_ago(10 * 60)).result
    assert later["granted"] is True
    assert sorted(p["uid"] for p in passes()) == ["fresh", "old"]


def test_a_pass_holder_in_ddos_mode_is_still_capped_by_country(
    caller: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During DDoS mode a pass restores the normal limit and nothing more: the region-wide
    cap an operator set for a country still applies to the pass holder."""
    cap = 3
    set_geo = caller.call(
        GEO, {"country": "BR", "multiplier": 1.0, "regionCapPerMin": cap, "reason": "BR cap"}
    )
    assert set_geo.status == 200, set_geo.body
    rules = geo_rules()
    rules.get("BR")
    rules.wait_idle()
    rule = rules.get("BR")
    assert rule is not None and rule.region_cap_per_min == cap

    vip = signed_in_ago(2 * DAY_SEC, email_verified=True)
    granted = ask_pass(caller, "vip", vip).result
    assert granted["granted"] is True
    now = datetime.now(UTC)
    TrafficStore(get_redis()).extend_ddos_mode(
        ms(now + timedelta(minutes=15)), "test: an attack is on", now
    )
    default_limiter().blocked.invalidate()  # this instance sees it now, others within 1 s

    # behind a load balancer that reports each client's region
    monkeypatch.setenv("PACK391_FRONT_DOOR", "load-balancer")
    token = caller.token("user", "vip", **vip)
    client = caller.app.test_client()

    def check() -> dict[str, Any]:
        response = client.post(
            caller.url(CHECK),
            json={"data": {"endpointClass": "swipe"}},
            headers={
                "Authorization": f"Bearer {token}",
                "X-Client-Region": "BR",
                "X-Forwarded-For": "198.51.100.20, 34.120.0.1",
            },
        )
        body = response.get_json()
        assert response.status_code == 200, body
        result: dict[str, Any] = body["result"]
        return result

    answers = [check() for _ in range(cap + 2)]
    assert [a["reason"] for a in answers] == ["panic_pass"] * cap + ["country_cap"] * 2
    assert [a["allowed"] for a in answers] == [True] * cap + [False] * 2
    assert answers[0]["limit"] == 100  # the pass did restore the normal swipe limit
