"""The attacks and abuses of the front door, reproduced against the real
Firestore emulator and redis-server through the callable protocol, and their fixes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.ddos.wiring import protection_service
from shared import collections, edge, edge_door
from shared.clock import utc_now
from shared.firestore import get_db
from shared.ratelimit import keys
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.limiter import Credential, Subject
from shared.ratelimit.middleware import default_limiter
from shared.ratelimit.policy import EndpointClass
from tests.conftest import Backends, Caller
from tests.redis_now import redis_now

pytestmark = pytest.mark.usefixtures("redis_backend")
"""Every test here runs on one Redis and again on a Redis Cluster (tests/conftest.py)."""

CHECK = "pack391_checkRateLimit"
SHIELD = "pack391_walletBruteForceShield"
STATS = "pack391_getDDoSStats"
DASHBOARD = "pack391_getOpsDashboard"
LIFT = "pack391_liftBlock"
ALLOW = "pack391_setAllowlist"

LOCAL = "127.0.0.1"  # the test client's address: the client, in direct mode


def docs(name: str) -> list[dict[str, Any]]:
    return [s.to_dict() or {} for s in get_db().collection(name).stream()]


def post(caller: Caller, name: str, data: Any, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = caller.app.test_client().post(caller.url(name), json={"data": data}, headers=headers)
    body = response.get_json()
    assert body is not None, f"HTTP {response.status_code} is not the callable protocol"
    return response.status_code, body


def detect_now() -> Any:
    """Flush this instance's counters and run the detector as the next minute's run would:
    at least 10 s into the minute, so the current minute is judged too."""
    default_limiter().flush_counters()
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0)
    return protection_service().detect(max(now, start + timedelta(seconds=10)))


def flood(caller: Caller, count: int, token: str | None, name: str = CHECK) -> list[int]:
    data = {"endpointClass": "swipe"}
    return [post(caller, name, data, token)[0] for _ in range(count)]


# ----------------------------------------------------------- shields


def test_a_user_s_reports_feed_only_its_own_window(caller: Caller, backends: Backends) -> None:
    """A success reported every fifth call no longer lets a user fail forever, and a
    user's own reports never block its address (only failures a server saw, across
    accounts, do)."""
    answers = []
    for i in range(16):
        attempt = "success" if i % 5 == 4 else "failure"
        answers.append(caller.call(SHIELD, {"attempt": attempt}, role="user", uid="pin").result)
    assert not any(a["blocked"] for a in answers)  # three resets are honoured ...
    caller.call(SHIELD, {"attempt": "success"}, role="user", uid="pin")  # ... a fourth is not
    more = [
        caller.call(SHIELD, {"attempt": "failure"}, role="user", uid="pin").result for _ in range(4)
    ]
    assert [a["blocked"] for a in more] == [False, False, False, True]
    client = redis_now()
    assert client.exists(keys.block("bf", "user", "pin"))
    assert not client.exists(keys.block("bf", "ip", LOCAL))


def test_success_reports_are_limited(backends: Backends) -> None:
    """One user, a new address each time (a phone roaming, or a thief rotating proxies):
    a success clears the user's window only a few times per window."""
    service = protection_service()
    now = datetime.now(UTC)
    failures = 0
    for n in range(40):
        if n % 5 == 4:
            service.record_attempt("wallet", "roamer", f"192.0.2.{n}", False, now)
            continue
        failures += 1
        if service.record_attempt("wallet", "roamer", f"192.0.2.{n}", True, now).blocked:
            break
    # three resets are honoured (after failures 4, 8 and 12); the fourth success changes
    # nothing, so the 17th failure is the user's fifth in the window
    assert failures == 17


def test_server_side_failures_cannot_be_cleared_by_a_client(
    caller: Caller, backends: Backends
) -> None:
    service = protection_service()
    now = datetime.now(UTC)
    for _ in range(4):
        service.record_server_failure("wallet", "victim", "192.0.2.200", now)
    # the client reports a success from elsewhere: it clears only the client-reported window
    caller.call(SHIELD, {"attempt": "success"}, role="user", uid="victim")
    fifth = service.record_server_failure("wallet", "victim", "192.0.2.201", now)
    assert fifth.blocked is True
    check = caller.call(CHECK, {"endpointClass": "wallet"}, role="user", uid="victim").result
    assert (check["allowed"], check["reason"]) == (False, "brute_force_block")


# ------------------------------------------- floods, blocks and the operators


def test_a_flood_never_locks_the_operators_out(caller: Caller, backends: Backends) -> None:
    """Before: after a flood, getDDoSStats and getOpsDashboard answered ip_block to the
    operators from the same address, and no function could lift the block."""
    user = caller.token("user", "flooder")
    statuses = flood(caller, 700, user)
    assert statuses.count(200) == 700  # checkRateLimit answers allowed: false, not an error
    report = detect_now()
    assert LOCAL in report.blocked_sources

    status, body = post(caller, CHECK, {"endpointClass": "swipe"}, user)
    assert (status, body["error"]["status"], body["error"]["details"]["reason"]) == (
        429,
        "RESOURCE_EXHAUSTED",
        "ip_block",
    )
    # the operators, from the same address, reach their tools
    ops = caller.token("ops", "oncall")
    status, stats = post(caller, STATS, {}, ops)
    assert status == 200
    (block,) = [b for b in stats["result"]["blocks"] if b["subject"] == LOCAL]
    assert block["evidence"]["detection"] == "single_source_flood"
    assert block["evidence"]["requestsPerMin"] > 600
    # one address is answered by its own block: it never switches on DDoS mode
    assert stats["result"]["mode"]["active"] is False
    assert post(caller, DASHBOARD, {}, ops)[0] == 200
    # an ops token does not make a user function reachable from a blocked address
    assert post(caller, "pack391_panicEscalation", {}, ops)[0] == 429

    # the admin lifts the block (audited); the user is served again at once
    admin = caller.token("admin", "lead")
    status, lifted = post(
        caller, LIFT, {"scope": "ip", "subject": LOCAL, "reason": "false alarm"}, admin
    )
    assert status == 200, lifted
    assert lifted["result"]["lifted"] == ["ddos"]
    assert lifted["result"]["mirrorsUpdated"] == 1
    assert post(caller, CHECK, {"endpointClass": "swipe"}, user)[0] == 200
    audit = [a for a in docs(collections.AUDIT_LOG) if a["action"] == "ddos.lift.ip"]
    assert [(a["actorUid"], a["reason"]) for a in audit] == [("lead", "false alarm")]
    # DDoS mode can be ended too
    redis_now().set(keys.DDOS_MODE, '{"untilMs": 0, "reason": "test"}', px=60_000)
    default_limiter().blocked.invalidate()  # this instance sees it now, others within 1 s
    status, ended = post(caller, LIFT, {"scope": "ddos_mode", "reason": "over"}, admin)
    assert (status, ended["result"]["lifted"]) == (200, ["ddos_mode"])
    assert not redis_now().exists(keys.DDOS_MODE)


def test_floods_without_a_valid_token_are_counted_detected_and_blocked(
    caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests with no token, a bad token or the wrong role were once never counted;
    now they meet the address's pre-auth bucket (60 a minute) at the door."""
    # The floods at one instant: the bucket refills one request a second, so a flood slowed
    # by a busy machine would earn a few more than 60. Both clocks that charge the bucket
    # stop: the front door's, and the edge's that charges a wrong role after the door.
    frozen = utc_now()
    with monkeypatch.context() as clock:
        clock.setattr(edge_door, "utc_now", lambda: frozen)
        clock.setattr(edge, "utc_now", lambda: frozen)
        no_token = flood(caller, 300, None)
        bad_token = flood(caller, 300, "not-a-jwt")
        wrong_role = flood(caller, 100, caller.token("user", "u"), name=STATS)
    assert no_token == [401] * 60 + [429] * 240
    assert set(bad_token) == {429} and set(wrong_role) == {429}
    report = detect_now()
    assert report.blocked_sources == [LOCAL]
    # now refused before the token is even looked at
    status, body = post(caller, CHECK, {"endpointClass": "swipe"}, None)
    assert status == 429, body
    assert body["error"]["details"]["reason"] == "ip_block", body
    assert body["error"]["details"]["retryAfterSec"] > 3500


def test_operators_are_exempt_from_ddos_mode_but_counted(
    caller: Caller, backends: Backends
) -> None:
    redis_now().set(keys.DDOS_MODE, '{"untilMs": 0, "reason": "test"}', px=60_000)
    default_limiter().blocked.invalidate()  # this instance sees it now, others within 1 s
    ops = caller.token("ops", "oncall")
    statuses = [post(caller, "pack391_getMarketControls", {}, ops)[0] for _ in range(250)]
    # general is 200/min, halved to 100 in DDoS mode; staff have 600/min of their own
    assert set(statuses) == {200}
    default_limiter().flush_counters()
    stats = caller.call(STATS, {}, role="ops", uid="oncall").result
    # the 250 calls, and perhaps this one (its count is flushed within a second)
    assert stats["requestsLastHour"]["staff"] in (250, 251)
    assert stats["requestsLastHour"]["general"] == 0


# ------------------------------------------------------ shared addresses


def drive(
    start: datetime, count: int, subject: Callable[[int], Subject], seconds: float = 20.0
) -> None:
    limiter = default_limiter()
    for i in range(count):
        limiter.decide(
            EndpointClass.SWIPE, subject(i), start + timedelta(seconds=i * seconds / count)
        )
    limiter.flush_counters()


def nat(uid: str) -> Subject:
    """A user behind a campus NAT, with history (established)."""
    return Subject(uid, ClientInfo("198.51.100.99", "PL", "app"), established=True)


def test_a_shared_address_is_never_blocked_its_flooding_user_is(backends: Backends) -> None:
    t0 = datetime.now(UTC).replace(second=0, microsecond=0)
    drive(t0, 250, lambda i: nat(f"student-{i % 25}"))  # a campus NAT: 25 users
    drive(t0, 900, lambda i: nat("bot-account"))  # one of them floods
    report = protection_service().detect(t0 + timedelta(seconds=30))
    assert report.blocked_sources == []
    assert report.blocked_users == ["bot-account"]
    limiter = default_limiter()
    late = t0 + timedelta(seconds=31)
    bot = limiter.decide(EndpointClass.SWIPE, nat("bot-account"), late)
    assert (bot.allowed, bot.reason.value) == (False, "user_block")
    assert limiter.decide(EndpointClass.SWIPE, nat("student-3"), late).allowed
    (mirror,) = docs(collections.BLOCKS)
    assert (mirror["scope"], mirror["subject"], mirror["evidence"]["sharedAddress"]) == (
        "user",
        "bot-account",
        True,
    )


def test_a_block_over_the_blast_radius_cap_is_held_for_a_human(backends: Backends) -> None:
    t0 = datetime.now(UTC).replace(second=0, microsecond=0)
    # 10 users in all; 4 of them share an office address with a flooder
    drive(
        t0,
        60,
        lambda i: Subject(
            f"remote-{i % 6}", ClientInfo(f"192.0.2.{i % 6}", "PL", "app"), established=True
        ),
    )
    office = ClientInfo("198.51.100.7", "PL", "app")
    drive(t0, 40, lambda i: Subject(f"office-{i % 4}", office, established=True))
    drive(t0, 900, lambda i: Subject("office-flooder", office, established=True))
    report = protection_service().detect(t0 + timedelta(seconds=30))
    assert report.blocked_sources == []
    assert [(a.kind, a.target) for a in report.held] == [("block_address", "198.51.100.7")]
    assert not redis_now().exists(keys.block("ddos", "ip", "198.51.100.7"))
    (alert,) = [a for a in docs(collections.ALERTS) if a["kind"] == "single_source_flood"]
    assert "held for a human" in alert["title"]
    (held,) = alert["evidence"]["held"]
    assert held["action"] == "block_address" and held["blastRadiusPct"] > 5


def test_ddos_mode_over_the_blast_radius_cap_is_held(backends: Backends) -> None:
    """A distributed flood of signed-in requests while usually 20 % of the established users
    use most of a limit: DDoS mode would hurt them, so it is held; the lockdown of
    token-less traffic (which hurts nobody signed in) is applied."""
    t0 = datetime.now(UTC).replace(second=0, microsecond=0)
    client = redis_now()
    for m in range(1, 6):
        minute = keys.minute_of(t0) - m
        client.hset(keys.stats(minute), mapping={"all": 1000, "req:swipe": 1000})
        client.pfadd(keys.stats_users_hll(minute), *[f"u{i}" for i in range(100)])
        client.pfadd(keys.stats_overddos_users(minute), *[f"u{i}" for i in range(20)])
    limiter = default_limiter()
    at = t0 + timedelta(seconds=5)
    for i in range(6000):
        bot = ClientInfo(f"10.{i // 250 % 250}.{i % 250}.7", "PL", "bot")
        limiter.door(bot, at, Credential.USER)
        limiter.decide(EndpointClass.SWIPE, Subject(f"bot{i}", bot, door_counted=True), at)
    limiter.flush_counters()
    report = protection_service().detect(t0 + timedelta(seconds=15))
    assert "distributed_attack" in {d.kind.value for d in report.detections}
    assert report.mitigated is False  # DDoS mode not turned on ...
    assert not client.exists(keys.DDOS_MODE)
    assert [a.kind for a in report.held] == ["ddos_mode"]
    assert client.exists(keys.ANON_LOCKDOWN)  # ... the lockdown is


def test_allowlisted_addresses_are_never_blocked(caller: Caller) -> None:
    added = caller.call(ALLOW, {"action": "add", "entry": "127.0.0.0/8", "reason": "office"})
    assert added.result["allowlist"][0]["entry"] == "127.0.0.0/8"
    flood(caller, 700, caller.token("user", "load-tester"))
    report = detect_now()
    assert report.blocked_sources == []
    assert post(caller, CHECK, {"endpointClass": "swipe"}, caller.token("user", "x"))[0] == 200
    stats = caller.call(STATS, {}, role="ops").result
    assert [e["entry"] for e in stats["allowlist"]] == ["127.0.0.0/8"]
    removed = caller.call(ALLOW, {"action": "remove", "entry": "127.0.0.0/8", "reason": "done"})
    assert (removed.result["changed"], removed.result["allowlist"]) == (True, [])
    actions = sorted(a["action"] for a in docs(collections.AUDIT_LOG))
    assert actions == ["ddos.allowlist.add", "ddos.allowlist.remove"]


def test_allowlisting_an_address_lifts_its_block(caller: Caller, backends: Backends) -> None:
    protection_service()._store.block_source(
        "192.0.2.55", int(time.time() * 1000) + 60_000, datetime.now(UTC)
    )
    result = caller.call(ALLOW, {"action": "add", "entry": "192.0.2.55", "reason": "partner"})
    assert result.result["lifted"] == ["ddos:ip:192.0.2.55"]
    assert not redis_now().exists(keys.block("ddos", "ip", "192.0.2.55"))


@pytest.mark.parametrize(
    ("name", "data", "field"),
    [
        (LIFT, {"scope": "ip", "subject": "not-an-ip", "reason": "x"}, "subject"),
        (LIFT, {"scope": "ip", "reason": "x"}, "subject"),
        (LIFT, {"scope": "ddos_mode", "subject": "1.2.3.4", "reason": "x"}, "subject"),
        (LIFT, {"scope": "planet", "subject": "1.2.3.4", "reason": "x"}, "scope"),
        (LIFT, {"scope": "user", "subject": "u"}, "reason"),
        (ALLOW, {"action": "add", "entry": "10.0.0.0/33", "reason": "x"}, "entry"),
        (ALLOW, {"action": "grant", "entry": "10.0.0.1", "reason": "x"}, "action"),
        (CHECK, {"endpointClass": "staff"}, "endpointClass"),
    ],
)
def test_bad_input_names_the_field(caller: Caller, name: str, data: Any, field: str) -> None:
    res = caller.call(name, data)
    assert (res.status, res.error["status"], res.error["details"]["field"]) == (
        400,
        "INVALID_ARGUMENT",
        field,
    )


@pytest.mark.parametrize("name", [LIFT, ALLOW])
def test_only_admins_lift_and_allowlist(caller: Caller, name: str) -> None:
    data = (
        {"scope": "ddos_mode", "reason": "x"}
        if name == LIFT
        else {"action": "add", "entry": "10.0.0.1", "reason": "x"}
    )
    assert caller.call(name, data, role=None).error["status"] == "UNAUTHENTICATED"
    assert caller.call(name, data, role="ops").error["status"] == "PERMISSION_DENIED"
    assert caller.call(name, data, role="user").error["status"] == "PERMISSION_DENIED"
    assert caller.call(name, data, role="admin").status == 200


def test_a_shared_address_seen_in_the_last_complete_minute_stays_unblocked(
    backends: Backends,
) -> None:
    """The flood was in the last complete minute; the current one (also judged) is quiet:
    who was behind the address is still known."""
    t0 = datetime.now(UTC).replace(second=0, microsecond=0)
    before = t0 - timedelta(minutes=1)
    drive(before, 250, lambda i: nat(f"student-{i % 25}"))
    drive(before, 900, lambda i: nat("bot-account"))
    report = protection_service().detect(t0 + timedelta(seconds=30))
    assert (report.blocked_sources, report.blocked_users) == ([], ["bot-account"])


def test_each_request_is_counted_once_as_a_source(caller: Caller, backends: Backends) -> None:
    """Counted at the front door before its token is verified, and not again by the
    decision: the detector sees every request exactly once."""
    # an established account (signed in two days ago): a pass is granted, then returned
    user = caller.token("user", "counted", auth_time=int(time.time()) - 2 * 24 * 3600)
    statuses = [post(caller, "pack391_panicEscalation", {}, user)[0] for _ in range(10)]
    statuses += [post(caller, "pack391_panicEscalation", {}, None)[0] for _ in range(5)]
    assert statuses == [200] * 10 + [401] * 5
    default_limiter().flush_counters()
    client = redis_now()
    minute = keys.minute_of(datetime.now(UTC))
    per_ip = sum(int(client.zscore(keys.stats_ips(m), LOCAL) or 0) for m in (minute - 1, minute))
    counted = sum(int(client.hget(keys.stats(m), "all") or 0) for m in (minute - 1, minute))
    users = sum(
        int(client.zscore(keys.stats_ip_users(m, LOCAL), "counted") or 0)
        for m in (minute - 1, minute)
    )
    assert (per_ip, counted, users) == (15, 15, 10)
