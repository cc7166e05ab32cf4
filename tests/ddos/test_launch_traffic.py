"""Protection that is right for launch-day traffic (carrier NAT, IPv6, app
backends calling for their users, floods without tokens), against the real Firestore
emulator and redis-server through the callable protocol. Each test failed on the code
before this protection (the reason is in its docstring) and passes after."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from functions.ddos.wiring import protection_service
from shared import collections
from shared.firestore import get_db
from shared.ratelimit import keys
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.limiter import Credential, Subject
from shared.ratelimit.middleware import default_limiter
from shared.ratelimit.policy import EndpointClass
from tests.conftest import Backends, Caller, one_redis
from tests.redis_now import redis_now

pytestmark = pytest.mark.usefixtures("redis_backend")
"""Every test here runs on one Redis and again on a Redis Cluster (tests/conftest.py)."""

CHECK = "pack391_checkRateLimit"
SHIELD = "pack391_walletBruteForceShield"
FAILURE = "pack391_recordAuthFailure"
STATS = "pack391_getDDoSStats"

DAY = 24 * 3600


def established(caller: Caller, uid: str) -> str:
    """A registered user who signed in two days ago."""
    return caller.token("user", uid, auth_time=int(time.time()) - 2 * DAY)


def post(
    caller: Caller, name: str, data: Any, token: str | None, address: str = "127.0.0.1"
) -> tuple[int, dict[str, Any]]:
    """A callable request from ``address`` (the TCP peer: the tests run in direct mode)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    client = caller.app.test_client()
    response = client.post(
        caller.url(name),
        json={"data": data},
        headers=headers,
        environ_base={"REMOTE_ADDR": address},
    )
    body = response.get_json()
    assert body is not None, f"HTTP {response.status_code} is not the callable protocol"
    return response.status_code, body


def check(caller: Caller, cls: str, token: str | None, address: str) -> dict[str, Any]:
    status, body = post(caller, CHECK, {"endpointClass": cls}, token, address)
    assert status == 200, body
    result: dict[str, Any] = body["result"]
    return result


def reason_of(body: dict[str, Any]) -> str:
    return str(body["error"]["details"]["reason"])


def redis_of(backends: Backends) -> redis.Redis:
    return redis_now(decode_responses=True)


def detect(at: datetime) -> Any:
    default_limiter().flush_counters()
    return protection_service().detect(at)


def this_minute() -> datetime:
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0)
    return max(now, start + timedelta(seconds=12))


# ------------------------------------------------------------------ keys


@pytest.mark.usefixtures("door_clock")
def test_an_ipv6_client_is_one_client_per_64(caller: Caller) -> None:
    """Before: keyed per /128, each of a /64's addresses had a fresh bucket: the 4th
    payment check from a new address of the same /64 was allowed."""
    token = established(caller, "v6-user")
    answers = [check(caller, "payment", token, f"2001:db8:1:2::{i + 1:x}") for i in range(4)]
    assert [a["allowed"] for a in answers] == [True, True, True, False]
    # the user's own bucket refused it; an attacker rotating /128s without a token meets one
    # address bucket for the whole /64
    statuses = [
        post(caller, CHECK, {"endpointClass": "swipe"}, None, f"2001:db8:9:9::{i:x}")[0]
        for i in range(1, 70)
    ]
    assert statuses.count(401) == 60 and statuses.count(429) == 9


@pytest.mark.usefixtures("door_clock")
def test_an_ipv4_mapped_address_is_the_ipv4_address(caller: Caller) -> None:
    """Before: ``::ffff:198.51.100.7`` and ``198.51.100.7`` were two clients."""
    for i in range(60):
        address = "::ffff:198.51.100.7" if i % 2 else "198.51.100.7"
        assert post(caller, CHECK, {"endpointClass": "swipe"}, None, address)[0] == 401
    status, body = post(caller, CHECK, {"endpointClass": "swipe"}, None, "198.51.100.7")
    assert (status, reason_of(body)) == (429, "preauth_limit")


def test_one_user_behind_a_carrier_nat_never_uses_up_everyone_s_quota(caller: Caller) -> None:
    """Before: the address bucket was the per-user limit: one user's 3 payment checks a
    minute answered ``ip_limit`` to everyone else behind the same address."""
    nat = "100.64.7.7"
    first = [check(caller, "payment", established(caller, "sub-1"), nat) for _ in range(4)]
    assert [a["allowed"] for a in first] == [True, True, True, False]
    assert first[-1]["reason"] == "user_limit"
    for n in range(2, 12):  # ten more subscribers behind the same address
        answer = check(caller, "payment", established(caller, f"sub-{n}"), nat)
        assert (answer["allowed"], answer["reason"]) == (True, "ok"), n


def test_the_address_quota_grows_with_its_established_users(backends: Backends) -> None:
    """An address's own bucket holds (20 + established users seen behind it) limits: 40
    established users seen make the payment quota 3 x 60 = 180 a minute."""
    limiter = default_limiter()
    now = datetime.now(UTC)
    nat = ClientInfo("100.64.8.8", None, "app")
    for i in range(40):
        limiter.decide(EndpointClass.GENERAL, Subject(f"e{i}", nat, established=True), now)
    limiter.flush_counters()
    fresh = [
        limiter.decide(EndpointClass.PAYMENT, Subject(f"n{i}", nat), now)
        for i in range(60)
        for _ in range(3)
    ]
    assert all(d.allowed for d in fresh)
    extra = limiter.decide(EndpointClass.PAYMENT, Subject("n-extra", nat), now)
    assert (extra.allowed, extra.reason.value) == (False, "ip_limit")


def test_an_app_backend_checking_for_its_users_never_blocks_itself(
    caller: Caller, backends: Backends
) -> None:
    """Before: counted at the door under its egress address (0 users behind it), about 10
    checks a second got the egress address blocked for an hour, and every user's check
    then answered ``ip_block``."""
    backend = caller.token("service", "app-backend")
    egress = "10.20.30.40"
    for i in range(700):
        subject = {"uid": f"u{i % 350}", "ip": f"203.0.113.{i % 200}", "established": True}
        status, body = post(
            caller, CHECK, {"endpointClass": "swipe", "subject": subject}, backend, egress
        )
        assert status == 200, body
    report = detect(this_minute())
    assert egress not in report.blocked_sources
    assert not redis_of(backends).exists(keys.block("ddos", "ip", egress))
    later = post(
        caller,
        CHECK,
        {"endpointClass": "swipe", "subject": {"uid": "u1", "ip": "203.0.113.1"}},
        backend,
        egress,
    )
    assert later[0] == 200 and later[1]["result"]["allowed"] is True
    # counted once, under each subject's address, never under the egress address
    minute = keys.minute_of(datetime.now(UTC))
    client = redis_of(backends)
    assert not any(client.zscore(keys.stats_ips(m), egress) for m in (minute - 1, minute))


@pytest.mark.parametrize(
    ("xff", "key"),
    [
        # through the load balancer: <client's words>, <client>, <forwarding rule>
        ("6.6.6.6, 198.51.100.1, 34.120.0.1", "198.51.100.1"),
        # around it, to the function's own URL: Google's front end appends the real peer
        ("6.6.6.6, 34.120.0.1, 203.0.113.5", "203.0.113.5"),
        ("198.51.100.1, 203.0.113.5", "203.0.113.5"),
    ],
)
def test_load_balancer_mode_keys_a_bypass_by_its_real_address(xff: str, key: str) -> None:
    """Before: a client calling the function URL directly picked its own address (and a new
    one per request: no bucket ever filled) by writing X-Forwarded-For."""
    from shared.ratelimit.client import client_info, front_door_config

    door = front_door_config(
        "load-balancer", -1, "X-Client-Region", [], lb_addresses=["34.120.0.1"], deployed=True
    )
    headers = {"X-Forwarded-For": xff, "X-Client-Region": "PL"}
    client = client_info("169.254.1.1", headers, door)
    assert client.ip == key
    assert client.country == ("PL" if xff.endswith("34.120.0.1") else None)


def test_load_balancer_mode_needs_its_addresses_when_deployed() -> None:
    from shared.ratelimit.client import front_door_config

    with pytest.raises(ValueError, match="PACK391_LB_ADDRESSES"):
        front_door_config(
            "load-balancer", -1, "X-Client-Region", [], lb_addresses=[], deployed=True
        )


# ------------------------------------------------------------------ responses


def test_one_address_never_switches_on_ddos_mode(caller: Caller, backends: Backends) -> None:
    """Before: any single_source_flood (one address over 600/min, with or without a token,
    CORS preflights included) switched on DDoS mode: every limit halved for everyone."""
    flooder = "203.0.113.66"
    for _ in range(700):
        post(caller, CHECK, {"endpointClass": "swipe"}, None, flooder)
    report = detect(this_minute())
    assert report.mitigated is False
    assert not redis_of(backends).exists(keys.DDOS_MODE)
    assert not redis_of(backends).exists(keys.ANON_LOCKDOWN)
    assert report.blocked_sources == [flooder]
    # everyone else keeps their normal limits
    answer = check(caller, "payment", established(caller, "bystander"), "198.51.100.20")
    assert (answer["allowed"], answer["limit"]) == (True, 3)


def test_cors_preflights_are_answered_not_counted(caller: Caller, backends: Backends) -> None:
    """Before: every OPTIONS was counted as a source (700 preflights made a flood)."""
    client = caller.app.test_client()
    for _ in range(700):
        response = client.options(
            caller.url(CHECK),
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
            environ_base={"REMOTE_ADDR": "198.51.100.33"},
        )
        assert response.status_code in (200, 204)
    default_limiter().flush_counters()
    minute = keys.minute_of(datetime.now(UTC))
    client_redis = redis_of(backends)
    counted = sum(int(client_redis.hget(keys.stats(m), "all") or 0) for m in (minute - 1, minute))
    assert counted == 0
    assert detect(this_minute()).detections == []


def shared_address(limiter: Any, ip: str, now: datetime, users: int = 25) -> None:
    """``users`` established users behind ``ip``, a few requests each, this minute."""
    client = ClientInfo(ip, None, "app")
    for i in range(users * 3):
        subject = Subject(f"{ip}-user-{i % users}", client, established=True)
        limiter.decide(EndpointClass.SWIPE, subject, now)
    limiter.flush_counters()


def test_a_held_block_still_refuses_traffic_without_a_token(
    caller: Caller, backends: Backends
) -> None:
    """Before: a flooded shared address was "held by the blast-radius cap", which meant
    unmitigated: the token-less flood went on."""
    nat = "100.64.1.1"
    # 20 established users: shared; 1,500 requests a minute is more than they explain
    shared_address(default_limiter(), nat, datetime.now(UTC), users=20)
    for _ in range(1500):
        post(caller, CHECK, {"endpointClass": "swipe"}, None, nat)
    report = detect(this_minute())
    assert [(a.kind, a.target) for a in report.held] == [("block_address", nat)]
    default_limiter().blocked.invalidate()
    status, body = post(caller, CHECK, {"endpointClass": "swipe"}, None, nat)
    assert (status, reason_of(body)) == (429, "anon_refused")
    # a signed-in user behind it is served as before
    assert check(caller, "swipe", established(caller, f"{nat}-user-1"), nat)["allowed"] is True
    (alert,) = [
        a.to_dict() or {}
        for a in get_db().collection(collections.ALERTS).stream()
        if (a.to_dict() or {}).get("kind") == "single_source_flood"
    ]
    assert "held for a human" in alert["title"]
    assert [a["action"] for a in alert["evidence"]["actions"]] == ["refuse_anonymous"]


def test_sock_puppets_do_not_shield_a_flooding_address(caller: Caller, backends: Backends) -> None:
    """Before: every signed-in user counted towards "shared address": 20 fresh accounts at
    one call a minute made the flooding address impossible to block."""
    den = "203.0.113.77"
    for i in range(25):
        check(caller, "swipe", caller.token("user", f"puppet-{i}"), den)  # minutes-old accounts
    anonymous = caller.token("user", "anon", firebase={"sign_in_provider": "anonymous"})
    for _ in range(5):
        check(caller, "swipe", anonymous, den)
    for _ in range(700):
        post(caller, CHECK, {"endpointClass": "swipe"}, None, den)
    report = detect(this_minute())
    assert report.blocked_sources == [den]
    assert report.held == []


# On one Redis only: a long flood of puppets: the over-mode counters run on the cluster in
# test_sock_puppets_do_not_shield_a_flooding_address.
@one_redis
def test_puppets_near_their_limits_do_not_hold_ddos_mode(backends: Backends) -> None:
    """Before: the mode's blast radius was the share of *requests* over half a limit, so a
    few accounts (any accounts, staff included) running near their limits pushed it over
    the cap and a real distributed attack went unmitigated."""
    limiter = default_limiter()
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=6)
    for m in range(5):  # usual minutes: 100 established users, a few requests each ...
        at = t0 + timedelta(minutes=m)
        for i in range(300):
            who = Subject(
                f"e{i % 100}", ClientInfo(f"198.51.100.{i % 100}", None, "app"), established=True
            )
            limiter.decide(EndpointClass.GENERAL, who, at)
        for p in range(10):  # ... and 10 fresh accounts spending their whole limit
            puppet = Subject(f"p{p}", ClientInfo("203.0.113.5", None, "x"))
            for _ in range(200):
                limiter.decide(EndpointClass.GENERAL, puppet, at)
        limiter.flush_counters()
    # now a distributed flood of signed-in requests from 3,000 addresses
    attack_at = t0 + timedelta(minutes=6, seconds=5)
    for i in range(9000):
        who = Subject(f"bot{i}", ClientInfo(f"10.{i // 250 % 250}.{i % 250}.1", None, "b"))
        limiter.door(who.client, attack_at, Credential.USER)
        limiter.decide(
            EndpointClass.SWIPE, Subject(who.uid, who.client, door_counted=True), attack_at
        )
    limiter.flush_counters()
    report = protection_service().detect(attack_at + timedelta(seconds=10))
    assert {d.kind.value for d in report.detections} >= {"distributed_attack"}
    assert report.mitigated is True
    assert redis_of(backends).exists(keys.DDOS_MODE)


def test_a_token_less_distributed_flood_gets_a_lockdown_not_ddos_mode(
    caller: Caller, backends: Backends
) -> None:
    """A global signal carried by requests without a token: every request without a valid
    token is refused at every door; signed-in users keep their limits."""
    limiter = default_limiter()
    at = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(seconds=5)
    for i in range(9000):
        limiter.door(ClientInfo(f"10.{i // 250 % 250}.{i % 250}.9", None, "b"), at, Credential.NONE)
    limiter.flush_counters()
    report = protection_service().detect(at + timedelta(seconds=10))
    assert "distributed_attack" in {d.kind.value for d in report.detections}
    client = redis_of(backends)
    assert client.exists(keys.ANON_LOCKDOWN) and not client.exists(keys.DDOS_MODE)
    default_limiter().blocked.invalidate()
    status, body = post(caller, CHECK, {"endpointClass": "swipe"}, None, "192.0.2.44")
    assert (status, reason_of(body)) == (429, "anon_refused")
    answer = check(caller, "payment", established(caller, "regular"), "192.0.2.44")
    assert (answer["allowed"], answer["limit"]) == (True, 3)
    stats = caller.call(STATS, {}, role="ops").result
    assert stats["mode"]["active"] is False and stats["mode"]["lockdownUntil"]


def test_new_actions_can_run_in_shadow_first(
    caller: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK391_DDOS_SHADOW_ACTIONS", "block_address")
    flooder = "203.0.113.88"
    for _ in range(700):
        post(caller, CHECK, {"endpointClass": "swipe"}, None, flooder)
    report = detect(this_minute())
    assert report.blocked_sources == []
    assert not redis_of(backends).exists(keys.block("ddos", "ip", flooder))
    (doc,) = [
        d.to_dict() or {}
        for d in get_db().collection(collections.DDOS_DETECTIONS).stream()
        if (d.to_dict() or {}).get("kind") == "single_source_flood"
    ]
    (shadowed,) = doc["held"]
    assert (shadowed["action"], shadowed["target"]) == ("block_address", flooder)
    assert shadowed["why"].startswith("shadow mode")


# ------------------------------------------------------------------ the pre-auth bucket


@pytest.mark.usefixtures("door_clock")
def test_requests_without_a_valid_token_meet_a_bucket_at_the_door(caller: Caller) -> None:
    """Before: no token, a bad token or the wrong role never met a bucket: any number of
    addresses could each send 599 a minute indefinitely."""
    address = "192.0.2.150"
    answers = [post(caller, CHECK, {"endpointClass": "swipe"}, None, address) for _ in range(40)]
    answers += [
        post(caller, CHECK, {"endpointClass": "swipe"}, "not-a-jwt", address) for _ in range(20)
    ]
    assert {status for status, _ in answers} == {401}
    status, body = post(caller, CHECK, {"endpointClass": "swipe"}, "not-a-jwt", address)
    assert (status, reason_of(body)) == (429, "preauth_limit")
    assert body["error"]["details"]["retryAfterSec"] >= 1
    # a signed-in user behind the same address is not affected
    assert check(caller, "swipe", established(caller, "neighbour"), address)["allowed"] is True


@pytest.mark.usefixtures("door_clock")
def test_the_wrong_role_draws_from_the_same_bucket(caller: Caller) -> None:
    address = "192.0.2.151"
    user = established(caller, "curious")
    statuses = [post(caller, STATS, {}, user, address)[0] for _ in range(61)]
    assert statuses[:60] == [403] * 60 and statuses[60] == 429


@pytest.mark.usefixtures("door_clock")
def test_an_operator_with_the_wrong_role_is_told_so_not_to_sign_in(caller: Caller) -> None:
    """Staff are not anonymous: an ops user reaching for an admin function hears
    PERMISSION_DENIED and spends nothing of the address's pre-auth bucket, even when the
    address takes only signed-in requests (an attack's lockdown). Only the Admin SDK sets
    staff claims, so an attacker cannot use this to skip the bucket."""
    address = "192.0.2.152"
    protection_service()  # the limiter and the store the refusal below is read from
    until_ms = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp() * 1000)
    redis_now().zadd(keys.ANON_REFUSED_ADDRESSES, {address: until_ms})
    default_limiter().flush_counters()  # the refused addresses, read back by the flush
    ops = caller.token("ops", "operator")
    lift = {"scope": "ddos_mode", "reason": "during the attack"}
    answers = [post(caller, "pack391_liftBlock", lift, ops, address) for _ in range(70)]
    assert {(status, body["error"]["status"]) for status, body in answers} == {
        (403, "PERMISSION_DENIED")
    }
    # a user's token with the wrong role from the same address meets the refusal
    status, body = post(caller, STATS, {}, established(caller, "curious-2"), address)
    assert (status, reason_of(body)) == (429, "anon_refused")


def test_the_fleet_shares_one_pre_auth_allowance(backends: Backends) -> None:
    """Three instances, each with its own in-process bucket: across them the address gets
    the fleet-wide allowance, read back with each instance's counter flush."""
    from shared.ratelimit.geo import GeoRules
    from shared.ratelimit.limiter import RateLimiter

    class NoGeo(GeoRules):
        def __init__(self) -> None:
            pass

        def get(self, country: str | None) -> None:
            return None

    client = redis_now(decode_responses=True)
    fleet = [RateLimiter(client, NoGeo()) for _ in range(3)]
    who = ClientInfo("192.0.2.160", None, "x")
    now = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(seconds=1)
    allowed = 0
    for i in range(600):
        limiter = fleet[i % 3]
        if not limiter.door(who, now + timedelta(milliseconds=i * 10), Credential.NONE).retry_ms:
            allowed += 1
        if i % 30 == 29:
            for each in fleet:
                each.flush_counters()
    # 3 x 60 in process would be 180; the backstop stops the fleet soon after 120
    assert 120 <= allowed <= 150, allowed


# ------------------------------------------------------------------ brute force


def test_a_user_s_own_failure_reports_never_block_the_address(caller: Caller) -> None:
    """Before: five ``walletBruteForceShield {attempt: "failure"}`` calls from one account
    blocked auth, wallet and payment for everyone behind its address."""
    nat = "100.64.2.2"
    clumsy = established(caller, "clumsy")
    for _ in range(5):
        post(caller, SHIELD, {"attempt": "failure"}, clumsy, nat)
    assert check(caller, "wallet", clumsy, nat)["reason"] == "brute_force_block"
    neighbour = check(caller, "wallet", established(caller, "neighbour"), nat)
    assert (neighbour["allowed"], neighbour["reason"]) == (True, "ok")


def test_failures_a_backend_saw_across_accounts_block_the_address(
    caller: Caller, backends: Backends
) -> None:
    """Credential stuffing: failures for 5 distinct accounts from one address, reported by a
    trusted backend, block the address; one account failing repeatedly does not."""
    backend = caller.token("service", "auth-backend")
    stuffer = "203.0.113.99"
    answers = []
    for _ in range(6):  # one account five times: its own window, not the address's
        answers.append(
            post(
                caller,
                FAILURE,
                {"kind": "auth", "ip": stuffer, "account": "alice"},
                backend,
                "10.0.0.5",
            )
        )
    assert not redis_of(backends).exists(keys.block("bf", "ip", stuffer))
    for n in range(1, 6):
        status, body = post(
            caller,
            FAILURE,
            {"kind": "auth", "ip": stuffer, "account": f"victim-{n}"},
            backend,
            "10.0.0.5",
        )
        assert status == 200, body
    assert redis_of(backends).exists(keys.block("bf", "ip", stuffer))
    denied = check(caller, "auth", established(caller, "someone"), stuffer)
    assert (denied["allowed"], denied["reason"]) == (False, "brute_force_block")
    # only a service may report
    status, body = post(
        caller,
        FAILURE,
        {"kind": "auth", "ip": stuffer, "account": "x"},
        established(caller, "user"),
        "10.0.0.6",
    )
    assert (status, body["error"]["status"]) == (403, "PERMISSION_DENIED")


def test_credential_stuffing_from_a_shared_address_is_held_for_a_human(
    caller: Caller, backends: Backends
) -> None:
    nat = "100.64.3.3"
    shared_address(default_limiter(), nat, datetime.now(UTC))
    backend = caller.token("service", "auth-backend")
    for n in range(1, 6):
        post(caller, FAILURE, {"kind": "auth", "ip": nat, "account": f"v{n}"}, backend, "10.0.0.5")
    assert not redis_of(backends).exists(keys.block("bf", "ip", nat))
    (alert,) = [
        a.to_dict() or {}
        for a in get_db().collection(collections.ALERTS).stream()
        if (a.to_dict() or {}).get("kind") == "brute_force_held"
    ]
    assert alert["evidence"]["address"] == nat


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "auth", "ip": "not-an-ip", "account": "a"}, "ip"),
        ({"kind": "auth", "ip": "192.0.2.1"}, "account"),
        ({"kind": "sms", "ip": "192.0.2.1", "account": "a"}, "kind"),
    ],
)
def test_bad_failure_reports_name_the_field(caller: Caller, data: Any, field: str) -> None:
    status, body = post(caller, FAILURE, data, caller.token("service", "b"), "10.0.0.7")
    assert (status, body["error"]["status"], body["error"]["details"]["field"]) == (
        400,
        "INVALID_ARGUMENT",
        field,
    )


def test_cloudflare_bot_scores_are_counted_in_four_buckets(caller: Caller) -> None:
    """A proven ``cf-bot-score`` (cloudflare mode, your zone) is counted per bucket, bounded:
    three fields a minute however many scores arrive."""
    limiter = default_limiter()
    now = datetime.now(UTC)
    for score in (1, 1, 7, 29, 30, 99):
        limiter.door(ClientInfo("198.51.100.70", None, "app", bot_score=score), now)
    limiter.door(ClientInfo("198.51.100.71", None, "app"), now)  # no score: not counted
    limiter.flush_counters()
    stats = caller.call(STATS, {}, role="ops").result
    assert stats["botScoresLastHour"] == {"1": 2, "2-29": 2, "30-99": 2}
    # and feeds detection: 4 of the minute's 7 requests scored automated
    report = detect(this_minute())
    (swarm,) = [d for d in report.detections if d.kind.value == "bot_swarm"]
    assert (swarm.severity.value, swarm.evidence["botScoredLow"]) == ("high", 4)


# ------------------------------------------------------------------ bounded state


@pytest.fixture
def telemetry_redis(tmp_path: Any) -> Any:
    """A second redis-server for the traffic counters, with an eviction policy of its own."""
    from stack.platform import datastores

    child, url = datastores.start_redis(tmp_path)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield url, client
    finally:
        client.close()
        child.stop()


def test_telemetry_goes_to_its_own_redis(
    caller: Caller, backends: Backends, telemetry_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the per-minute counters (one key per attacker-chosen User-Agent, among
    others) lived in the Redis that holds blocks and buckets (noeviction): filling it refused
    auth, wallet and payment for everyone. With PACK391_REDIS_TELEMETRY_URL they live in a
    Redis that may evict; the decision's own state and the established users per address
    stay in the enforcement Redis."""
    from shared import redis as shared_redis
    from shared.ratelimit import middleware

    url, telemetry = telemetry_redis
    monkeypatch.setenv("PACK391_REDIS_TELEMETRY_URL", url)
    shared_redis.reset_clients()
    middleware.reset()
    try:
        nat = "100.64.9.9"
        user = established(caller, "tele-user")
        assert check(caller, "swipe", user, nat)["allowed"] is True
        for _ in range(3):
            post(caller, CHECK, {"endpointClass": "swipe"}, None, "192.0.2.99")
        default_limiter().flush_counters()
        enforcement = redis_of(backends)
        minute = keys.minute_of(datetime.now(UTC))
        minutes = (minute - 1, minute)
        assert sum(int(telemetry.hget(keys.stats(m), "all") or 0) for m in minutes) == 4
        assert not any(enforcement.exists(keys.stats(m)) for m in minutes)
        assert any(enforcement.exists(keys.stats_ip_established(m, nat)) for m in minutes)
        assert not any(telemetry.exists(keys.stats_ip_established(m, nat)) for m in minutes)
        assert enforcement.exists(keys.bucket("swipe", "u", "tele-user"))
        # the detector reads the counters from there: one source over 600 is still seen
        for _ in range(650):
            post(caller, CHECK, {"endpointClass": "swipe"}, None, "203.0.113.111")
        report = detect(this_minute())
        assert report.blocked_sources == ["203.0.113.111"]
        assert enforcement.exists(keys.block("ddos", "ip", "203.0.113.111"))
    finally:
        monkeypatch.delenv("PACK391_REDIS_TELEMETRY_URL")
        shared_redis.reset_clients()
        middleware.reset()


def test_redis_memory_is_alerted_on(
    backends: Backends, telemetry_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detector reads INFO memory of both Redis every minute: at 80 % of maxmemory an
    alert opens (critical for enforcement), and it resolves once memory is back under."""
    from functions.ddos.redis_store import TrafficStore
    from functions.ddos.service import ProtectionService
    from functions.ddos.store import ProtectionRepository
    from shared.alerts.store import AlertStore

    _, telemetry = telemetry_redis
    enforcement = redis_of(backends)
    service = ProtectionService(
        TrafficStore(enforcement, telemetry),
        ProtectionRepository(get_db()),
        AlertStore(get_db()),
    )
    used = int(telemetry.info("memory")["used_memory"])
    telemetry.config_set("maxmemory", str(int(used / 0.9)))  # about 90 % used
    try:
        service.detect(this_minute())

        def memory_alerts() -> dict[str, str]:
            return {
                (a.to_dict() or {})["dedupKey"]: (a.to_dict() or {})["status"]
                for a in get_db().collection(collections.ALERTS).stream()
                if (a.to_dict() or {}).get("kind") == "redis_memory"
            }

        assert memory_alerts() == {"ddos:redis_memory:telemetry": "open"}
        telemetry.config_set("maxmemory", "0")
        service.detect(this_minute())
        assert memory_alerts() == {"ddos:redis_memory:telemetry": "resolved"}
    finally:
        telemetry.config_set("maxmemory", "0")
