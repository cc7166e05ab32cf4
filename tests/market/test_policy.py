"""The admission rules as a literal table: (market, switches, user) -> verdict."""

from __future__ import annotations

import pytest

from functions.market.policy import (
    MarketState,
    apply_patch,
    decide_signup,
    features_enabled,
)
from shared.errors import InvalidInput
from shared.models.market import AdmissionReason as R
from shared.models.market import LaunchStatus as S
from shared.models.market import MarketConfig, MarketDoc


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
    decision = decide_signup(state, influencer)
    assert (decision.admit, decision.reason, decision.capacity) == (admit, reason, capacity)


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
