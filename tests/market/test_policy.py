"""The admission rules as a literal table: (market, switches, user) -> verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.market.policy import (
    ActivationVerdict,
    Applicant,
    MarketState,
    SignupIdentity,
    admin_may_release,
    admitted_elsewhere,
    applicant_of,
    apply_patch,
    decide_activation,
    decide_signup,
    features_enabled,
    holds_one_place,
    identity_allows,
    is_expired,
    is_pending,
    parse_signup_identity,
    pending_until,
    signup_country,
)
from shared.errors import FailedPrecondition, InvalidInput
from shared.models.market import AdmissionDoc, MarketConfig, MarketDoc
from shared.models.market import AdmissionReason as R
from shared.models.market import LaunchStatus as S
from shared.thresholds import MARKET_ADMISSION_PENDING_SEC

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
VERIFIED = SignupIdentity.VERIFIED
SIGNED_IN = SignupIdentity.SIGNED_IN
ANY = SignupIdentity.ANY


def market(status: S, limit: int | None = None, emergency: bool = False) -> MarketDoc:
    return MarketDoc(
        country="PL",
        launch_status=status,
        traffic_limit=limit,
        emergency_paused=emergency,
        payments_enabled=True,
        payouts_enabled=True,
        marketing_enabled=True,
    )


# status, limit, emergency, all_paused, member, users, influencer -> admit, reason, capacity
TABLE = [
    (S.NOT_STARTED, None, False, False, False, 0, False, False, R.NOT_STARTED, None),
    (S.NOT_STARTED, None, False, False, False, 0, True, False, R.NOT_STARTED, None),
    (S.PAUSED, None, False, False, False, 0, True, False, R.PAUSED, None),
    (S.PAUSED, None, False, False, True, 5, False, False, R.PAUSED, None),
    (S.PUBLIC, None, True, False, False, 0, False, False, R.EMERGENCY_PAUSED, None),
    (S.PUBLIC, None, False, True, False, 0, False, False, R.ALL_MARKETS_PAUSED, None),
    (S.PUBLIC, None, True, True, False, 0, False, False, R.ALL_MARKETS_PAUSED, None),
    (S.INFLUENCER_ONLY, None, False, False, False, 0, False, False, R.INFLUENCERS_ONLY, None),
    (S.INFLUENCER_ONLY, None, False, False, False, 0, True, True, R.ADMITTED, None),
    (S.INFLUENCER_ONLY, None, False, False, True, 1, False, True, R.ALREADY_ADMITTED, None),
    (S.SOFT_LAUNCH, 10, False, False, False, 9, False, True, R.ADMITTED, 10),
    (S.SOFT_LAUNCH, 10, False, False, False, 10, False, False, R.TRAFFIC_LIMIT_REACHED, None),
    (S.SOFT_LAUNCH, 10, False, False, False, 11, True, False, R.TRAFFIC_LIMIT_REACHED, None),
    (S.SOFT_LAUNCH, 10, False, False, True, 10, False, True, R.ALREADY_ADMITTED, None),
    (S.SOFT_LAUNCH, None, False, False, False, 0, False, False, R.TRAFFIC_LIMIT_REACHED, None),
    (S.PUBLIC, None, False, False, False, 10**6, False, True, R.ADMITTED, None),
    (S.PUBLIC, 5, False, False, False, 10**6, False, True, R.ADMITTED, None),
]


@pytest.mark.parametrize(
    (
        "status",
        "limit",
        "emergency",
        "all_paused",
        "member",
        "users",
        "influencer",
        "admit",
        "reason",
        "capacity",
    ),
    TABLE,
)
def test_decide_signup(
    status: S,
    limit: int | None,
    emergency: bool,
    all_paused: bool,
    member: bool,
    users: int,
    influencer: bool,
    admit: bool,
    reason: R,
    capacity: int | None,
) -> None:
    state = MarketState(market(status, limit, emergency), all_paused, member, users)
    applicant = Applicant("u1", influencer=influencer, verified=True)
    decision = decide_signup(state, applicant, VERIFIED)
    assert (decision.admit, decision.reason, decision.capacity) == (admit, reason, capacity)


# ------------------------------------------------------------ identity rule

ANON = Applicant("a", anonymous=True)
ANON_VERIFIED = Applicant("av", anonymous=True, verified=True)  # e.g. a linked-then-odd token
PLAIN = Applicant("p")
CHECKED = Applicant("v", verified=True)
INF_PLAIN = Applicant("i", influencer=True)
INF_CHECKED = Applicant("iv", influencer=True, verified=True)
INF_ANON = Applicant("ia", influencer=True, anonymous=True)

# rule, applicant -> may take a limited place
IDENTITY_TABLE = [
    (VERIFIED, ANON, False),
    (VERIFIED, ANON_VERIFIED, False),
    (VERIFIED, PLAIN, False),
    (VERIFIED, CHECKED, True),
    (VERIFIED, INF_PLAIN, False),
    (VERIFIED, INF_CHECKED, True),
    (SIGNED_IN, ANON, False),
    (SIGNED_IN, INF_ANON, False),
    (SIGNED_IN, PLAIN, True),
    (SIGNED_IN, CHECKED, True),
    (SIGNED_IN, INF_PLAIN, True),
    (ANY, ANON, True),
    (ANY, INF_ANON, True),
    (ANY, PLAIN, True),
]


@pytest.mark.parametrize(("rule", "applicant", "allowed"), IDENTITY_TABLE)
def test_identity_allows(rule: SignupIdentity, applicant: Applicant, allowed: bool) -> None:
    assert identity_allows(rule, applicant) is allowed


# status, member, users, applicant, rule -> admit, reason (soft_launch limit 10)
SIGNUP_IDENTITY_TABLE = [
    (S.SOFT_LAUNCH, False, 0, ANON, VERIFIED, False, R.IDENTITY_REQUIRED),
    (S.SOFT_LAUNCH, False, 0, PLAIN, VERIFIED, False, R.IDENTITY_REQUIRED),
    (S.SOFT_LAUNCH, False, 0, CHECKED, VERIFIED, True, R.ADMITTED),
    (S.SOFT_LAUNCH, False, 0, PLAIN, SIGNED_IN, True, R.ADMITTED),
    (S.SOFT_LAUNCH, False, 0, ANON, SIGNED_IN, False, R.IDENTITY_REQUIRED),
    (S.SOFT_LAUNCH, False, 0, ANON, ANY, True, R.ADMITTED),
    # identity is asked before the limit: the answer the user can act on
    (S.SOFT_LAUNCH, False, 10, ANON, VERIFIED, False, R.IDENTITY_REQUIRED),
    (S.SOFT_LAUNCH, False, 10, CHECKED, VERIFIED, False, R.TRAFFIC_LIMIT_REACHED),
    # a user admitted earlier (e.g. under a laxer rule) keeps the place
    (S.SOFT_LAUNCH, True, 10, PLAIN, VERIFIED, True, R.ALREADY_ADMITTED),
    # influencers need the identity rule too, except with "any"
    (S.INFLUENCER_ONLY, False, 0, INF_PLAIN, VERIFIED, False, R.IDENTITY_REQUIRED),
    (S.INFLUENCER_ONLY, False, 0, INF_ANON, SIGNED_IN, False, R.IDENTITY_REQUIRED),
    (S.INFLUENCER_ONLY, False, 0, INF_ANON, ANY, True, R.ADMITTED),
    (S.INFLUENCER_ONLY, False, 0, INF_CHECKED, VERIFIED, True, R.ADMITTED),
    (S.INFLUENCER_ONLY, False, 0, INF_PLAIN, SIGNED_IN, True, R.ADMITTED),
    (S.INFLUENCER_ONLY, False, 0, CHECKED, VERIFIED, False, R.INFLUENCERS_ONLY),
    (S.INFLUENCER_ONLY, False, 0, ANON, VERIFIED, False, R.INFLUENCERS_ONLY),
    # public has no place to squat: everyone; closed stages answer as before
    (S.PUBLIC, False, 0, ANON, VERIFIED, True, R.ADMITTED),
    (S.PUBLIC, False, 0, PLAIN, VERIFIED, True, R.ADMITTED),
    (S.NOT_STARTED, False, 0, CHECKED, ANY, False, R.NOT_STARTED),
    (S.PAUSED, False, 0, ANON, VERIFIED, False, R.PAUSED),
]


@pytest.mark.parametrize(
    ("status", "member", "users", "applicant", "rule", "admit", "reason"),
    SIGNUP_IDENTITY_TABLE,
)
def test_decide_signup_identity(
    status: S,
    member: bool,
    users: int,
    applicant: Applicant,
    rule: SignupIdentity,
    admit: bool,
    reason: R,
) -> None:
    limit = 10 if status is S.SOFT_LAUNCH else None
    state = MarketState(market(status, limit), False, member, users)
    decision = decide_signup(state, applicant, rule)
    assert (decision.admit, decision.reason) == (admit, reason)


# ID-token claims -> (influencer, anonymous, verified)
CLAIMS_TABLE: list[tuple[dict[str, Any], tuple[bool, bool, bool]]] = [
    ({}, (False, False, False)),
    ({"firebase": {"sign_in_provider": "anonymous"}}, (False, True, False)),
    ({"firebase": {"sign_in_provider": "password"}}, (False, False, False)),
    ({"firebase": {"sign_in_provider": "password"}, "email_verified": True}, (False, False, True)),
    ({"email_verified": False}, (False, False, False)),
    ({"email_verified": "true"}, (False, False, False)),  # only a real boolean counts
    ({"phone_number": "+48123456789"}, (False, False, True)),
    ({"phone_number": ""}, (False, False, False)),
    ({"phone_number": "   "}, (False, False, False)),
    ({"phone_number": 48123456789}, (False, False, False)),
    ({"firebase": "anonymous"}, (False, False, False)),  # malformed: not a dict
    (
        {"firebase": {"sign_in_provider": "anonymous"}, "email_verified": True},
        (False, True, True),
    ),
    ({"influencer": True, "email_verified": True}, (True, False, True)),
    ({"influencer": "yes"}, (False, False, False)),
]


@pytest.mark.parametrize(("claims", "expected"), CLAIMS_TABLE)
def test_applicant_of_claims(claims: dict[str, Any], expected: tuple[bool, bool, bool]) -> None:
    who = applicant_of("u1", claims)
    assert who.uid == "u1"
    assert (who.influencer, who.anonymous, who.verified) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("verified", VERIFIED),
        ("signed_in", SIGNED_IN),
        ("any", ANY),
        (" Verified ", VERIFIED),
        ("ANY", ANY),
    ],
)
def test_parse_signup_identity(raw: str, rule: SignupIdentity) -> None:
    assert parse_signup_identity(raw) is rule


@pytest.mark.parametrize("raw", ["", "none", "signed-in", "email", "verified,any"])
def test_parse_signup_identity_refuses_bad_values(raw: str) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        parse_signup_identity(raw)
    assert "PACK391_MARKET_SIGNUP_IDENTITY" in caught.value.message
    assert caught.value.details["param"] == "PACK391_MARKET_SIGNUP_IDENTITY"


# ------------------------------------------------ pending, activation, expiry

PENDING = timedelta(seconds=MARKET_ADMISSION_PENDING_SEC)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (S.SOFT_LAUNCH, NOW + PENDING),
        (S.PUBLIC, None),
        (S.INFLUENCER_ONLY, None),
    ],
)
def test_pending_until(status: S, expected: datetime | None) -> None:
    assert pending_until(status, NOW) == expected


def admission(pending: datetime | None = None, activated: datetime | None = None) -> AdmissionDoc:
    return AdmissionDoc(
        uid="u1",
        country="PL",
        admitted_at=NOW - PENDING,
        pending_until=pending,
        activated_at=activated,
    )


# admission -> activation verdict, expired at NOW, pending, admin release (pendingOnly / all)
ADMISSION_TABLE = [
    (None, ActivationVerdict.NOT_ADMITTED, None, None, None, None),
    (admission(NOW + PENDING), ActivationVerdict.ACTIVATE, False, True, True, True),
    (admission(NOW), ActivationVerdict.ACTIVATE, True, True, True, True),  # boundary: expired
    (
        admission(NOW - timedelta(seconds=1)),
        ActivationVerdict.ACTIVATE,  # expired but not yet released: still the user's
        True,
        True,
        True,
        True,
    ),
    (admission(activated=NOW), ActivationVerdict.ALREADY_ACTIVE, False, False, False, True),
    (admission(), ActivationVerdict.ACTIVATE, False, False, False, True),  # public: never pending
]


@pytest.mark.parametrize(
    ("doc", "verdict", "expired", "pending", "admin_pending_only", "admin_all"), ADMISSION_TABLE
)
def test_admission_lifecycle(
    doc: AdmissionDoc | None,
    verdict: ActivationVerdict,
    expired: bool | None,
    pending: bool | None,
    admin_pending_only: bool | None,
    admin_all: bool | None,
) -> None:
    assert decide_activation(doc) is verdict
    if doc is None:
        return
    assert is_expired(doc, NOW) is expired
    assert is_pending(doc) is pending
    assert admin_may_release(doc, pending_only=True) is admin_pending_only
    assert admin_may_release(doc, pending_only=False) is admin_all


def test_admission_document_leaves_absent_fields_out() -> None:
    assert set(admission().to_doc()) == {"uid", "country", "admittedAt", "influencer"}
    assert admission(NOW).to_doc()["pendingUntil"] == NOW


@pytest.mark.parametrize(
    ("status", "emergency", "all_paused", "expected"),
    [
        (S.PUBLIC, False, False, (True, True, True)),
        (S.SOFT_LAUNCH, False, False, (True, True, True)),
        (S.NOT_STARTED, False, False, (True, True, True)),
        (S.PAUSED, False, False, (False, False, False)),
        (S.PUBLIC, True, False, (False, False, False)),
        (S.PUBLIC, False, True, (False, False, False)),
    ],
)
def test_features_off_while_paused(
    status: S, emergency: bool, all_paused: bool, expected: tuple[bool, bool, bool]
) -> None:
    assert features_enabled(market(status, 10, emergency), all_paused) == expected


def test_features_follow_flags() -> None:
    doc = MarketDoc(country="DE", launch_status=S.PUBLIC, payments_enabled=True)
    assert features_enabled(doc, False) == (True, False, False)


def test_apply_patch_keeps_untouched_fields() -> None:
    current = MarketConfig(launch_status=S.PUBLIC, payments_enabled=True, traffic_limit=7)
    after = apply_patch(current, {"marketing_enabled": True})
    assert after == MarketConfig(
        launch_status=S.PUBLIC, payments_enabled=True, traffic_limit=7, marketing_enabled=True
    )


def test_apply_patch_can_clear_the_limit() -> None:
    after = apply_patch(
        MarketConfig(launch_status=S.PUBLIC, traffic_limit=7), {"traffic_limit": None}
    )
    assert after.traffic_limit is None


@pytest.mark.parametrize(
    ("current", "changes", "field"),
    [
        (MarketConfig(), {}, "config"),
        (MarketConfig(), {"launch_status": S.SOFT_LAUNCH}, "config.trafficLimit"),
        (
            MarketConfig(launch_status=S.SOFT_LAUNCH, traffic_limit=5),
            {"traffic_limit": None},
            "config.trafficLimit",
        ),
    ],
)
def test_apply_patch_rejects(current: MarketConfig, changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        apply_patch(current, changes)
    assert caught.value.field == field


# ------------------------------------------------- trust


@pytest.mark.parametrize(
    ("status", "exclusive"),
    [
        (S.SOFT_LAUNCH, True),
        (S.INFLUENCER_ONLY, False),
        (S.PUBLIC, False),
        (S.NOT_STARTED, False),
        (S.PAUSED, False),
    ],
)
def test_only_soft_launch_places_are_one_per_user(status: S, exclusive: bool) -> None:
    assert holds_one_place(status) is exclusive


def test_admitted_elsewhere_names_both_markets() -> None:
    error = admitted_elsewhere("DE", "PL")
    assert isinstance(error, FailedPrecondition)
    assert error.details == {"reason": "admitted_elsewhere", "country": "DE", "heldCountry": "PL"}
    assert "PL" in error.message and "DE" in error.message


@pytest.mark.parametrize(
    ("stated", "front_door", "expected"),
    [
        ("PL", None, "PL"),  # google, direct: no server-side country, the stated one
        ("PL", "PL", "PL"),
        ("PL", "DE", None),  # refused
    ],
)
def test_signup_country(stated: str, front_door: str | None, expected: str | None) -> None:
    if expected is not None:
        assert signup_country(stated, front_door) == expected
        return
    with pytest.raises(FailedPrecondition) as refused:
        signup_country(stated, front_door)
    assert refused.value.details == {
        "reason": "country_mismatch",
        "country": stated,
        "frontDoorCountry": front_door,
    }
    assert stated in refused.value.message and str(front_door) in refused.value.message
