"""The error budgets' admissions pause: soft-launch signups refused while the
``admissions_pause`` action is enforced, admitted and counted while it is shadowed.

The decision as a literal table, then through ``pack391_checkMarketAccess`` against the
emulator and Redis (one Redis and a Redis Cluster: the snapshot is read in the same
pipeline as the market's mirrors, across two slots), the snapshot written as the
evaluator writes it (:func:`shared.slo.actions.write_actions`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from functions.market.policy import (
    Applicant,
    BudgetPause,
    MarketState,
    SignupIdentity,
    budget_pause,
    decide_signup,
)
from shared import collections
from shared.firestore import get_db
from shared.models.market import AdmissionReason as R
from shared.models.market import LaunchStatus as S
from shared.models.market import MarketDoc
from shared.models.slo import ActionMode, ActionsSnapshot, ActionState, SloAction
from shared.ratelimit.keys import minute_of
from shared.redis import get_redis
from shared.slo.actions import ACTIONS_KEY, read_shadow, write_actions
from tests.conftest import Caller
from tests.market.test_market_functions import ACCESS, GET, call_as, configure, signup

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ENF, SHA, OFF = ActionMode.ENFORCE, ActionMode.SHADOW, ActionMode.OFF


def pause(mode: ActionMode, *, wanted: bool = True, at: datetime = NOW) -> ActionsSnapshot:
    """A snapshot whose admissions pause is wanted (or not) in ``mode``."""
    state = ActionState(
        action=SloAction.ADMISSIONS_PAUSE,
        mode=mode,
        wanted=wanted,
        enforced=wanted and mode is ActionMode.ENFORCE,
        since=at if wanted else None,
        reason="platform availability burns at 7.1x over 6 h and 30 min" if wanted else "",
        scopes=["platform"] if wanted else [],
    )
    return ActionsSnapshot(at=at, actions={SloAction.ADMISSIONS_PAUSE: state})


# ------------------------------------------------------------------ the decision (pure)


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (None, BudgetPause.NONE),
        (ActionsSnapshot(at=NOW), BudgetPause.NONE),
        (pause(ENF), BudgetPause.ENFORCE),
        (pause(ENF, wanted=False), BudgetPause.NONE),  # lifted, or the burn stopped
        (pause(SHA), BudgetPause.SHADOW),
        (pause(SHA, wanted=False), BudgetPause.NONE),
        (pause(OFF), BudgetPause.NONE),
    ],
)
def test_budget_pause_of_a_snapshot(
    snapshot: ActionsSnapshot | None, expected: BudgetPause
) -> None:
    assert budget_pause(snapshot) is expected


def state(
    status: S, users: int = 0, member: bool = False, pause: BudgetPause = BudgetPause.NONE
) -> MarketState:
    doc = MarketDoc(
        country="PL", launch_status=status, traffic_limit=5 if status is S.SOFT_LAUNCH else None
    )
    return MarketState(doc, False, member, users, pause)


P_NONE, P_SHADOW, P_ENFORCE = BudgetPause.NONE, BudgetPause.SHADOW, BudgetPause.ENFORCE


# state, influencer -> admit, reason, budget_shadowed
@pytest.mark.parametrize(
    ("market_state", "influencer", "admit", "reason", "shadowed"),
    [
        (state(S.SOFT_LAUNCH, pause=P_NONE), False, True, R.ADMITTED, False),
        (state(S.SOFT_LAUNCH, pause=P_ENFORCE), False, False, R.PAUSED_BUDGET, False),
        (state(S.SOFT_LAUNCH, 5, pause=P_ENFORCE), False, False, R.PAUSED_BUDGET, False),
        (state(S.SOFT_LAUNCH, pause=P_SHADOW), False, True, R.ADMITTED, True),
        (state(S.SOFT_LAUNCH, 5, pause=P_SHADOW), False, False, R.TRAFFIC_LIMIT_REACHED, False),
        # a user already admitted keeps the place, paused or not
        (state(S.SOFT_LAUNCH, 3, True, P_ENFORCE), False, True, R.ALREADY_ADMITTED, False),
        # the pause is the soft launch's: other stages are not paused
        (state(S.PUBLIC, pause=P_ENFORCE), False, True, R.ADMITTED, False),
        (state(S.INFLUENCER_ONLY, pause=P_ENFORCE), True, True, R.ADMITTED, False),
        (state(S.PAUSED, pause=P_ENFORCE), False, False, R.PAUSED, False),
        (state(S.NOT_STARTED, pause=P_ENFORCE), False, False, R.NOT_STARTED, False),
    ],
)
def test_decide_signup_with_the_budget_pause(
    market_state: MarketState, influencer: bool, admit: bool, reason: R, shadowed: bool
) -> None:
    applicant = Applicant("u", influencer=influencer, verified=True)
    decision = decide_signup(market_state, applicant, SignupIdentity.VERIFIED)
    assert (decision.admit, decision.reason, decision.budget_shadowed) == (admit, reason, shadowed)


# ------------------------------------------------------------------ through the callable


def admissions(country: str) -> set[str]:
    """The admissions Firestore records for ``country`` (the record, not Redis's set)."""
    market = get_db().collection(collections.MARKETS).document(country)
    return {d.id for d in market.collection(collections.MARKET_ADMISSIONS).stream()}


def users_of(caller: Caller, country: str) -> int:
    markets = caller.call(GET, {"country": country}).result["markets"]
    return int(markets[0]["currentUsers"])


@pytest.mark.usefixtures("redis_backend")
def test_an_enforced_pause_refuses_new_soft_launch_signups_and_takes_no_place(
    caller: Caller,
) -> None:
    configure(caller, "PL", launchStatus="soft_launch", trafficLimit=3, paymentsEnabled=True)
    assert signup(caller, "PL", "early")["reason"] == "admitted"
    write_actions(get_redis(), pause(ENF, at=datetime.now(UTC)))

    refused = signup(caller, "PL", "late")
    assert (refused["signupAdmitted"], refused["reason"]) == (False, "paused_budget")
    assert refused["currentUsers"] == 1
    assert refused["paymentsEnabled"] is True  # the pause is the signups', not the money's
    assert users_of(caller, "PL") == 1
    assert admissions("PL") == {"early"}
    # the user admitted before the pause keeps the place
    kept = signup(caller, "PL", "early")
    assert (kept["signupAdmitted"], kept["reason"]) == (True, "already_admitted")

    # lifted (the evaluator's next snapshot: no longer enforced): admitted again
    write_actions(get_redis(), pause(ENF, wanted=False, at=datetime.now(UTC)))
    admitted = signup(caller, "PL", "late")
    assert (admitted["signupAdmitted"], admitted["reason"]) == (True, "admitted")
    assert admissions("PL") == {"early", "late"}
    assert users_of(caller, "PL") == 2


@pytest.mark.usefixtures("redis_backend")
def test_a_shadowed_pause_admits_and_counts_each_admission_once(caller: Caller) -> None:
    configure(caller, "DE", launchStatus="soft_launch", trafficLimit=2)
    configure(caller, "FR", launchStatus="public")
    now = datetime.now(UTC)
    write_actions(get_redis(), pause(SHA, at=now))
    results = [signup(caller, "DE", uid) for uid in ("a", "b", "a", "c")]
    assert [(r["signupAdmitted"], r["reason"]) for r in results] == [
        (True, "admitted"),
        (True, "admitted"),
        (True, "already_admitted"),  # not admitted again: not counted again
        (False, "traffic_limit_reached"),  # refused anyway: nothing the pause would do
    ]
    assert signup(caller, "FR", "d")["reason"] == "admitted"  # public: never paused
    features = call_as(caller, ACCESS, {"country": "DE"}, "e")  # no signup: nothing to pause
    assert features.result["reason"] == "not_requested"
    counted = sum(
        read_shadow(get_redis(), m).get("admissions_pause", 0)
        for m in {minute_of(now), minute_of(datetime.now(UTC))}
    )
    assert counted == 2
    assert admissions("DE") == {"a", "b"}


@pytest.mark.usefixtures("redis_backend")
def test_no_snapshot_or_an_unreadable_one_pauses_nothing(caller: Caller) -> None:
    configure(caller, "IT", launchStatus="soft_launch", trafficLimit=5)
    assert signup(caller, "IT", "a")["reason"] == "admitted"
    get_redis().set(ACTIONS_KEY, "{not json", ex=60)
    assert signup(caller, "IT", "b")["reason"] == "admitted"
