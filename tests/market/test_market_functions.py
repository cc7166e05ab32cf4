"""Market functions through the callable protocol, against the emulator and Redis."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from google.cloud import firestore

from functions.market.policy import Applicant
from functions.market.wiring import market_service
from shared import collections
from shared.firestore import get_db
from tests.conftest import Backends, Caller, CallResult
from tests.redis_now import redis_now

pytestmark = pytest.mark.usefixtures("redis_backend")
"""Every test here runs on one Redis and again on a Redis Cluster (tests/conftest.py)."""

UPDATE = "pack391_updateMarketControl"
GET = "pack391_getMarketControls"
PAUSE = "pack391_emergencyPauseMarkets"
ACCESS = "pack391_checkMarketAccess"

VERIFIED: dict[str, Any] = {"email_verified": True}
"""Claims of an account with a verified email: what the default identity rule asks."""


def call_as(caller: Caller, name: str, data: Any, uid: str, **claims: Any) -> CallResult:
    """Call ``name`` with an ID token for ``uid`` carrying exactly ``claims``."""
    token = caller.token("user", uid, **claims)
    response = caller.app.test_client().post(
        caller.url(name), json={"data": data}, headers={"Authorization": f"Bearer {token}"}
    )
    return CallResult(response.status_code, response.get_json())


def configure(caller: Caller, country: str, reason: str | None = None, **config: Any) -> Any:
    data: dict[str, Any] = {"country": country, "config": config}
    if reason is not None:
        data["reason"] = reason
    return caller.call(UPDATE, data).result


def signup(caller: Caller, country: str, uid: str, **claims: Any) -> Any:
    """Sign ``uid`` up in ``country``; by default with a verified email."""
    data = {"country": country, "signup": True}
    return call_as(caller, ACCESS, data, uid, **(claims or VERIFIED)).result


def audit_entries(db: firestore.Client) -> list[dict[str, Any]]:
    docs = db.collection(collections.AUDIT_LOG).order_by("at").stream()
    return [d.to_dict() or {} for d in docs]


# ----------------------------------------------------------------- roles


@pytest.mark.parametrize(
    ("name", "data", "user_code"),
    [
        (UPDATE, {"country": "PL", "config": {"launchStatus": "public"}}, "PERMISSION_DENIED"),
        (GET, {}, "PERMISSION_DENIED"),
        (PAUSE, {"paused": True, "reason": "x"}, "PERMISSION_DENIED"),
    ],
)
def test_roles_no_token_user_admin(caller: Caller, name: str, data: Any, user_code: str) -> None:
    none = caller.call(name, data, role=None)
    assert (none.status, none.error["status"]) == (401, "UNAUTHENTICATED")
    user = caller.call(name, data, role="user")
    assert (user.status, user.error["status"]) == (403, user_code)
    admin = caller.call(name, data, role="admin")
    assert admin.status == 200, admin.body


def test_ops_may_read_but_not_change(caller: Caller) -> None:
    assert caller.call(GET, {}, role="ops").status == 200
    denied = caller.call(
        UPDATE, {"country": "PL", "config": {"launchStatus": "public"}}, role="ops"
    )
    assert denied.error["status"] == "PERMISSION_DENIED"


def test_access_check_needs_sign_in(caller: Caller) -> None:
    res = caller.call(ACCESS, {"country": "PL"}, role=None)
    assert res.error["status"] == "UNAUTHENTICATED"


# ------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"config": {"launchStatus": "public"}}, "country"),
        ({"country": "XX", "config": {"launchStatus": "public"}}, "country"),
        ({"country": "POL", "config": {"launchStatus": "public"}}, "country"),
        ({"country": 48, "config": {"launchStatus": "public"}}, "country"),
        ({"country": "PL"}, "config"),
        ({"country": "PL", "config": {}}, "config"),
        ({"country": "PL", "config": {"launchStatus": "launched"}}, "config.launchStatus"),
        ({"country": "PL", "config": {"launchStatus": None}}, "config.launchStatus"),
        ({"country": "PL", "config": {"trafficLimit": 0}}, "config.trafficLimit"),
        ({"country": "PL", "config": {"trafficLimit": -5}}, "config.trafficLimit"),
        ({"country": "PL", "config": {"trafficLimit": "100"}}, "config.trafficLimit"),
        ({"country": "PL", "config": {"trafficLimit": 1.5}}, "config.trafficLimit"),
        ({"country": "PL", "config": {"paymentsEnabled": "yes"}}, "config.paymentsEnabled"),
        ({"country": "PL", "config": {"payoutsEnabled": None}}, "config.payoutsEnabled"),
        ({"country": "PL", "config": {"launch_status": "public"}}, "config.launch_status"),
        ({"country": "PL", "config": {"launchStatus": "soft_launch"}}, "config.trafficLimit"),
        ({"country": "PL", "config": {"launchStatus": "public"}, "reason": ""}, "reason"),
        ({"country": "PL", "config": {"launchStatus": "public"}, "extra": 1}, "extra"),
        ({"country": "PL", "config": {"launchStatus": "public"}, "reason": "x" * 501}, "reason"),
    ],
)
def test_bad_input_names_the_field(caller: Caller, data: Any, field: str) -> None:
    res = caller.call(UPDATE, data)
    assert res.status == 400
    assert res.error["status"] == "INVALID_ARGUMENT"
    assert res.error["details"]["field"] == field
    assert field in res.error["message"]
    assert caller.call(GET, {}).result["markets"] == []  # nothing was written


def test_data_must_be_an_object(caller: Caller) -> None:
    res = caller.call(UPDATE, [1, 2])
    assert (res.status, res.error["status"], res.error["details"]["field"]) == (
        400,
        "INVALID_ARGUMENT",
        "data",
    )


def test_country_is_normalised(caller: Caller) -> None:
    result = configure(caller, " pl ", launchStatus="public")
    assert result["market"]["country"] == "PL"


# ------------------------------------------------ updates, versions, audit


def test_partial_update_versions_and_audit(caller: Caller, backends: Backends) -> None:
    first = configure(
        caller, "PL", reason="soft launch", launchStatus="soft_launch", trafficLimit=100
    )
    assert first["changed"] is True
    assert first["previousVersion"] == 0
    assert first["enforced"] is True
    market = first["market"]
    assert market["version"] == 1
    assert market["launchStatus"] == "soft_launch"
    assert market["trafficLimit"] == 100
    assert market["paymentsEnabled"] is False
    assert market["updatedBy"] == "admin-1"
    assert market["updatedAt"].endswith("Z")

    second = configure(caller, "PL", paymentsEnabled=True)["market"]
    assert second["version"] == 2
    assert (second["launchStatus"], second["trafficLimit"], second["paymentsEnabled"]) == (
        "soft_launch",
        100,
        True,
    )
    assert second["reason"] is None

    # the same values again: no new version, no audit entry
    same = configure(caller, "PL", paymentsEnabled=True)
    assert (same["changed"], same["market"]["version"]) == (False, 2)

    db = get_db()
    versions = market_service()._repo.versions("PL")
    assert [v.version for v in versions] == [1]
    assert versions[0].payments_enabled is False
    entries = audit_entries(db)
    assert [e["action"] for e in entries] == ["market.update", "market.update"]
    assert entries[0]["before"] is None
    assert entries[0]["after"]["trafficLimit"] == 100
    assert entries[0]["reason"] == "soft launch"
    assert entries[1]["before"]["paymentsEnabled"] is False
    assert entries[1]["after"]["paymentsEnabled"] is True
    assert entries[1]["actorUid"] == "admin-1"
    assert entries[1]["requestId"]
    assert isinstance(entries[1]["at"], datetime)


def test_traffic_limit_can_be_cleared_with_null(caller: Caller) -> None:
    configure(caller, "DE", launchStatus="public", trafficLimit=5)
    cleared = configure(caller, "DE", trafficLimit=None)["market"]
    assert cleared["trafficLimit"] is None
    assert cleared["launchStatus"] == "public"


def test_expected_version_guards_concurrent_edits(caller: Caller) -> None:
    configure(caller, "FR", launchStatus="public")
    stale = caller.call(
        UPDATE, {"country": "FR", "config": {"marketingEnabled": True}, "expectedVersion": 0}
    )
    assert stale.error["status"] == "FAILED_PRECONDITION"
    assert stale.error["details"]["currentVersion"] == 1
    fresh = caller.call(
        UPDATE, {"country": "FR", "config": {"marketingEnabled": True}, "expectedVersion": 1}
    )
    assert fresh.result["market"]["version"] == 2


def test_get_market_controls_lists_markets_with_users(caller: Caller) -> None:
    configure(caller, "PL", launchStatus="public")
    configure(caller, "BR", launchStatus="influencer_only")
    for uid in ("u1", "u2", "u3"):
        assert signup(caller, "PL", uid)["signupAdmitted"] is True
    view = caller.call(GET, {}, role="ops").result
    assert [(m["country"], m["currentUsers"], m["version"]) for m in view["markets"]] == [
        ("BR", 0, 1),
        ("PL", 3, 1),
    ]
    assert view["allMarketsPaused"] is False
    one = caller.call(GET, {"country": "JP"}).result["markets"]
    assert [(m["country"], m["launchStatus"], m["version"]) for m in one] == [
        ("JP", "not_started", 0)
    ]


# -------------------------------------------------------------- enforcement


def test_each_launch_status(caller: Caller) -> None:
    assert signup(caller, "IT", "a")["reason"] == "not_started"  # never configured
    configure(caller, "IT", launchStatus="influencer_only")
    assert signup(caller, "IT", "a")["reason"] == "influencers_only"
    inf = signup(caller, "IT", "inf", influencer=True, email_verified=True)
    assert (inf["signupAdmitted"], inf["reason"]) == (True, "admitted")
    configure(caller, "IT", launchStatus="soft_launch", trafficLimit=2)
    assert signup(caller, "IT", "a")["reason"] == "admitted"
    assert signup(caller, "IT", "b")["reason"] == "traffic_limit_reached"  # inf + a = 2
    assert signup(caller, "IT", "a")["reason"] == "already_admitted"
    configure(caller, "IT", launchStatus="public")
    assert signup(caller, "IT", "b")["reason"] == "admitted"
    configure(caller, "IT", launchStatus="paused")
    paused = signup(caller, "IT", "c")
    assert (paused["signupAdmitted"], paused["reason"]) == (False, "paused")
    assert caller.call(GET, {"country": "IT"}).result["markets"][0]["currentUsers"] == 3


def test_features_reported_without_counting(caller: Caller) -> None:
    configure(caller, "ES", launchStatus="public", paymentsEnabled=True, marketingEnabled=True)
    res = caller.call(ACCESS, {"country": "ES"}, role="user", uid="z").result
    assert res == {
        "country": "ES",
        "launchStatus": "public",
        "signupAdmitted": False,
        "reason": "not_requested",
        "paymentsEnabled": True,
        "payoutsEnabled": False,
        "marketingEnabled": True,
        "currentUsers": 0,
        "trafficLimit": None,
        "pendingUntil": None,
        "activatedAt": None,
    }


def test_emergency_pause_one_market_takes_effect_next_call(caller: Caller) -> None:
    configure(caller, "PL", launchStatus="public", paymentsEnabled=True, payoutsEnabled=True)
    configure(caller, "DE", launchStatus="public", paymentsEnabled=True)
    assert signup(caller, "PL", "u1")["signupAdmitted"] is True

    paused = caller.call(PAUSE, {"country": "PL", "paused": True, "reason": "fraud wave"}).result
    assert (paused["scope"], paused["paused"], paused["enforced"]) == ("PL", True, True)
    after = signup(caller, "PL", "u2")
    assert (after["signupAdmitted"], after["reason"]) == (False, "emergency_paused")
    assert (after["paymentsEnabled"], after["payoutsEnabled"]) == (False, False)
    assert signup(caller, "DE", "u2")["signupAdmitted"] is True  # other markets unaffected

    resumed_pause = caller.call(PAUSE, {"country": "PL", "paused": False, "reason": "resolved"})
    assert resumed_pause.result["paused"] is False
    resumed = signup(caller, "PL", "u2")
    assert (resumed["signupAdmitted"], resumed["paymentsEnabled"]) == (True, True)
    actions = [e["action"] for e in audit_entries(get_db())]
    assert actions[-2:] == ["market.emergency_pause", "market.emergency_resume"]


def test_emergency_pause_all_markets(caller: Caller) -> None:
    configure(caller, "PL", launchStatus="public")
    configure(caller, "US", launchStatus="public", payoutsEnabled=True)
    res = caller.call(PAUSE, {"paused": True, "reason": "incident 42"}).result
    assert (res["scope"], res["paused"]) == ("all", True)
    for country in ("PL", "US"):
        denied = signup(caller, country, "x")
        assert (denied["signupAdmitted"], denied["reason"]) == (False, "all_markets_paused")
        assert denied["payoutsEnabled"] is False
    view = caller.call(GET, {}).result
    assert (view["allMarketsPaused"], view["allMarketsPausedReason"]) == (True, "incident 42")
    caller.call(PAUSE, {"paused": False, "reason": "over"})
    assert signup(caller, "US", "x")["payoutsEnabled"] is True
    entries = audit_entries(get_db())
    assert entries[-1]["target"] == "pack391_config/markets"
    assert entries[-1]["after"]["allPaused"] is False


def test_pause_needs_a_reason(caller: Caller) -> None:
    res = caller.call(PAUSE, {"paused": True})
    assert (res.error["status"], res.error["details"]["field"]) == ("INVALID_ARGUMENT", "reason")


# -------------------------------------------------------------- concurrency


def test_soft_launch_limit_holds_under_concurrent_signups(caller: Caller) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=10)
    service = market_service()
    now = datetime.now(UTC)

    def admit(i: int) -> bool:
        applicant = Applicant(f"user-{i}", verified=True)
        return service.admission.check_access(
            "PL", applicant, True, "verified", now
        ).signup_admitted

    with ThreadPoolExecutor(max_workers=16) as pool:
        admitted = list(pool.map(admit, range(60)))
    assert sum(admitted) == 10
    assert service._admissions.count_admissions("PL") == 10
    assert service._store.member_count("PL") == 10


def test_limit_holds_over_http_with_a_limit_change_racing(caller: Caller, live_server: str) -> None:
    configure(caller, "GB", launchStatus="soft_launch", trafficLimit=5)
    url = f"{live_server}/{caller.project}/us-central1/{ACCESS}"

    def admit(i: int) -> bool:
        token = caller.token("user", f"racer-{i}", **VERIFIED)
        response = requests.post(
            url,
            json={"data": {"country": "GB", "signup": True}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return bool(response.json()["result"]["signupAdmitted"])

    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(admit, i) for i in range(30)]
        configure(caller, "GB", trafficLimit=8)  # raised while signups are in flight
        admitted = sum(f.result() for f in futures)
    count = caller.call(GET, {"country": "GB"}).result["markets"][0]["currentUsers"]
    assert admitted == count
    assert 5 <= count <= 8


def test_same_user_counted_once_under_concurrency(caller: Caller) -> None:
    configure(caller, "NL", launchStatus="public")
    service = market_service()
    now = datetime.now(UTC)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(
                lambda _: service.admission.check_access(
                    "NL", Applicant("same"), True, "verified", now
                ),
                range(16),
            )
        )
    assert all(r.signup_admitted for r in results)
    assert sum(r.reason == "admitted" for r in results) == 1
    assert service._admissions.count_admissions("NL") == 1


# ------------------------------------------------------ Redis loss and sync


def test_redis_loss_is_recovered_from_firestore(caller: Caller, backends: Backends) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=3)
    for uid in ("a", "b", "c"):
        assert signup(caller, "PL", uid)["signupAdmitted"] is True
    redis_now().flushall()  # Redis restarted empty
    late = signup(caller, "PL", "d")
    assert (late["signupAdmitted"], late["reason"], late["currentUsers"]) == (
        False,
        "traffic_limit_reached",
        3,
    )


def test_sync_restores_members_and_mirrors(caller: Caller, backends: Backends) -> None:
    configure(caller, "PL", launchStatus="public")
    for uid in ("a", "b"):
        signup(caller, "PL", uid)
    client = redis_now()
    client.delete("{pack391:markets}:PL:users")
    report = market_service().releases.sync(datetime.now(UTC))
    assert (report.markets, report.members_restored) == (1, 2)
    assert client.scard("{pack391:markets}:PL:users") == 2


def test_sync_runs_as_a_scheduled_function(
    caller: Caller, backends: Backends, functions: Any
) -> None:
    configure(caller, "PL", launchStatus="public")
    signup(caller, "PL", "a")
    client = redis_now()
    client.delete("{pack391:markets}:PL:users")
    assert caller.trigger("pack391_syncMarkets") == 200
    assert client.scard("{pack391:markets}:PL:users") == 1


def test_redis_down_is_unavailable_not_internal(
    caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared import redis as shared_redis

    configure(caller, "PL", launchStatus="public")
    with monkeypatch.context() as patch:
        patch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
        shared_redis.reset_clients()
        res = caller.call(ACCESS, {"country": "PL", "signup": True}, role="user", uid="q")
    shared_redis.reset_clients()
    assert (res.status, res.error["status"]) == (503, "UNAVAILABLE")
    assert "requestId" in res.error["details"]
    assert caller.call(GET, {"country": "PL"}).result["markets"][0]["currentUsers"] == 0
