"""Market places that cannot be squatted, against the emulator and Redis.

The identity rule (``PACK391_MARKET_SIGNUP_IDENTITY``), pending admissions that
expire unless activated, the scheduled release, and the admin release.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.cloud import firestore

from functions.market.policy import is_expired
from functions.market.wiring import market_service
from shared import collections
from shared.firestore import get_db
from shared.thresholds import MARKET_ADMISSION_PENDING_SEC, MARKET_RELEASE_MAX_UIDS_COUNT
from tests.conftest import Backends, Caller, CallResult
from tests.market.test_market_functions import ACCESS, VERIFIED, call_as, configure, signup
from tests.redis_now import redis_now

pytestmark = pytest.mark.usefixtures("redis_backend")
"""Every test here runs on one Redis and again on a Redis Cluster (tests/conftest.py)."""

RELEASE = "pack391_releaseMarketAdmissions"
IDENTITY_ENV = "PACK391_MARKET_SIGNUP_IDENTITY"
PENDING = timedelta(seconds=MARKET_ADMISSION_PENDING_SEC)
ANONYMOUS: dict[str, Any] = {"firebase": {"identities": {}, "sign_in_provider": "anonymous"}}
"""Claims of a Firebase anonymous account."""
UNVERIFIED: dict[str, Any] = {"email_verified": False}
"""Claims of an email account whose address nobody checked."""
SERVICE: dict[str, Any] = {"service": True}
"""Claims of an app backend (a service principal): the one caller that activates."""
BACKEND = "app-backend"


def members(backends: Backends, country: str) -> set[str]:
    client = redis_now()
    raw: set[bytes] = client.smembers(f"{{pack391:markets}}:{country}:users")  # type: ignore[assignment]
    return {uid.decode() for uid in raw}


def admissions(country: str) -> dict[str, dict[str, Any]]:
    ref = get_db().collection(collections.MARKETS).document(country)
    docs = ref.collection(collections.MARKET_ADMISSIONS).stream()
    return {snap.id: snap.to_dict() or {} for snap in docs}


def admission_ref(country: str, uid: str) -> firestore.DocumentReference:
    path = f"{collections.MARKETS}/{country}/{collections.MARKET_ADMISSIONS}/{uid}"
    return get_db().document(path)


def audit_entries(action: str) -> list[dict[str, Any]]:
    docs = get_db().collection(collections.AUDIT_LOG).stream()
    return [d for d in (s.to_dict() or {} for s in docs) if d.get("action") == action]


def activate(caller: Caller, country: str, uid: str) -> CallResult:
    """The app's backend, having seen ``uid`` complete onboarding, activates their admission."""
    data = {"country": country, "activate": True, "uid": uid}
    return call_as(caller, ACCESS, data, BACKEND, **SERVICE)


def run_scheduled_sync(caller: Caller) -> int:
    return caller.trigger("pack391_syncMarkets")


# ------------------------------------------------------------ identity rule


def test_anonymous_account_is_refused_and_nothing_is_counted(
    caller: Caller, backends: Backends
) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=10)
    for claims in (ANONYMOUS, {**ANONYMOUS, "email_verified": True}):
        refused = signup(caller, "PL", "anon", **claims)
        assert (refused["signupAdmitted"], refused["reason"]) == (False, "identity_required")
        assert refused["currentUsers"] == 0
    assert members(backends, "PL") == set()
    assert admissions("PL") == {}


def test_unverified_refused_under_verified_accepted_under_signed_in(
    caller: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=10)
    refused = signup(caller, "PL", "plain", **UNVERIFIED)  # the default rule: verified
    assert (refused["signupAdmitted"], refused["reason"]) == (False, "identity_required")
    phone = signup(caller, "PL", "phone", phone_number="+48123456789")
    assert (phone["signupAdmitted"], phone["reason"]) == (True, "admitted")

    monkeypatch.setenv(IDENTITY_ENV, "signed_in")
    accepted = signup(caller, "PL", "plain", **UNVERIFIED)
    assert (accepted["signupAdmitted"], accepted["reason"]) == (True, "admitted")
    still_anonymous = signup(caller, "PL", "anon", **ANONYMOUS)
    assert still_anonymous["reason"] == "identity_required"

    monkeypatch.setenv(IDENTITY_ENV, "any")
    assert signup(caller, "PL", "anon", **ANONYMOUS)["reason"] == "admitted"
    assert members(backends, "PL") == {"phone", "plain", "anon"}
    assert set(admissions("PL")) == {"phone", "plain", "anon"}


def test_influencers_need_the_identity_rule_too(
    caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(caller, "BR", launchStatus="influencer_only")
    plain = signup(caller, "BR", "inf-1", influencer=True)
    assert (plain["signupAdmitted"], plain["reason"]) == (False, "identity_required")
    checked = signup(caller, "BR", "inf-2", influencer=True, email_verified=True)
    assert (checked["signupAdmitted"], checked["reason"]) == (True, "admitted")
    assert checked["pendingUntil"] is None  # influencer places never expire
    monkeypatch.setenv(IDENTITY_ENV, "any")
    anonymous = signup(caller, "BR", "inf-3", influencer=True, **ANONYMOUS)
    assert anonymous["reason"] == "admitted"


def test_public_markets_admit_anonymous_accounts(caller: Caller) -> None:
    configure(caller, "DE", launchStatus="public")
    assert signup(caller, "DE", "anon", **ANONYMOUS)["reason"] == "admitted"


@pytest.mark.parametrize("value", ["verfied", "", "everyone"])
def test_a_bad_identity_setting_is_a_configuration_error(
    caller: Caller, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=10, paymentsEnabled=True)
    monkeypatch.setenv(IDENTITY_ENV, value)
    res = call_as(caller, ACCESS, {"country": "PL", "signup": True}, "u1", **VERIFIED)
    assert (res.status, res.error["status"]) == (400, "FAILED_PRECONDITION")
    assert IDENTITY_ENV in res.error["message"]
    assert res.error["details"]["param"] == IDENTITY_ENV
    # feature checks do not depend on the setting and keep working
    features = call_as(caller, ACCESS, {"country": "PL"}, "u1", **VERIFIED).result
    assert features["paymentsEnabled"] is True
    assert (
        caller.call("pack391_getMarketControls", {"country": "PL"}).result["markets"][0][
            "currentUsers"
        ]
        == 0
    )


def test_throwaway_accounts_cannot_fill_a_market(caller: Caller, live_server: str) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=10)
    url = f"{live_server}/{caller.project}/us-central1/{ACCESS}"

    def attempt(uid: str, claims: dict[str, Any]) -> str:
        token = caller.token("user", uid, **claims)
        response = requests.post(
            url,
            json={"data": {"country": "PL", "signup": True}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        return f"{result['signupAdmitted']}:{result['reason']}"

    throwaways = [(f"anon-{i}", ANONYMOUS) for i in range(50)]
    throwaways += [(f"unverified-{i}", UNVERIFIED) for i in range(50)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda a: attempt(*a), throwaways))
    assert answers == ["False:identity_required"] * 100

    with ThreadPoolExecutor(max_workers=10) as pool:
        real = list(pool.map(lambda i: attempt(f"real-{i}", VERIFIED), range(10)))
    assert real == ["True:admitted"] * 10
    assert attempt("real-10", VERIFIED) == "False:traffic_limit_reached"
    view = caller.call("pack391_getMarketControls", {"country": "PL"}).result["markets"][0]
    assert view["currentUsers"] == 10


# ------------------------------------------------ pending, activation, expiry


def test_pending_admission_expires_and_the_place_goes_to_someone_else(
    caller: Caller, backends: Backends
) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=2)
    before = datetime.now(UTC)
    first = signup(caller, "PL", "keeper")
    squatter = signup(caller, "PL", "squatter")
    assert (first["reason"], squatter["reason"]) == ("admitted", "admitted")
    until = datetime.fromisoformat(squatter["pendingUntil"])
    assert before + PENDING <= until <= datetime.now(UTC) + PENDING
    assert admissions("PL")["squatter"]["pendingUntil"] == until
    assert signup(caller, "PL", "late")["reason"] == "traffic_limit_reached"

    activated = activate(caller, "PL", "keeper").result
    assert (activated["signupAdmitted"], activated["reason"]) == (True, "activated")
    assert activated["activatedAt"] is not None
    keeper = admissions("PL")["keeper"]
    assert "pendingUntil" not in keeper
    assert isinstance(keeper["activatedAt"], datetime)

    service = market_service()
    assert service.releases.sync(datetime.now(UTC)).released == 0  # nothing expired yet
    report = service.releases.sync(until + timedelta(seconds=1))
    assert report.released == 1
    assert set(admissions("PL")) == {"keeper"}  # the activated one kept its place
    assert members(backends, "PL") == {"keeper"}

    took = signup(caller, "PL", "late")
    assert (took["signupAdmitted"], took["reason"]) == (True, "admitted")
    assert signup(caller, "PL", "squatter")["reason"] == "traffic_limit_reached"
    # much later still: the activated admission is never released by expiry
    assert service.releases.sync(until + 2 * PENDING).released == 1  # "late" did not activate
    assert set(admissions("PL")) == {"keeper"}


def test_the_scheduled_sync_releases_expired_admissions(caller: Caller, backends: Backends) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=1)
    signup(caller, "PL", "squatter")
    admission_ref("PL", "squatter").update({"pendingUntil": datetime.now(UTC) - PENDING})
    assert signup(caller, "PL", "real")["reason"] == "traffic_limit_reached"
    assert run_scheduled_sync(caller) == 200
    assert admissions("PL") == {}
    assert members(backends, "PL") == set()
    assert signup(caller, "PL", "real")["reason"] == "admitted"


def test_sync_releases_page_by_page(caller: Caller, backends: Backends) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=1000)
    service = market_service()
    now = datetime.now(UTC)
    batch = get_db().batch()
    uids = [f"u{i:04d}" for i in range(450)]  # more than one page of 400
    for uid in uids:
        batch.set(
            admission_ref("PL", uid),
            {"uid": uid, "country": "PL", "admittedAt": now, "pendingUntil": now},
        )
    batch.set(
        admission_ref("PL", "active"),
        {"uid": "active", "country": "PL", "admittedAt": now, "activatedAt": now},
    )
    batch.commit()
    service._store.add_members("PL", [*uids, "active"])
    report = service.releases.sync(now + timedelta(seconds=1))
    assert report.released == 450
    assert set(admissions("PL")) == {"active"}
    assert members(backends, "PL") == {"active"}


def test_activation_needs_an_admission(caller: Caller) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=5)
    res = activate(caller, "PL", "stranger")
    assert (res.status, res.error["status"]) == (400, "FAILED_PRECONDITION")
    assert res.error["details"]["reason"] == "not_admitted"
    assert "signs up first" in res.error["message"]
    assert admissions("PL") == {}


def test_activation_is_idempotent_and_only_for_the_named_user(caller: Caller) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=5)
    signup(caller, "PL", "u1")
    first = activate(caller, "PL", "u1").result
    again = activate(caller, "PL", "u1").result
    assert first["activatedAt"] == again["activatedAt"]
    assert activate(caller, "PL", "u2").error["status"] == "FAILED_PRECONDITION"  # not u1's
    both = call_as(
        caller, ACCESS, {"country": "PL", "signup": True, "activate": True}, "u3", **VERIFIED
    )
    assert (both.error["status"], both.error["details"]["field"]) == (
        "INVALID_ARGUMENT",
        "activate",
    )


def test_a_crash_between_redis_and_firestore_heals(
    caller: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis is released first: a crash before Firestore leaves Redis *behind*, which the
    next sync repairs (and releases again), never a Redis member without a record."""
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=3)
    for uid in ("a", "b"):
        signup(caller, "PL", uid)
    service = market_service()
    later = datetime.now(UTC) + 2 * PENDING

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("process killed")

    with monkeypatch.context() as patch:
        patch.setattr(service._admissions, "release_admissions", crash)
        with pytest.raises(RuntimeError):
            service.releases.sync(later)
    assert members(backends, "PL") == set()  # Redis behind Firestore ...
    assert set(admissions("PL")) == {"a", "b"}
    restored = service.releases.sync(datetime.now(UTC))  # ... until the next sync
    assert restored.members_restored == 2
    assert members(backends, "PL") == {"a", "b"}
    assert service.releases.sync(later).released == 2
    assert (members(backends, "PL"), admissions("PL")) == (set(), {})


def test_an_admission_activated_during_a_release_keeps_its_place(
    caller: Caller, backends: Backends
) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=3)
    signup(caller, "PL", "a")
    later = datetime.now(UTC) + 2 * PENDING
    service = market_service()
    # the page was read while "a" was pending; it activates before the transaction
    assert activate(caller, "PL", "a").status == 200
    outcome = service.releases.release_uids("PL", ["a"], lambda adm: is_expired(adm, later))
    assert (outcome.released, outcome.kept) == ([], ["a"])
    assert members(backends, "PL") == {"a"}
    assert set(admissions("PL")) == {"a"}


# ---------------------------------------------------------- admin release


@pytest.mark.parametrize(("role", "status"), [(None, 401), ("user", 403), ("ops", 403)])
def test_release_is_for_admins_only(
    caller: Caller, backends: Backends, role: str | None, status: int
) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=5)
    signup(caller, "PL", "u1")
    res = caller.call(RELEASE, {"country": "PL", "uids": ["u1"], "reason": "x"}, role=role)
    assert res.status == status
    assert members(backends, "PL") == {"u1"}
    assert set(admissions("PL")) == {"u1"}
    assert audit_entries("market.release_admissions") == []


def test_admin_releases_named_admissions(caller: Caller, backends: Backends) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=4)
    for uid in ("u1", "u2", "u3", "u4"):
        signup(caller, "PL", uid)
    activate(caller, "PL", "u1")
    res = caller.call(
        RELEASE, {"country": "pl", "uids": ["u1", "u2", "ghost", "u2"], "reason": "bot ring"}
    ).result
    assert res == {
        "country": "PL",
        "released": 2,
        "uids": ["u1", "u2"],
        "skipped": ["ghost"],
        "more": False,
    }
    assert members(backends, "PL") == {"u3", "u4"}
    assert set(admissions("PL")) == {"u3", "u4"}
    [entry] = audit_entries("market.release_admissions")
    assert entry["actorUid"] == "admin-1"
    assert entry["reason"] == "bot ring"
    assert entry["target"] == "pack391_markets/PL/admissions"
    assert entry["after"]["uids"] == ["u1", "u2"]
    assert entry["after"]["released"] == 2
    assert [a["uid"] for a in entry["before"]["admissions"]] == ["u1", "u2"]
    assert entry["requestId"]
    assert signup(caller, "PL", "new")["reason"] == "admitted"  # the place is free


def test_admin_releases_pending_only(caller: Caller, backends: Backends) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=5)
    for uid in ("u1", "u2", "u3"):
        signup(caller, "PL", uid)
    activate(caller, "PL", "u1")
    named = caller.call(
        RELEASE, {"country": "PL", "uids": ["u1", "u2"], "pendingOnly": True, "reason": "x"}
    ).result
    assert (named["uids"], named["skipped"]) == (["u2"], ["u1"])
    assert members(backends, "PL") == {"u1", "u3"}  # the active one stays in the set
    every = caller.call(RELEASE, {"country": "PL", "pendingOnly": True, "reason": "y"}).result
    assert (every["released"], every["uids"], every["more"]) == (1, ["u3"], False)
    assert members(backends, "PL") == {"u1"}
    assert set(admissions("PL")) == {"u1"}
    assert len(audit_entries("market.release_admissions")) == 2


def test_pending_only_release_is_bounded_per_call(caller: Caller, backends: Backends) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=1000)
    now = datetime.now(UTC)
    batch = get_db().batch()
    uids = [f"u{i:04d}" for i in range(MARKET_RELEASE_MAX_UIDS_COUNT + 3)]
    for uid in uids:
        batch.set(
            admission_ref("PL", uid),
            {"uid": uid, "country": "PL", "admittedAt": now, "pendingUntil": now + PENDING},
        )
    batch.commit()
    market_service()._store.add_members("PL", uids)
    first = caller.call(RELEASE, {"country": "PL", "pendingOnly": True, "reason": "x"}).result
    assert (first["released"], first["more"]) == (MARKET_RELEASE_MAX_UIDS_COUNT, True)
    second = caller.call(RELEASE, {"country": "PL", "pendingOnly": True, "reason": "x"}).result
    assert (second["released"], second["more"]) == (3, False)
    assert (members(backends, "PL"), admissions("PL")) == (set(), {})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"uids": ["u1"], "reason": "x"}, "country"),
        ({"country": "XX", "uids": ["u1"], "reason": "x"}, "country"),
        ({"country": "PL", "uids": ["u1"]}, "reason"),
        ({"country": "PL", "uids": ["u1"], "reason": ""}, "reason"),
        ({"country": "PL", "reason": "x"}, "uids"),
        ({"country": "PL", "uids": [], "reason": "x"}, "uids"),
        ({"country": "PL", "uids": "u1", "reason": "x"}, "uids"),
        ({"country": "PL", "uids": None, "reason": "x"}, "uids"),
        ({"country": "PL", "uids": ["u"] * 501, "reason": "x"}, "uids"),
        ({"country": "PL", "uids": [7], "reason": "x"}, "uids.0"),
        ({"country": "PL", "uids": ["u1", ""], "reason": "x"}, "uids.1"),
        ({"country": "PL", "uids": ["__x__"], "reason": "x"}, "uids.0"),
        ({"country": "PL", "uids": ["____"], "reason": "x"}, "uids.0"),
        ({"country": "PL", "uids": ["."], "reason": "x"}, "uids.0"),
        ({"country": "PL", "uids": [".."], "reason": "x"}, "uids.0"),
        ({"country": "PL", "uids": ["u1/admissions"], "reason": "x"}, "uids.0"),
        ({"country": "PL", "uids": ["u" * 129], "reason": "x"}, "uids.0"),
        ({"country": "PL", "pendingOnly": "yes", "reason": "x"}, "pendingOnly"),
        ({"country": "PL", "uids": ["u1"], "reason": "x", "all": True}, "all"),
    ],
)
def test_release_bad_input_names_the_field(
    caller: Caller, backends: Backends, data: dict[str, Any], field: str
) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=5)
    signup(caller, "PL", "u1")
    res = caller.call(RELEASE, data)
    assert (res.status, res.error["status"]) == (400, "INVALID_ARGUMENT")
    assert res.error["details"]["field"] == field
    assert members(backends, "PL") == {"u1"}
    assert set(admissions("PL")) == {"u1"}
