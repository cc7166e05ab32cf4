"""Traffic-protection functions against the emulator and a real redis-server."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.ddos.wiring import protection_service
from shared import collections
from shared.auth import Caller as Principal
from shared.firestore import get_db
from shared.ratelimit import keys
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.limiter import Subject
from shared.ratelimit.middleware import default_limiter
from shared.ratelimit.policy import EndpointClass
from tests.conftest import Backends, Caller, one_redis
from tests.redis_now import redis_now

pytestmark = pytest.mark.usefixtures("redis_backend")
"""Every test here runs on one Redis and again on a Redis Cluster (tests/conftest.py)."""

CHECK = "pack391_checkRateLimit"
SHIELD = "pack391_walletBruteForceShield"
PANIC = "pack391_panicEscalation"
GEO = "pack391_setGeoThrottle"
STATS = "pack391_getDDoSStats"


def minute_start(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def docs(name: str) -> list[dict[str, Any]]:
    return [s.to_dict() or {} for s in get_db().collection(name).stream()]


# ------------------------------------------------------------------ roles


@pytest.mark.parametrize(
    ("name", "data", "role_ok", "role_denied"),
    [
        (CHECK, {"endpointClass": "swipe"}, "user", None),
        (SHIELD, {"attempt": "success"}, "user", None),
        # PANIC: its callers are tested in tests/ddos/test_passes_trust.py (established only)
        (GEO, {"country": "BR", "multiplier": 0.5, "reason": "launch"}, "admin", "ops"),
        (STATS, {}, "ops", "user"),
    ],
)
def test_roles(caller: Caller, name: str, data: Any, role_ok: str, role_denied: str | None) -> None:
    anonymous = caller.call(name, data, role=None)
    assert (anonymous.status, anonymous.error["status"]) == (401, "UNAUTHENTICATED")
    if role_denied is not None:
        denied = caller.call(name, data, role=role_denied)
        assert (denied.status, denied.error["status"]) == (403, "PERMISSION_DENIED")
    assert caller.call(name, data, role=role_ok).status == 200
    assert caller.call(name, data, role="admin").status == 200


@pytest.mark.parametrize(
    ("name", "data", "field"),
    [
        (CHECK, {}, "endpointClass"),
        (CHECK, {"endpointClass": "chat"}, "endpointClass"),
        (CHECK, {"endpointClass": "swipe", "extra": 1}, "extra"),
        (SHIELD, {"attempt": "maybe"}, "attempt"),
        (SHIELD, {}, "attempt"),
        (PANIC, {"uid": "someone-else"}, "uid"),
        (GEO, {"country": "BR", "multiplier": 0, "reason": "x"}, "multiplier"),
        (GEO, {"country": "BR", "multiplier": 10.5, "reason": "x"}, "multiplier"),
        (GEO, {"country": "BR", "multiplier": "2", "reason": "x"}, "multiplier"),
        (GEO, {"country": "BR", "regionCapPerMin": 0, "reason": "x"}, "regionCapPerMin"),
        (GEO, {"country": "BR", "regionCapPerMin": 10**10, "reason": "x"}, "regionCapPerMin"),
        (GEO, {"country": "BR", "regionCapPerMin": 2**64, "reason": "x"}, "regionCapPerMin"),
        (GEO, {"country": "XX", "reason": "x"}, "country"),
        (GEO, {"country": "BR"}, "reason"),
    ],
)
def test_bad_input_names_the_field(caller: Caller, name: str, data: Any, field: str) -> None:
    res = caller.call(name, data, role="admin")
    assert (res.status, res.error["status"], res.error["details"]["field"]) == (
        400,
        "INVALID_ARGUMENT",
        field,
    )


# ---------------------------------------------------------- checkRateLimit


def test_check_rate_limit_counts_and_reports(caller: Caller) -> None:
    answers = [
        caller.call(CHECK, {"endpointClass": "payment"}, role="user", uid="p").result
        for _ in range(4)
    ]
    assert [a["allowed"] for a in answers] == [True, True, True, False]
    assert [a["remaining"] for a in answers] == [2, 1, 0, 0]
    assert answers[3]["reason"] == "user_limit"
    assert 19 < answers[3]["retryAfterSec"] <= 20
    assert answers[0]["limit"] == 3
    assert answers[0]["endpointClass"] == "payment"


def test_only_a_trusted_service_may_name_a_subject(caller: Caller) -> None:
    data = {"endpointClass": "auth", "subject": {"uid": "victim", "ip": "203.0.113.5"}}
    assert caller.call(CHECK, data, role="user").error["status"] == "PERMISSION_DENIED"
    token = caller.token("service", "svc-payments", service=True)
    client = caller.app.test_client()

    def ask(body: dict[str, Any]) -> Any:
        response = client.post(
            caller.url(CHECK), json={"data": body}, headers={"Authorization": f"Bearer {token}"}
        )
        return response.get_json()

    answers = [ask(data)["result"] for _ in range(6)]
    assert [a["allowed"] for a in answers] == [True] * 5 + [False]
    bad = ask({"endpointClass": "auth", "subject": {"ip": "not-an-ip"}})
    assert (bad["error"]["status"], bad["error"]["details"]["field"]) == (
        "INVALID_ARGUMENT",
        "subject.ip",
    )


# ---------------------------------------------------------- brute force


def test_five_failures_block_the_user_for_an_hour(caller: Caller) -> None:
    answers = [
        caller.call(SHIELD, {"attempt": "failure"}, role="user", uid="thief").result
        for _ in range(5)
    ]
    assert [a["attemptsLeft"] for a in answers] == [4, 3, 2, 1, 0]
    assert [a["blocked"] for a in answers] == [False] * 4 + [True]
    until = datetime.fromisoformat(answers[4]["blockedUntil"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)

    # a success never lifts an active block
    after = caller.call(SHIELD, {"attempt": "success"}, role="user", uid="thief").result
    assert after["blocked"] is True
    # the block guards wallet, auth and payment requests of the user
    check = caller.call(CHECK, {"endpointClass": "wallet"}, role="user", uid="thief").result
    assert (check["allowed"], check["reason"]) == (False, "brute_force_block")
    assert caller.call(CHECK, {"endpointClass": "swipe"}, role="user", uid="thief").result[
        "allowed"
    ]

    # a client's own reports block the user, never its address
    mirrors = docs(collections.BLOCKS)
    assert sorted((m["scope"], m["kind"]) for m in mirrors) == [("user", "brute_force")]
    # each says why
    assert {(m["evidence"]["failures"], m["evidence"]["offence"]) for m in mirrors} == {(5, 1)}
    assert {m["evidence"]["blockSec"] for m in mirrors} == {3600}


def test_success_resets_only_the_users_own_count(caller: Caller) -> None:
    for _ in range(4):
        caller.call(SHIELD, {"attempt": "failure"}, role="user", uid="forgetful")
    reset = caller.call(SHIELD, {"attempt": "success"}, role="user", uid="forgetful").result
    # the user's window is clear (the address has none: a client's reports never feed it)
    assert (reset["blocked"], reset["attemptsLeft"]) == (False, 5)
    again = caller.call(SHIELD, {"attempt": "failure"}, role="user", uid="forgetful").result
    assert (again["blocked"], again["attemptsLeft"]) == (False, 4)


def test_server_seen_failures_are_counted_per_ip_across_accounts(backends: Backends) -> None:
    """The address window counts distinct accounts with a failure the server saw; a
    client's own reports (any number of users) never feed it."""
    service = protection_service()
    now = datetime.now(UTC)
    reported = [
        service.record_attempt("wallet", f"r{i}", "192.0.2.76", True, now) for i in range(9)
    ]
    assert not any(r.blocked for r in reported)
    results = [
        service.record_server_failure("wallet", f"u{i}", "192.0.2.77", now) for i in range(5)
    ]
    assert [r.blocked for r in results] == [False] * 4 + [True]
    fresh = service.record_server_failure("wallet", "newcomer", "192.0.2.77", now)
    assert fresh.blocked is True  # the IP is blocked
    elsewhere = service.record_server_failure("wallet", "newcomer", "192.0.2.78", now)
    assert elsewhere.blocked is False


def test_repeat_offenders_get_longer_blocks(backends: Backends) -> None:
    service = protection_service()
    client = redis_now()
    now = datetime.now(UTC).replace(microsecond=0)  # blocks are kept to the millisecond
    for _ in range(5):
        first = service.record_attempt("wallet", "repeat", "192.0.2.9", True, now)
    assert first.blocked_until is not None
    assert first.blocked_until - now == timedelta(hours=1)
    # the hour passes (the block keys expire)
    client.delete(keys.block("bf", "user", "repeat"))
    later = now + timedelta(hours=1, seconds=1)
    for _ in range(5):
        second = service.record_attempt("wallet", "repeat", "192.0.2.9", True, later)
    assert second.blocked_until is not None
    assert second.blocked_until - later == timedelta(hours=24)


def test_concurrent_failures_block_exactly_once(backends: Backends) -> None:
    service = protection_service()
    now = datetime.now(UTC)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(
                lambda i: service.record_server_failure(
                    "wallet", "racer" if i % 2 else f"other-{i}", "192.0.2.50", now
                ),
                range(20),
            )
        )
    assert any(r.blocked for r in results)
    mirrors = [m for m in docs(collections.BLOCKS) if m["subject"] in ("racer", "192.0.2.50")]
    assert sorted(m["offence"] for m in mirrors) == [1, 1]  # one block each, first offence


# ---------------------------------------------------------------- panic


def test_panic_passes(caller: Caller, backends: Backends) -> None:
    # an established account (passes need one): signed in two days ago
    claims = {"auth_time": int(datetime.now(UTC).timestamp()) - 2 * 24 * 3600}
    token = caller.token("user", "p1", **claims)

    def ask() -> Any:
        response = caller.app.test_client().post(
            caller.url(PANIC), json={"data": {}}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()["result"]

    first = ask()
    assert (first["granted"], first["passesLeftToday"]) == (True, 2)
    expires = datetime.fromisoformat(first["expiresAt"])
    assert timedelta(minutes=4, seconds=59) < expires - datetime.now(UTC) <= timedelta(minutes=5)
    # asking again while it is active returns the same pass and uses none
    again = ask()
    assert (again["expiresAt"], again["passesLeftToday"]) == (first["expiresAt"], 2)

    client = redis_now()
    for left in (1, 0):
        client.delete(keys.panic_pass("p1"))  # the pass ran out
        assert ask()["passesLeftToday"] == left
    client.delete(keys.panic_pass("p1"))
    refused = ask()
    assert refused == {"granted": False, "expiresAt": None, "passesLeftToday": 0}
    assert len(docs(collections.PANIC_PASSES)) == 3

    tomorrow = protection_service().panic_pass(
        Principal(uid="p1", claims={**claims, "sub": "p1"}),
        datetime.now(UTC) + timedelta(days=1),
        3600,
    )
    assert (tomorrow.granted, tomorrow.passes_left_today) == (True, 2)


# ------------------------------------------------------------- detection


def drive(
    start: datetime,
    seconds: float,
    count: int,
    subject: Callable[[int], Subject],
    cls: EndpointClass = EndpointClass.SWIPE,
) -> list[bool]:
    """``count`` requests through the middleware's limiter, spread over ``seconds``."""
    limiter = default_limiter()
    step = seconds / count
    allowed = [
        limiter.decide(cls, subject(i), start + timedelta(seconds=i * step)).allowed
        for i in range(count)
    ]
    limiter.flush_counters()  # what the next request a second later would do
    return allowed


def crowd(n_ips: int, fp: str = "app") -> Callable[[int], Subject]:
    return lambda i: Subject(
        f"user-{i % n_ips}",
        ClientInfo(f"10.{i % n_ips // 65536}.{i % n_ips // 256 % 256}.{i % 256}", "PL", fp),
    )


def test_single_source_flood_is_detected_and_mitigated_within_a_minute(
    caller: Caller, backends: Backends
) -> None:
    t0 = minute_start(datetime.now(UTC))
    for m in range(5, 0, -1):  # five quiet minutes of history
        drive(t0 - timedelta(minutes=m), 50, 300, crowd(40))
    attack_start = t0 + timedelta(seconds=5)
    attacker = Subject(None, ClientInfo("203.0.113.66", "PL", "curl"))
    drive(attack_start, 20, 1200, lambda i: attacker)

    report = protection_service().detect(attack_start + timedelta(seconds=25))
    kinds = {(d.kind.value, d.severity.value) for d in report.detections}
    assert ("single_source_flood", "critical") in kinds
    assert report.blocked_sources == ["203.0.113.66"]
    # one address is answered by its own block, never by DDoS mode
    assert report.mitigated is False

    # the source is blocked for everything; everyone else keeps the normal limits
    limiter = default_limiter()
    late = t0 + timedelta(seconds=31)
    assert not limiter.decide(EndpointClass.GENERAL, attacker, late).allowed
    bystander = Subject("bystander", ClientInfo("198.51.100.20", "PL", "app"))
    auth = [limiter.decide(EndpointClass.AUTH, bystander, late).allowed for _ in range(3)]
    assert auth == [True, True, True]
    limiter.flush_counters()

    alerts = docs(collections.ALERTS)
    assert sorted((a["source"], a["kind"], a["severity"], a["status"]) for a in alerts) == [
        ("ddos", "single_source_flood", "critical", "open"),
    ]
    stats = caller.call(STATS, {}, role="ops").result
    assert stats["mode"]["active"] is False
    assert stats["topOffenders"][0] == {"ip": "203.0.113.66", "requests": 1201}
    assert [(b["subject"], b["kind"]) for b in stats["blocks"]] == [("203.0.113.66", "ddos")]
    assert stats["recentDetections"][0]["kind"] in {"single_source_flood", "traffic_spike"}
    assert stats["deniedLastHour"]["general"] == 1
    assert stats["requestsLastHour"]["swipe"] == 5 * 300 + 1200

    # a second run over the same minutes records nothing twice: the alerts are updated
    protection_service().detect(attack_start + timedelta(seconds=26))
    again = docs(collections.ALERTS)
    assert len(again) == 1 and {a["occurrences"] for a in again} == {2}


# On one Redis only: alerts over minutes of traffic: the counters' and mode's Redis paths run on
# the cluster in test_single_source_flood_is_detected_and_mitigated_within_a_minute.
@one_redis
def test_ddos_alerts_resolve_when_the_flood_stops_and_the_mode_ends(
    caller: Caller, backends: Backends
) -> None:
    t0 = minute_start(datetime.now(UTC))
    for m in range(5, 0, -1):  # five quiet minutes of history
        drive(t0 - timedelta(minutes=m), 50, 300, crowd(40))
    attacker = Subject(None, ClientInfo("203.0.113.66", "PL", "curl"))
    drive(t0 + timedelta(seconds=5), 20, 1200, lambda i: attacker)
    drive(t0 + timedelta(seconds=5), 20, 8000, crowd(2000, "app"))  # and a global spike
    assert protection_service().detect(t0 + timedelta(seconds=30)).mitigated

    def by_kind() -> dict[str, dict[str, Any]]:
        return {a["kind"]: a for a in docs(collections.ALERTS)}

    assert {"ddos_mode", "single_source_flood"} <= set(by_kind())
    assert {k: a["status"] for k, a in by_kind().items()} == {k: "open" for k in by_kind()}
    # two minutes later the judged minutes are quiet: the detection alerts resolve; DDoS
    # mode is still on (it lasts longer), so its alert stays open
    quiet = protection_service().detect(t0 + timedelta(minutes=2, seconds=30))
    assert [d for d in quiet.detections if d.critical] == []
    flood = by_kind()["single_source_flood"]
    assert (flood["status"], flood["resolvedBy"]) == ("resolved", "system")
    assert flood["resolution"] == "single source flood no longer detected"
    assert by_kind()["ddos_mode"]["status"] == "open"
    # an admin ends DDoS mode: its alert resolves, by that admin
    lifted = caller.call(
        "pack391_liftBlock", {"scope": "ddos_mode", "reason": "over"}, role="admin", uid="ada"
    )
    assert lifted.result["lifted"] == ["ddos_mode"]
    mode = by_kind()["ddos_mode"]
    assert (mode["status"], mode["resolvedBy"]) == ("resolved", "ada")
    assert caller.call("pack391_getOpsDashboard", role="ops").result["openAlerts"] == []


# On one Redis only: the mode's alert: DDoS mode's keys run on the cluster in
# test_single_source_flood_is_detected_and_mitigated_within_a_minute.
@one_redis
def test_the_mode_alert_resolves_when_the_detector_sees_the_mode_ended(
    backends: Backends,
) -> None:
    t0 = minute_start(datetime.now(UTC))
    for m in range(5, 0, -1):
        drive(t0 - timedelta(minutes=m), 50, 700, crowd(60))
    drive(t0, 30, 8000, crowd(2000, "app"))
    assert protection_service().detect(t0 + timedelta(seconds=30)).mitigated
    (mode,) = [a for a in docs(collections.ALERTS) if a["kind"] == "ddos_mode"]
    assert mode["status"] == "open"
    redis_now().delete(keys.DDOS_MODE)  # it expired
    protection_service().detect(t0 + timedelta(minutes=3))
    (mode,) = [a for a in docs(collections.ALERTS) if a["kind"] == "ddos_mode"]
    assert (mode["status"], mode["resolution"]) == ("resolved", "DDoS mode ended")


# On one Redis only: thousands of sources: the same counters as
# test_bot_swarm_without_a_spike_is_recorded_not_mitigated, which runs on the cluster.
@one_redis
def test_distributed_attack(backends: Backends) -> None:
    t0 = minute_start(datetime.now(UTC))
    for m in range(5, 0, -1):
        drive(t0 - timedelta(minutes=m), 50, 700, crowd(60))
    drive(t0, 30, 8000, crowd(2000, "app"))
    report = protection_service().detect(t0 + timedelta(seconds=30))
    found = {(d.kind.value, d.severity.value) for d in report.detections}
    assert ("distributed_attack", "critical") in found
    assert report.mitigated and report.blocked_sources == []
    assert redis_now().exists(keys.DDOS_MODE)


def test_bot_swarm_without_a_spike_is_recorded_not_mitigated(backends: Backends) -> None:
    t0 = minute_start(datetime.now(UTC))
    for m in range(3, 0, -1):
        drive(t0 - timedelta(minutes=m), 50, 650, crowd(300))
    drive(t0 - timedelta(minutes=1), 10, 900, crowd(120, "evilbot/2.0"))
    report = protection_service().detect(t0 + timedelta(seconds=1))
    assert [(d.kind.value, d.severity.value) for d in report.detections] == [("bot_swarm", "high")]
    assert report.mitigated is False
    (detection,) = docs(collections.DDOS_DETECTIONS)
    assert (detection["kind"], detection["mitigated"]) == ("bot_swarm", False)
    assert detection["evidence"]["distinctIps"] >= 100
    assert docs(collections.ALERTS) == []


# On one Redis only: hours of baseline: the counters' Redis paths run on the cluster in the
# shorter tests here.
@one_redis
def test_a_raised_baseline_is_not_a_spike(backends: Backends) -> None:
    t0 = minute_start(datetime.now(UTC))
    for m in range(5, 0, -1):
        drive(t0 - timedelta(minutes=m), 50, 2500, crowd(500))
    drive(t0, 30, 4000, crowd(500))  # 8,000/min against a 2,500 baseline: 3.2x
    assert protection_service().detect(t0 + timedelta(seconds=30)).detections == []


def test_detector_runs_as_a_scheduled_function(caller: Caller) -> None:
    response = caller.app.test_client().post(
        caller.url("pack391_detectDDoS"),
        data=b"{}",
        headers={"Content-Type": "application/json", "X-CloudScheduler": "true"},
    )
    assert response.status_code == 200
    assert docs(collections.DDOS_DETECTIONS) == []


# -------------------------------------------------------- cleanup and geo


def test_cleanup_removes_only_expired_mirrors(caller: Caller) -> None:
    db = get_db()
    now = datetime.now(UTC)
    for name, expires in [("old", now - timedelta(hours=2)), ("live", now + timedelta(hours=2))]:
        db.collection(collections.BLOCKS).document(name).set(
            {
                "scope": "ip",
                "subject": name,
                "kind": "ddos",
                "reason": "test",
                "offence": 1,
                "blockedAt": now - timedelta(hours=3),
                "expiresAt": expires,
            }
        )
    response = caller.app.test_client().post(
        caller.url("pack391_cleanupExpiredBlocks"),
        data=b"{}",
        headers={"Content-Type": "application/json", "X-CloudScheduler": "true"},
    )
    assert response.status_code == 200
    assert [d["subject"] for d in docs(collections.BLOCKS)] == ["live"]


def test_geo_throttle_applies_and_is_audited(
    caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_geo = caller.call(
        GEO,
        {"country": "br", "multiplier": 0.4, "regionCapPerMin": 1000, "reason": "BR soft launch"},
    ).result
    assert (set_geo["country"], set_geo["multiplier"], set_geo["version"]) == ("BR", 0.4, 1)
    (entry,) = docs(collections.AUDIT_LOG)
    assert (entry["action"], entry["target"], entry["reason"]) == (
        "ddos.geo_throttle",
        "pack391_geo_throttles/BR",
        "BR soft launch",
    )

    # behind a load balancer that sets the country header to {client_region}
    monkeypatch.setenv("PACK391_FRONT_DOOR", "load-balancer")
    client = caller.app.test_client()

    def check(country: str) -> Any:
        response = client.post(
            caller.url(CHECK),
            json={"data": {"endpointClass": "auth"}},
            headers={
                "Authorization": f"Bearer {caller.token('user', 'geo-' + country)}",
                "X-Client-Region": country,
                "X-Forwarded-For": f"198.51.100.{len(country) * 7}, 34.120.0.1",
            },
        )
        return response.get_json()["result"]

    assert check("BR")["limit"] == 2  # 5 x 0.4
    assert check("PL")["limit"] == 5
    stats = caller.call(STATS, {}, role="ops").result
    assert [(g["country"], g["regionCapPerMin"]) for g in stats["geoThrottles"]] == [("BR", 1000)]
