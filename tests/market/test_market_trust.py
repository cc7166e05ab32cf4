"""Market places that need trust, against the emulator and Redis.

One soft-launch place per user across markets (decided in a Firestore transaction),
activation only from a service principal (audited), and the signup's country bound to
the one the front door reports.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from functions.market.policy import Applicant
from functions.market.wiring import market_service
from shared import collections
from shared.errors import DependencyUnavailable, FailedPrecondition
from shared.firestore import get_db
from tests.conftest import Backends, Caller, CallResult, one_redis
from tests.market.test_market_functions import ACCESS, VERIFIED, call_as, configure, signup
from tests.market.test_market_slots import (
    BACKEND,
    PENDING,
    RELEASE,
    SERVICE,
    activate,
    admission_ref,
    admissions,
    audit_entries,
    members,
)

pytestmark = pytest.mark.usefixtures("redis_backend")
"""Every test here runs on one Redis and again on a Redis Cluster (tests/conftest.py)."""


def member_doc(uid: str) -> dict[str, Any] | None:
    """``pack391_market_members/{uid}``: the place ``uid`` holds, or None."""
    snap = get_db().collection(collections.MARKET_MEMBERS).document(uid).get()
    return snap.to_dict() if snap.exists else None


def place(uid: str) -> str | None:
    """The country of the soft-launch place ``uid`` holds, or None."""
    doc = member_doc(uid)
    return None if doc is None else str(doc["country"])


def try_signup(caller: Caller, country: str, uid: str) -> CallResult:
    return call_as(caller, ACCESS, {"country": country, "signup": True}, uid, **VERIFIED)


def two_soft_launch_markets(caller: Caller, limit: int = 5) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=limit)
    configure(caller, "DE", launchStatus="soft_launch", trafficLimit=limit)


# ------------------------------------------------------ one place per user


def test_one_soft_launch_place_per_user_across_markets(caller: Caller, backends: Backends) -> None:
    two_soft_launch_markets(caller)
    assert signup(caller, "PL", "u1")["reason"] == "admitted"
    second = try_signup(caller, "DE", "u1")
    assert (second.status, second.error["status"]) == (400, "FAILED_PRECONDITION")
    assert second.error["details"]["reason"] == "admitted_elsewhere"
    assert second.error["details"]["heldCountry"] == "PL"
    assert second.error["details"]["country"] == "DE"
    assert "PL" in second.error["message"] and "DE" in second.error["message"]
    held = member_doc("u1")
    assert held is not None and (held["uid"], held["country"]) == ("u1", "PL")
    # never a second place: nothing counted or recorded in DE, the PL place untouched
    assert (members(backends, "DE"), admissions("DE")) == (set(), {})
    assert (members(backends, "PL"), set(admissions("PL"))) == ({"u1"}, {"u1"})
    assert member_doc("u1") == held
    view = caller.call("pack391_getMarketControls", {"country": "DE"}).result["markets"][0]
    assert view["currentUsers"] == 0

    # the held market still answers as before, and others may still take DE's places
    assert signup(caller, "PL", "u1")["reason"] == "already_admitted"
    assert signup(caller, "DE", "u2")["reason"] == "admitted"
    assert place("u2") == "DE"
    # a public market has no place to squat: it neither takes nor checks the user's place
    configure(caller, "FR", launchStatus="public")
    assert signup(caller, "FR", "u1")["reason"] == "admitted"
    assert member_doc("u1") == held


APP_RETRIES = 5
"""How often the test's app retries an UNAVAILABLE answer, as the app does."""


# On one Redis only: a Firestore transaction race: the market's Redis admission runs on the
# cluster in the other tests here.
@one_redis
def test_concurrent_signups_of_one_user_in_two_markets_take_one_place(
    caller: Caller, backends: Backends, live_server: str
) -> None:
    """The same user signs up in PL and DE at the same moment, over real HTTP: both
    pass the policy and Redis, and the transactions on the user's place document let
    exactly one of them commit; the other gives its Redis slot back.

    The emulator resolves two transactions that contend on one document slowly (seconds,
    ../shared/DESIGN.md), so on a busy machine an attempt can outlast the user call's
    3 s budget and answer UNAVAILABLE. Its commit may still land after that answer (a
    deadline says nothing about a commit already sent), so the test does what the app
    does with UNAVAILABLE: it tries again, until each attempt has a definite answer. The
    retry finds a place that landed late (``already_admitted``), and its transaction
    waits for the abandoned one, so nothing is still in flight when the test ends."""
    two_soft_launch_markets(caller, limit=10)
    url = f"{live_server}/{caller.project}/us-central1/{ACCESS}"
    users = [f"racer-{i}" for i in range(4)]
    barriers = {uid: threading.Barrier(2) for uid in users}

    def attempt(uid: str, country: str) -> tuple[str, str, int, dict[str, Any], int]:
        token = caller.token("user", uid, **VERIFIED)
        barriers[uid].wait(timeout=30)
        tries = 0
        while tries < APP_RETRIES:
            tries += 1
            response = requests.post(
                url,
                json={"data": {"country": country, "signup": True}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            body = response.json()
            if response.status_code != 503:
                break
            assert body["error"]["status"] == "UNAVAILABLE", body
            assert body["error"]["details"]["dependency"] == "firestore", body
        return uid, country, response.status_code, body, tries

    with ThreadPoolExecutor(max_workers=2 * len(users)) as pool:
        futures = [pool.submit(attempt, uid, c) for uid in users for c in ("PL", "DE")]
        answers = [f.result() for f in futures]

    pl, de = admissions("PL"), admissions("DE")
    for uid in users:
        mine = [a for a in answers if a[0] == uid]
        won = [a for a in mine if a[2] == 200]
        lost = [a for a in mine if a[2] != 200]
        assert len(won) == 1 and len(lost) == 1, mine
        (_, country, _, body, tries), (_, other, status, refused, _) = won[0], lost[0]
        # a first answer says admitted; only a retry may find its own place already there
        reasons = {"admitted"} if tries == 1 else {"admitted", "already_admitted"}
        assert body["result"]["reason"] in reasons, body
        assert status == 400, refused
        assert refused["error"]["status"] == "FAILED_PRECONDITION", refused
        assert refused["error"]["details"]["reason"] == "admitted_elsewhere"
        assert refused["error"]["details"]["heldCountry"] == country
        # exactly one place, recorded where it was won, in both stores
        assert (uid in pl, uid in de) == (country == "PL", country == "DE")
        assert uid in members(backends, country)
        assert uid not in members(backends, other)
        assert place(uid) == country
    assert members(backends, "PL") == set(pl)
    assert members(backends, "DE") == set(de)
    assert len(pl) + len(de) == len(users)


def test_the_transaction_alone_keeps_one_place_when_both_early_reads_miss(
    caller: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst interleaving, made certain: both signups' early reads see no place (as
    when both read before either commits), both take a Redis slot, and the transactions
    on the user's place document decide: one place, the other slot given back."""
    two_soft_launch_markets(caller, limit=10)
    service = market_service()
    monkeypatch.setattr(service._admissions, "held_place", lambda uid: None, raising=False)
    now = datetime.now(UTC)
    applicant = Applicant("both", verified=True)
    start = threading.Barrier(2)

    def attempt(country: str) -> str:
        start.wait(timeout=30)
        try:
            return service.admission.check_access(
                country, applicant, True, "verified", now
            ).reason.value
        except FailedPrecondition as refused:
            return f"{refused.details['reason']}:{refused.details['heldCountry']}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = dict(zip(("PL", "DE"), pool.map(attempt, ("PL", "DE")), strict=True))
    won = [c for c, answer in answers.items() if answer == "admitted"]
    assert len(won) == 1, answers
    [other] = [c for c in answers if c not in won]
    assert answers[other] == f"admitted_elsewhere:{won[0]}"
    assert place("both") == won[0]
    assert (set(admissions(won[0])), members(backends, won[0])) == ({"both"}, {"both"})
    assert (admissions(other), members(backends, other)) == ({}, set())


def test_a_release_frees_the_users_place_for_another_market(
    caller: Caller, backends: Backends
) -> None:
    two_soft_launch_markets(caller)
    for uid in ("named", "expiring", "kept"):
        assert signup(caller, "PL", uid)["reason"] == "admitted"
    assert activate(caller, "PL", "kept").status == 200

    # an admin's release (by name) deletes the place with the admission
    res = caller.call(RELEASE, {"country": "PL", "uids": ["named"], "reason": "moved"}).result
    assert res["uids"] == ["named"]
    assert member_doc("named") is None
    assert signup(caller, "DE", "named")["reason"] == "admitted"
    assert place("named") == "DE"

    # so does the minute sync's release of an expired pending admission
    admission_ref("PL", "expiring").update({"pendingUntil": datetime.now(UTC) - PENDING})
    assert market_service().releases.sync(datetime.now(UTC)).released == 1  # "kept" was activated
    assert member_doc("expiring") is None
    assert signup(caller, "DE", "expiring")["reason"] == "admitted"

    # an activated place is kept, and still the user's one place
    assert place("kept") == "PL"
    refused = try_signup(caller, "DE", "kept")
    assert refused.error["details"]["heldCountry"] == "PL"
    assert members(backends, "DE") == {"named", "expiring"}
    assert set(admissions("PL")) == {"kept"}


def test_a_commit_that_lands_after_its_budget_is_restored_by_a_retry_or_the_sync(
    caller: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deadline on a commit says nothing about whether it landed (gRPC's
    DEADLINE_EXCEEDED: "may be returned even if the operation has completed"). Here the
    transaction commits and the call's budget runs out as it answers: the caller hears
    UNAVAILABLE, the Redis slot is given back (Redis behind Firestore, never ahead), and
    both repairs work: the app's retry finds its place (``already_admitted``), and without
    a retry the minute sync puts the member back."""
    two_soft_launch_markets(caller, limit=10)
    service = market_service()
    record = service._admissions.record_exclusive_admission

    def landed_late(admission: Any) -> Any:
        record(admission)  # committed in Firestore ...
        raise DependencyUnavailable("firestore", 3.0)  # ... and the budget ran out

    now = datetime.now(UTC)
    with monkeypatch.context() as patched:  # (monkeypatch.undo would undo the fixtures' too)
        patched.setattr(service._admissions, "record_exclusive_admission", landed_late)
        for uid in ("retries", "gives-up"):
            with pytest.raises(DependencyUnavailable):
                service.admission.check_access(
                    "PL", Applicant(uid, verified=True), True, "verified", now
                )
    assert set(admissions("PL")) == {"retries", "gives-up"}
    assert (place("retries"), place("gives-up")) == ("PL", "PL")
    assert members(backends, "PL") == set()  # behind Firestore: the cap can never be passed

    retry = service.admission.check_access(
        "PL", Applicant("retries", verified=True), True, "verified", now
    )
    assert retry.reason.value == "already_admitted"
    assert members(backends, "PL") == {"retries"}
    assert service.releases.sync(now).members_restored == 1
    assert members(backends, "PL") == {"retries", "gives-up"}
    # and the place still holds: the other market refuses both
    for uid in ("retries", "gives-up"):
        assert try_signup(caller, "DE", uid).error["details"]["heldCountry"] == "PL"


def test_a_stale_place_document_is_taken_over(caller: Caller, backends: Backends) -> None:
    """A place document whose admission no longer exists (deleted by hand) holds nothing:
    the next signup's transaction sees that and records the new place."""
    two_soft_launch_markets(caller)
    assert signup(caller, "PL", "u1")["reason"] == "admitted"
    admission_ref("PL", "u1").delete()
    market_service()._store.remove_members("PL", ["u1"])
    assert signup(caller, "DE", "u1")["reason"] == "admitted"
    assert place("u1") == "DE"
    assert (members(backends, "DE"), set(admissions("DE"))) == ({"u1"}, {"u1"})


# ------------------------------------------------------------ activation


def test_the_user_cannot_activate_their_own_admission(caller: Caller) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=5)
    assert signup(caller, "PL", "u1")["reason"] == "admitted"
    own = call_as(caller, ACCESS, {"country": "PL", "activate": True}, "u1", **VERIFIED)
    assert (own.status, own.error["status"]) == (403, "PERMISSION_DENIED")
    assert "service" in own.error["message"] and "uid" in own.error["message"]
    # naming themselves changes nothing; neither does an ops or admin token
    named = call_as(
        caller, ACCESS, {"country": "PL", "activate": True, "uid": "u1"}, "u1", **VERIFIED
    )
    assert named.error["status"] == "PERMISSION_DENIED"
    for role in ("ops", "admin"):
        staff = caller.call(ACCESS, {"country": "PL", "activate": True, "uid": "u1"}, role=role)
        assert staff.error["status"] == "PERMISSION_DENIED", role
    admission = admissions("PL")["u1"]
    assert "activatedAt" not in admission and "pendingUntil" in admission
    assert audit_entries("market.activate") == []


def test_a_service_activates_the_named_user_audited(caller: Caller) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=5)
    pending = signup(caller, "PL", "u1")
    res = activate(caller, "PL", "u1")
    assert res.status == 200, res.body
    assert (res.result["signupAdmitted"], res.result["reason"]) == (True, "activated")
    admission = admissions("PL")["u1"]
    assert "pendingUntil" not in admission and isinstance(admission["activatedAt"], datetime)

    [entry] = audit_entries("market.activate")
    assert entry["actorUid"] == BACKEND
    assert entry["target"] == "pack391_markets/PL/admissions/u1"
    until = datetime.fromisoformat(pending["pendingUntil"])
    assert datetime.fromisoformat(entry["before"]["pendingUntil"]) == until
    assert "activatedAt" not in entry["before"]
    assert entry["after"]["activatedAt"] and "pendingUntil" not in entry["after"]
    assert entry["requestId"]

    # idempotent: a second activation changes nothing and is not audited again
    assert activate(caller, "PL", "u1").result["activatedAt"] == res.result["activatedAt"]
    assert len(audit_entries("market.activate")) == 1

    # the service must name the user; a user may not name one
    unnamed = call_as(caller, ACCESS, {"country": "PL", "activate": True}, BACKEND, **SERVICE)
    assert (unnamed.error["status"], unnamed.error["details"]["field"]) == (
        "INVALID_ARGUMENT",
        "uid",
    )
    stray = call_as(caller, ACCESS, {"country": "PL", "uid": "u1"}, "u2", **VERIFIED)
    assert (stray.error["status"], stray.error["details"]["field"]) == ("INVALID_ARGUMENT", "uid")


# ------------------------------------------------------------ the country


def _from(caller: Caller, uid: str, data: dict[str, Any], region: str) -> CallResult:
    """A call that came through an external load balancer which set the client's region."""
    token = caller.token("user", uid, **VERIFIED)
    response = caller.app.test_client().post(
        caller.url(ACCESS),
        json={"data": data},
        headers={
            "Authorization": f"Bearer {token}",
            "X-Client-Region": region,
            "X-Forwarded-For": "198.51.100.7, 34.120.0.1",
        },
    )
    return CallResult(response.status_code, response.get_json())


def test_signup_is_for_the_country_the_front_door_reports(
    caller: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_soft_launch_markets(caller)
    configure(caller, "PL", paymentsEnabled=True)
    monkeypatch.setenv("PACK391_FRONT_DOOR", "load-balancer")

    wrong = _from(caller, "u1", {"country": "PL", "signup": True}, "DE")
    assert (wrong.status, wrong.error["status"]) == (400, "FAILED_PRECONDITION")
    details = wrong.error["details"]
    assert (details["reason"], details["country"], details["frontDoorCountry"]) == (
        "country_mismatch",
        "PL",
        "DE",
    )
    assert "PL" in wrong.error["message"] and "DE" in wrong.error["message"]
    assert (members(backends, "PL"), admissions("PL"), member_doc("u1")) == (set(), {}, None)

    right = _from(caller, "u1", {"country": "de", "signup": True}, "DE").result
    assert (right["country"], right["reason"]) == ("DE", "admitted")
    # feature checks are not bound to where the user is (a user of a market may travel)
    features = _from(caller, "u1", {"country": "PL"}, "DE").result
    assert (features["reason"], features["paymentsEnabled"]) == ("not_requested", True)

    # a plain firebase deploy (google) reports no country: the stated one is used
    monkeypatch.setenv("PACK391_FRONT_DOOR", "google")
    stated = _from(caller, "u2", {"country": "PL", "signup": True}, "DE").result
    assert (stated["country"], stated["reason"]) == ("PL", "admitted")
    assert set(admissions("PL")) == {"u2"}
