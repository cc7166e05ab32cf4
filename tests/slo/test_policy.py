"""The SLO evaluator's pure decisions, as literal tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.slo import policy
from functions.slo.policy import Counts
from shared.alerts.policy import AlertResolve, AlertSpec
from shared.models.alerts import Severity
from shared.models.slo import (
    ActionLift,
    ActionMode,
    BurnLevel,
    ObjectiveView,
    ScopeStatus,
    SliCounts,
    SloAction,
)
from shared.slo.objectives import DEFAULT, Objective, ObjectivesError, parse_objectives

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
END = int(NOW.timestamp()) // 60


@pytest.mark.parametrize(
    ("bad", "n", "budget", "min_events", "want"),
    [
        (0, 1000, 0.01, 50, 0.0),
        (10, 1000, 0.01, 50, 1.0),  # exactly the budget's pace
        (144, 1000, 0.01, 50, 14.4),  # the page rate
        (60, 1000, 0.01, 50, 6.0),  # the ticket rate
        (5, 49, 0.01, 50, None),  # too few requests to say
        (0, 0, 0.01, 0, None),  # no requests at all, whatever the minimum
        (1, 20, 0.05, 10, 1.0),
    ],
)
def test_burn_rate(bad: int, n: int, budget: float, min_events: int, want: float | None) -> None:
    got = policy.burn_rate(bad, n, budget, min_events)
    assert got == (None if want is None else pytest.approx(want))


def _minutes(
    per_minute: dict[int, tuple[int, int, int]], scope: str = "platform"
) -> dict[int, dict[str, dict[str, int]]]:
    """offset (minutes before END, 0 = END) -> (n, bad, slow)."""
    return {
        END - offset: {scope: {"n": n, "bad": bad, "slow": slow}}
        for offset, (n, bad, slow) in per_minute.items()
    }


def test_window_sums_end_with_the_evaluated_minute_and_skip_missing_minutes() -> None:
    minutes = _minutes(
        {0: (100, 1, 2), 4: (100, 3, 0), 5: (100, 50, 0), 359: (7, 7, 7), 360: (9, 9, 9)}
    )
    sums = policy.window_sums(minutes, END, "platform")
    assert sums["5m"] == Counts(200, 4, 2)  # offsets 0..4
    assert sums["30m"] == Counts(300, 54, 2)
    assert sums["1h"] == Counts(300, 54, 2)
    assert sums["6h"] == Counts(307, 61, 9)  # offset 359 in, 360 out


def _status(sums: dict[str, Counts], objective: Objective = DEFAULT) -> ScopeStatus:
    return policy.assess("platform", sums, objective)


def _flat(n: int, bad: int, slow: int = 0) -> dict[str, Counts]:
    return {
        w: Counts(n * m, bad * m, slow * m)
        for w, m in (("5m", 5), ("30m", 30), ("1h", 60), ("6h", 360))
    }


@pytest.mark.parametrize(
    ("sums", "level", "why_starts"),
    [
        (_flat(100, 0), BurnLevel.NONE, ""),
        (_flat(100, 15), BurnLevel.PAGE, "availability: 1h burns 15.0x and 5m 15.0x"),
        (_flat(100, 7), BurnLevel.TICKET, "availability: 6h burns 7.0x and 30m 7.0x"),
        (_flat(100, 5), BurnLevel.NONE, ""),  # 5x: under both rates
        # a blip: the 5 minutes burn hard, the hour does not -> nothing
        (
            {
                "5m": Counts(500, 100),
                "30m": Counts(3000, 100),
                "1h": Counts(6000, 100),
                "6h": Counts(36000, 100),
            },
            BurnLevel.NONE,
            "",
        ),
        # the hour burned, but the last 5 minutes are clean: the page has stopped
        (
            {
                "5m": Counts(500, 0),
                "30m": Counts(3000, 500),
                "1h": Counts(6000, 1000),
                "6h": Counts(36000, 1000),
            },
            BurnLevel.NONE,
            "",
        ),
        # latency: 95 % within 400 ms leaves 5 % slow; 80 % slow is 16x
        (_flat(100, 0, 80), BurnLevel.PAGE, "latency: 1h burns 16.0x and 5m 16.0x"),
        # too few requests in the short window to page at night
        (
            {"5m": Counts(9, 9), "30m": Counts(9, 9), "1h": Counts(60, 20), "6h": Counts(60, 20)},
            BurnLevel.NONE,
            "",
        ),
    ],
)
def test_levels(sums: dict[str, Counts], level: BurnLevel, why_starts: str) -> None:
    status = _status(sums)
    assert status.level is level
    assert status.why.startswith(why_starts)


def test_a_stricter_objective_burns_faster() -> None:
    sums = _flat(100, 2)
    assert _status(sums).level is BurnLevel.NONE  # 2 % errors: 2x of a 99 % objective
    strict = Objective(availability_pct=99.9)
    assert _status(sums, strict).level is BurnLevel.PAGE  # 20x of 99.9 %


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("", {}),
        ("class:payment=99.9/800/95", {"class:payment": Objective(99.9, 800, 95)}),
        (
            " platform=99.5/400/95 ; service:api-gateway=99/300/90 ",
            {"platform": Objective(99.5, 400, 95), "service:api-gateway": Objective(99, 300, 90)},
        ),
    ],
)
def test_parse_objectives(raw: str, want: dict[str, Objective]) -> None:
    assert parse_objectives(raw) == want


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("payment=99.9/800/95", "SCOPE"),
        ("class:payment=99.9/800", "three numbers"),
        ("class:payment=100/800/95", "between 0 and 100"),
        ("class:payment=99/0/95", "latency"),
        ("class:a=99/400/95;class:a=98/400/95", "given twice"),
        ("class:payment 99/400/95", "SCOPE"),
    ],
)
def test_parse_objectives_names_the_wrong_entry(raw: str, names: str) -> None:
    with pytest.raises(ObjectivesError, match=names):
        parse_objectives(raw)


def test_roll_days_adds_only_new_minutes_and_drops_old_days() -> None:
    minutes = _minutes({0: (10, 1, 0), 1: (10, 0, 1), 2: (10, 0, 0)})
    first = policy.roll_days({}, minutes, None, END, ["platform"])
    today = policy.day_of(END)
    assert first == {today: {"platform": SliCounts(n=30, bad=1, slow=1)}}
    # the next run: minute END+1 is new; END-2..END were rolled already
    minutes[END + 1] = {"platform": {"n": 5, "bad": 5, "slow": 0}}
    second = policy.roll_days(first, minutes, END, END + 1, ["platform"])
    assert second[today]["platform"] == SliCounts(n=35, bad=6, slow=1)
    old_day = (NOW - timedelta(days=30)).strftime("%Y%m%d")
    kept_day = (NOW - timedelta(days=29)).strftime("%Y%m%d")
    aged = {old_day: {"platform": SliCounts(n=1)}, kept_day: {"platform": SliCounts(n=2)}}
    rolled = policy.roll_days(aged, {}, END, END, ["platform"])
    assert set(rolled) == {kept_day}


@pytest.mark.parametrize(
    ("n", "bad", "slow", "want"),
    [
        (0, 0, 0, (100.0, 100.0, 0)),
        (10_000, 0, 0, (100.0, 100.0, 10_000)),
        (10_000, 50, 250, (50.0, 50.0, 10_000)),  # half of 1 % and half of 5 %
        (10_000, 200, 0, (-100.0, 100.0, 10_000)),  # overspent twice over
    ],
)
def test_budget_left(n: int, bad: int, slow: int, want: tuple[float, float, int]) -> None:
    days = {
        "20261201": {"platform": SliCounts(n=n // 2, bad=bad // 2, slow=slow // 2)},
        "20261202": {
            "platform": SliCounts(n=n - n // 2, bad=bad - bad // 2, slow=slow - slow // 2)
        },
    }
    assert policy.budget_left(days, "platform", DEFAULT) == want


def _scope(level: BurnLevel, why: str = "w") -> ScopeStatus:
    return ScopeStatus(
        objective=ObjectiveView(availability_pct=99, latency_ms=400, latency_good_pct=95),
        level=level,
        why=why if level is not BurnLevel.NONE else "",
    )


MODES_ON = dict.fromkeys(SloAction, ActionMode.ENFORCE)


@pytest.mark.parametrize(
    ("levels", "freeze_scopes", "pause"),
    [
        ({"platform": BurnLevel.NONE, "service:chat": BurnLevel.NONE}, [], False),
        ({"platform": BurnLevel.NONE, "service:chat": BurnLevel.TICKET}, ["service:chat"], False),
        ({"platform": BurnLevel.TICKET, "service:chat": BurnLevel.NONE}, ["platform"], True),
        (
            {"platform": BurnLevel.PAGE, "service:chat": BurnLevel.PAGE},
            ["platform", "service:chat"],
            True,
        ),
        # a burning class freezes no deploy and pauses nothing on its own
        ({"platform": BurnLevel.NONE, "class:ai": BurnLevel.PAGE}, [], False),
    ],
)
def test_freeze_and_pause(
    levels: dict[str, BurnLevel], freeze_scopes: list[str], pause: bool
) -> None:
    scopes = {s: _scope(level) for s, level in levels.items()}
    actions = policy.decide_actions(scopes, {}, {}, MODES_ON, 0, NOW)
    freeze = actions[SloAction.DEPLOY_FREEZE]
    assert (freeze.wanted, freeze.enforced, sorted(freeze.scopes)) == (
        bool(freeze_scopes),
        bool(freeze_scopes),
        sorted(freeze_scopes),
    )
    assert actions[SloAction.ADMISSIONS_PAUSE].enforced is pause


def test_modes_and_lifts() -> None:
    scopes = {"platform": _scope(BurnLevel.TICKET)}
    shadow = dict.fromkeys(SloAction, ActionMode.SHADOW)
    off = dict.fromkeys(SloAction, ActionMode.OFF)
    a = policy.decide_actions(scopes, {}, {}, shadow, 0, NOW)[SloAction.DEPLOY_FREEZE]
    assert (a.wanted, a.enforced, a.mode) == (True, False, ActionMode.SHADOW)
    a = policy.decide_actions(scopes, {}, {}, off, 0, NOW)[SloAction.DEPLOY_FREEZE]
    assert (a.wanted, a.enforced) == (False, False)
    lift = {
        SloAction.DEPLOY_FREEZE: ActionLift(
            until=NOW + timedelta(minutes=5), by="ops@x", reason="hotfix"
        )
    }
    a = policy.decide_actions(scopes, {}, lift, MODES_ON, 0, NOW)[SloAction.DEPLOY_FREEZE]
    assert (a.wanted, a.enforced, a.lifted_until, a.lifted_by) == (
        True,
        False,
        NOW + timedelta(minutes=5),
        "ops@x",
    )
    # a lift that has run out holds nothing
    later = NOW + timedelta(minutes=6)
    a = policy.decide_actions(scopes, {}, lift, MODES_ON, 0, later)[SloAction.DEPLOY_FREEZE]
    assert (a.enforced, a.lifted_until) == (True, None)


def test_since_is_kept_while_wanted() -> None:
    scopes = {"platform": _scope(BurnLevel.TICKET)}
    first = policy.decide_actions(scopes, {}, {}, MODES_ON, 0, NOW)
    second = policy.decide_actions(scopes, first, {}, MODES_ON, 0, NOW + timedelta(minutes=1))
    assert second[SloAction.DEPLOY_FREEZE].since == NOW
    cleared = policy.decide_actions(
        {"platform": _scope(BurnLevel.NONE)}, second, {}, MODES_ON, 0, NOW
    )
    assert cleared[SloAction.DEPLOY_FREEZE].since is None


@pytest.mark.parametrize(
    ("levels", "want"),
    [
        # one more class a paging minute, up to three (payment and auth never by default)
        ([BurnLevel.PAGE] * 5, [1, 2, 3, 3, 3]),
        # a ticket-level burn sheds nothing; after a page, one class comes back a minute
        (
            [BurnLevel.PAGE, BurnLevel.PAGE, BurnLevel.TICKET, BurnLevel.NONE, BurnLevel.NONE],
            [1, 2, 1, 0, 0],
        ),
    ],
)
def test_shed_levels(levels: list[BurnLevel], want: list[int]) -> None:
    got, level = [], 0
    for platform in levels:
        level = policy.next_shed_level(level, platform)
        got.append(level)
    assert got == want


def test_shed_classes_lowest_priority_first() -> None:
    scopes = {"platform": _scope(BurnLevel.PAGE)}
    shed = policy.decide_actions(scopes, {}, {}, MODES_ON, 3, NOW)[SloAction.SHED]
    assert shed.classes == ["ai", "swipe", "general"]
    assert shed.enforced


def test_action_changes_are_audited_once() -> None:
    scopes = {"platform": _scope(BurnLevel.TICKET)}
    first = policy.decide_actions(scopes, {}, {}, MODES_ON, 0, NOW)
    names = [n for n, _, _ in policy.action_changes({}, first)]
    assert names == ["slo.deploy_freeze.started", "slo.admissions_pause.started"]
    again = policy.decide_actions(scopes, first, {}, MODES_ON, 0, NOW)
    assert policy.action_changes(first, again) == []
    cleared = policy.decide_actions(
        {"platform": _scope(BurnLevel.NONE)}, again, {}, MODES_ON, 0, NOW
    )
    assert [n for n, _, _ in policy.action_changes(again, cleared)] == [
        "slo.deploy_freeze.ended",
        "slo.admissions_pause.ended",
    ]


def test_alert_changes() -> None:
    before = {
        "platform": _scope(BurnLevel.NONE),
        "class:ai": _scope(BurnLevel.TICKET, "availability: x"),
    }
    after = {
        "platform": _scope(BurnLevel.PAGE, "availability: y"),
        "class:ai": _scope(BurnLevel.NONE),
    }
    changes = policy.alert_changes(after, before)
    resolves = [c for c in changes if isinstance(c, AlertResolve)]
    raises = [c for c in changes if isinstance(c, AlertSpec)]
    assert [r.dedup_key for r in resolves] == ["slo:class:ai:ticket"]
    assert [(r.dedup_key, r.severity) for r in raises] == [("slo:platform:page", Severity.CRITICAL)]
    assert policy.alert_changes(after, after) == []
    # a page calming to a ticket: the page resolves, the ticket opens
    calmer = {"platform": _scope(BurnLevel.TICKET, "availability: z")}
    changes = policy.alert_changes(calmer, after)
    assert [(type(c).__name__, c.dedup_key) for c in changes] == [
        ("AlertResolve", "slo:platform:page"),
        ("AlertSpec", "slo:platform:ticket"),
    ]


def test_evaluated_minute_is_two_minutes_back() -> None:
    now = datetime(2026, 12, 7, 12, 0, 30, tzinfo=UTC)
    assert policy.minute_id(policy.evaluated_minute(now)) == "20261207T1158Z"
