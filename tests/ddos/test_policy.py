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
from shared.alerts.policy import AlertSpec
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
        MinuteTraffic(1, 2200, 300, [("6.6.6.6", 150)], elapsed_fraction=0.2),
        {K.TRAFFIC_SPIKE: Severity.CRITICAL, K.SINGLE_SOURCE_FLOOD: Severity.CRITICAL},
    ),
    # Cloudflare's proven bot scores feed detection
    (
        "most of a spike scored automated by Cloudflare is a critical swarm",
        MinuteTraffic(1, 10_000, 400, spread(400, 25), bot_scored_low=8000),
        {K.TRAFFIC_SPIKE: Severity.CRITICAL, K.BOT_SWARM: Severity.CRITICAL},
    ),
    (
        "scored automated without a spike is high",
        MinuteTraffic(1, 2000, 260, spread(260, 7), bot_scored_low=1500),
        {K.BOT_SWARM: Severity.HIGH},
    ),
    (
        "a few automated requests are no swarm",
        MinuteTraffic(1, 2000, 260, spread(260, 7), bot_scored_low=300),
        {},
    ),
    # the spike is judged on what the single sources do not explain
    (
        "one address's flood is no global spike",
        MinuteTraffic(1, 11_000, 201, [("6.6.6.6", 10_000), ("1.1.1.1", 5)]),
        {K.SINGLE_SOURCE_FLOOD: Severity.CRITICAL},
    ),
    (
        "a spike beside a flood is still a spike",
        MinuteTraffic(1, 16_000, 400, [("6.6.6.6", 5_000), *spread(400, 25)]),
        {K.SINGLE_SOURCE_FLOOD: Severity.CRITICAL, K.TRAFFIC_SPIKE: Severity.CRITICAL},
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


# ------------------------------------------------------------ mitigation

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
    detections: tuple[policy.Detection, ...] = (FLOOD,),
    tokenless: float = 0.0,
    shadow: frozenset[str] = frozenset(),
) -> list[tuple[str, str, str]]:
    """(applied|held|skipped|shadowed, action, target) rows of a plan, for literal tables."""
    plan = policy.plan_mitigation(
        list(detections),
        {who.ip: who},
        distinct_users,
        mode_pct,
        lambda ip: ip in allow,
        cap_pct=5.0,
        shadow=shadow,
        tokenless_share_pct=tokenless,
    )
    return [
        *[("applied", a.kind, a.target) for a in plan.apply],
        *[("held", a.kind, a.target) for a in plan.held],
        *[("skipped", a.kind, a.target) for a in plan.skipped],
        *[("shadowed", a.kind, a.target) for a in plan.shadowed],
    ]


IP = "203.0.113.1"


@pytest.mark.parametrize(
    ("who", "distinct_users", "allow", "expected"),
    [
        # an address with no established users (an unauthenticated flood): blocked; one
        # address never switches on DDoS mode
        (policy.AddressUsers(IP, 5000, 0), 1000, (), [("applied", "block_address", IP)]),
        # one user, the flooder itself: nobody innocent is behind it
        (
            policy.AddressUsers(IP, 5000, 1, [("bad", 5000)]),
            10,
            (),
            [("applied", "block_address", IP)],
        ),
        # 4 innocent users of 10 in the minute behind the address: 40 % > 5 %: held, and
        # the narrow action applied anyway
        (
            policy.AddressUsers(IP, 5000, 5, [("bad", 4900), ("u1", 20)]),
            10,
            (),
            [("applied", "refuse_anonymous", IP), ("held", "block_address", IP)],
        ),
        # ... the same address among 1,000 users: 0.4 %: blocked
        (
            policy.AddressUsers(IP, 5000, 5, [("bad", 4900), ("u1", 20)]),
            1000,
            (),
            [("applied", "block_address", IP)],
        ),
        # a shared address (a NAT: 25 established users): never blocked; its flooding user
        # is, and traffic without a token from it is refused
        (
            policy.AddressUsers(IP, 5000, 25, [("bad", 4000), ("u1", 40)]),
            1000,
            (),
            [("applied", "refuse_anonymous", IP), ("applied", "block_user", "bad")],
        ),
        # a shared address with no single flooding user: a human decides; meanwhile
        # traffic without a token from it is refused
        (
            policy.AddressUsers(IP, 20_000, 200, [("u1", 60), ("u2", 50)]),
            1000,
            (),
            [("applied", "refuse_anonymous", IP), ("held", "block_address", IP)],
        ),
        # a busy carrier NAT whose rate its established users explain: nothing to do
        (
            policy.AddressUsers(IP, 5000, 200, [("u1", 60), ("u2", 50)]),
            1000,
            (),
            [("skipped", "block_address", IP)],
        ),
        # allowlisted: never blocked
        (policy.AddressUsers(IP, 5000, 0), 1000, (IP,), [("skipped", "block_address", IP)]),
    ],
)
def test_plan_mitigation(
    who: policy.AddressUsers,
    distinct_users: int,
    allow: tuple[str, ...],
    expected: list[tuple[str, str, str]],
) -> None:
    assert _plan(who, distinct_users, 0.0, allow) == expected


SPIKE = policy.Detection(DetectionKind.TRAFFIC_SPIKE, Severity.CRITICAL, {})
QUIET = policy.AddressUsers("198.51.100.1", 10, 1)


@pytest.mark.parametrize(
    ("detections", "mode_pct", "tokenless", "expected"),
    [
        # a global signal: the lockdown of token-less traffic, and DDoS mode
        ((SPIKE,), 0.0, 10.0, [("applied", "anon_lockdown", ""), ("applied", "ddos_mode", "")]),
        # ... carried by requests without a token: the lockdown alone answers it
        ((SPIKE,), 0.0, 80.0, [("applied", "anon_lockdown", "")]),
        # DDoS mode would deny 12 % of the usual established users: held
        ((SPIKE,), 12.0, 10.0, [("applied", "anon_lockdown", ""), ("held", "ddos_mode", "")]),
        # a single source and a spike: each gets its answer
        (
            (FLOOD, SPIKE),
            0.0,
            10.0,
            [
                ("applied", "anon_lockdown", ""),
                ("applied", "ddos_mode", ""),
                ("applied", "block_address", IP),
            ],
        ),
    ],
)
def test_global_signals_get_global_answers(
    detections: tuple[policy.Detection, ...],
    mode_pct: float,
    tokenless: float,
    expected: list[tuple[str, str, str]],
) -> None:
    who = policy.AddressUsers(IP, 5000, 0)
    assert _plan(who, 1000, mode_pct, detections=detections, tokenless=tokenless) == expected


def test_without_a_baseline_ddos_mode_is_held_for_a_human() -> None:
    """A launch's first busy minutes look like a spike; with under 3 minutes of history the
    usual traffic is unknown, so the mode waits for a human (the lockdown does not)."""
    plan = policy.plan_mitigation(
        [SPIKE], {}, 1000, 0.0, lambda ip: False, tokenless_share_pct=0.0, baseline_minutes=2
    )
    assert [a.kind for a in plan.apply] == ["anon_lockdown"]
    assert [(a.kind, a.evidence["baselineMinutes"]) for a in plan.held] == [("ddos_mode", 2)]


def test_shadowed_actions_are_planned_not_applied() -> None:
    rows = _plan(
        policy.AddressUsers(IP, 5000, 0),
        1000,
        detections=(FLOOD, SPIKE),
        shadow=frozenset({"block_address", "ddos_mode"}),
    )
    assert rows == [
        ("applied", "anon_lockdown", ""),
        ("shadowed", "ddos_mode", ""),
        ("shadowed", "block_address", IP),
    ]


def test_nothing_critical_plans_nothing() -> None:
    plan = policy.plan_mitigation([], {}, 100, 50.0, lambda ip: False)
    assert (plan.apply, plan.held, plan.skipped) == ((), (), ())


@pytest.mark.parametrize(
    ("over", "users", "expected"),
    [
        ([], [], 0.0),
        ([2], [100], 2.0),
        ([0, 10, 5], [100, 100, 100], 5.0),  # the median minute
        ([3, 3], [0, 60], 5.0),  # a minute without established users does not count
    ],
)
def test_ddos_mode_blast_radius_counts_established_people(
    over: list[int], users: list[int], expected: float
) -> None:
    assert policy.ddos_mode_blast_radius_pct(over, users) == expected


@pytest.mark.parametrize(
    ("used", "maximum", "expected"),
    [
        (50, 100, "resolve"),
        (80, 100, "raise"),
        (99, 0, "resolve"),  # no maxmemory: never judged full
    ],
)
def test_redis_memory_alerts(used: int, maximum: int, expected: str) -> None:
    (change,) = policy.redis_memory_changes(
        [policy.RedisMemory("enforcement", used, maximum, "noeviction")], pct=80.0
    )
    assert ("raise" if isinstance(change, AlertSpec) else "resolve") == expected
    assert change.dedup_key == "ddos:redis_memory:enforcement"
