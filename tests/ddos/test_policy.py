"""DDoS detection rules as literal tables."""

from __future__ import annotations

import pytest

from functions.ddos import policy
from functions.ddos.policy import (
    Baseline,
    MinuteTraffic,
    baseline_of,
    detect,
    merge,
    usual_shares,
)
from shared.models.alerts import Severity
from shared.models.ddos import DetectionKind
from shared.models.ddos import DetectionKind as K

BASE = Baseline(requests_per_min=1000, distinct_ips_per_min=200)


def spread(n_ips: int, each: int) -> list[tuple[str, int]]:
    return [(f"10.0.{i // 256}.{i % 256}", each) for i in range(min(n_ips, 10))]


CASES = [
    # name, traffic, expected {kind: severity}
    ("normal", MinuteTraffic(1, 1100, 210, spread(210, 6)), {}),
    ("4x is not a spike", MinuteTraffic(1, 4000, 300, spread(300, 14)), {}),
    (
        "5x spike is high",
        MinuteTraffic(1, 5000, 300, spread(300, 17)),
        {K.TRAFFIC_SPIKE: Severity.HIGH},
    ),
    (
        "10x spike is critical",
        MinuteTraffic(1, 10_000, 400, spread(400, 25)),
        {K.TRAFFIC_SPIKE: Severity.CRITICAL},
    ),
    (
        "single source flood",
        MinuteTraffic(1, 1700, 201, [("6.6.6.6", 700), ("1.1.1.1", 5)]),
        {K.SINGLE_SOURCE_FLOOD: Severity.CRITICAL},
    ),
    (
        "flood at exactly the threshold is not a flood",
        MinuteTraffic(1, 1600, 201, [("6.6.6.6", 600)]),
        {},
    ),
    (
        "distributed: many modest IPs",
        MinuteTraffic(1, 12_000, 4000, spread(4000, 3)),
        {K.TRAFFIC_SPIKE: Severity.CRITICAL, K.DISTRIBUTED_ATTACK: Severity.CRITICAL},
    ),
    (
        "a spike from few IPs is not distributed",
        MinuteTraffic(1, 12_000, 300, [("7.7.7.7", 550), ("7.7.7.8", 540)]),
        {K.TRAFFIC_SPIKE: Severity.CRITICAL},
    ),
    (
        "bot swarm without a spike is high",
        MinuteTraffic(1, 2000, 260, spread(260, 7), [("fp-bot", 900, 120)]),
        {K.BOT_SWARM: Severity.HIGH},
    ),
    (
        "bot swarm in a spike is critical",
        MinuteTraffic(1, 6000, 300, spread(300, 20), [("fp-bot", 4000, 250)]),
        {K.TRAFFIC_SPIKE: Severity.HIGH, K.BOT_SWARM: Severity.CRITICAL},
    ),
    (
        "one popular app version on many IPs is not a swarm below its share",
        MinuteTraffic(1, 2000, 900, spread(900, 2), [("fp-app", 500, 800)]),
        {},
    ),
    (
        "the app itself carrying most traffic is not a swarm",
        MinuteTraffic(1, 2000, 900, spread(900, 2), [("fp-usual", 1800, 880)]),
        {},
    ),
    (
        "partial minute is extrapolated",
        MinuteTraffic(1, 2000, 300, [("6.6.6.6", 150)], elapsed_fraction=0.2),
        {K.TRAFFIC_SPIKE: Severity.CRITICAL, K.SINGLE_SOURCE_FLOOD: Severity.CRITICAL},
    ),
]


@pytest.mark.parametrize(("name", "traffic", "expected"), CASES, ids=[c[0] for c in CASES])
def test_detect(name: str, traffic: MinuteTraffic, expected: dict[K, Severity]) -> None:
    found = {d.kind: d.severity for d in detect(traffic, BASE, {"fp-usual": 85.0})}
    assert found == expected


def test_flood_sources_are_named_for_blocking() -> None:
    traffic = MinuteTraffic(1, 5000, 200, [("6.6.6.6", 3000), ("6.6.6.7", 900), ("1.1.1.1", 10)])
    (flood,) = [d for d in detect(traffic, BASE) if d.kind is K.SINGLE_SOURCE_FLOOD]
    assert flood.block_sources == ("6.6.6.6", "6.6.6.7")


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], Baseline(600, 50)),
        ([(100, 10)] * 30, Baseline(600, 50)),
        ([(1000, 200), (1200, 220), (900, 180)], Baseline(1000, 200)),
        # a few attack minutes in the window do not move a median
        ([(1000, 200)] * 20 + [(50_000, 9000)] * 5, Baseline(1000, 200)),
    ],
)
def test_baseline_is_a_floored_median(history: list[tuple[int, int]], expected: Baseline) -> None:
    assert baseline_of(history) == expected


def test_usual_shares_are_medians() -> None:
    assert usual_shares({"a": [10.0, 90.0, 80.0], "b": []}) == {"a": 80.0, "b": 0.0}


def test_merge_keeps_the_worst_per_kind() -> None:
    high = detect(MinuteTraffic(1, 5000, 300, spread(300, 17)), BASE)
    critical = detect(MinuteTraffic(2, 10_000, 400, spread(400, 25)), BASE)
    merged = merge([*high, *critical])
    assert [(d.kind, d.severity) for d in merged] == [(K.TRAFFIC_SPIKE, Severity.CRITICAL)]


# ------------------------------------------------------------ mitigation (issue 11)

FLOOD = policy.Detection(
    DetectionKind.SINGLE_SOURCE_FLOOD,
    Severity.CRITICAL,
    {},
    ("203.0.113.1",),
)


def _plan(
    who: policy.AddressUsers,
    distinct_users: int,
    mode_pct: float = 0.0,
    allow: tuple[str, ...] = (),
) -> list[tuple[str, str, str]]:
    """(applied|held|skipped, action, target) rows of a plan, for literal tables."""
    plan = policy.plan_mitigation(
        [FLOOD], {who.ip: who}, distinct_users, mode_pct, lambda ip: ip in allow, cap_pct=5.0
    )
    return [
        *[("applied", a.kind, a.target) for a in plan.apply],
        *[("held", a.kind, a.target) for a in plan.held],
        *[("skipped", a.kind, a.target) for a in plan.skipped],
    ]


IP = "203.0.113.1"


@pytest.mark.parametrize(
    ("who", "distinct_users", "mode_pct", "allow", "expected"),
    [
        # an address with no signed-in users (an unauthenticated flood): blocked
        (
            policy.AddressUsers(IP, 5000, 0),
            1000,
            0.0,
            (),
            [("applied", "ddos_mode", ""), ("applied", "block_address", IP)],
        ),
        # one user, the flooder itself: nobody innocent is behind it
        (
            policy.AddressUsers(IP, 5000, 1, [("bad", 5000)]),
            10,
            0.0,
            (),
            [("applied", "ddos_mode", ""), ("applied", "block_address", IP)],
        ),
        # 4 innocent users of 10 in the minute behind the address: 40 % > 5 %: held
        (
            policy.AddressUsers(IP, 5000, 5, [("bad", 4900), ("u1", 20)]),
            10,
            0.0,
            (),
            [("applied", "ddos_mode", ""), ("held", "block_address", IP)],
        ),
        # ... the same address among 1,000 users: 0.4 %: blocked
        (
            policy.AddressUsers(IP, 5000, 5, [("bad", 4900), ("u1", 20)]),
            1000,
            0.0,
            (),
            [("applied", "ddos_mode", ""), ("applied", "block_address", IP)],
        ),
        # a shared address (a NAT: 25 users): never blocked; its flooding user is
        (
            policy.AddressUsers(IP, 5000, 25, [("bad", 4000), ("u1", 40)]),
            1000,
            0.0,
            (),
            [("applied", "ddos_mode", ""), ("applied", "block_user", "bad")],
        ),
        # a shared address with no single flooding user: a human decides
        (
            policy.AddressUsers(IP, 5000, 200, [("u1", 60), ("u2", 50)]),
            1000,
            0.0,
            (),
            [("applied", "ddos_mode", ""), ("held", "block_address", IP)],
        ),
        # DDoS mode would deny 12 % of usual traffic: held
        (
            policy.AddressUsers(IP, 5000, 0),
            1000,
            12.0,
            (),
            [("applied", "block_address", IP), ("held", "ddos_mode", "")],
        ),
        # allowlisted: never blocked
        (
            policy.AddressUsers(IP, 5000, 0),
            1000,
            0.0,
            (IP,),
            [("applied", "ddos_mode", ""), ("skipped", "block_address", IP)],
        ),
    ],
)
def test_plan_mitigation(
    who: policy.AddressUsers,
    distinct_users: int,
    mode_pct: float,
    allow: tuple[str, ...],
    expected: list[tuple[str, str, str]],
) -> None:
    assert _plan(who, distinct_users, mode_pct, allow) == expected


def test_nothing_critical_plans_nothing() -> None:
    plan = policy.plan_mitigation([], {}, 100, 50.0, lambda ip: False)
    assert (plan.apply, plan.held, plan.skipped) == ((), (), ())


@pytest.mark.parametrize(
    ("counters", "expected"),
    [
        ({}, 0.0),
        ({"req:swipe": 1000, "overddos:swipe": 20}, 2.0),
        ({"req:swipe": 1000, "den:swipe": 200, "overddos:swipe": 80}, 10.0),
        ({"req:general": 500, "req:auth": 500, "overddos:auth": 50}, 5.0),
    ],
)
def test_ddos_mode_blast_radius(counters: dict[str, int], expected: float) -> None:
    assert policy.ddos_mode_blast_radius_pct(counters) == expected
