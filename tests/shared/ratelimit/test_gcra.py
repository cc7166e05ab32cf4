"""GCRA as literal tables, and the Lua decision against the Python reference."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from shared.firestore import get_db
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.gcra import gcra_decide
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.limiter import RateLimiter, Subject
from shared.ratelimit.policy import EndpointClass
from shared.redis import get_redis
from tests.conftest import Backends

MIN = 60_000_000  # one minute in microseconds
T0 = 1_800_000_000_000_000


def run(times_us: list[int], limit: int, period: int = MIN) -> list[bool]:
    tat = None
    out = []
    for now in times_us:
        r = gcra_decide(tat, now, limit, period)
        if r.allowed:
            tat = r.tat_us
        out.append(r.allowed)
    return out


@pytest.mark.parametrize(
    ("times", "limit", "expected"),
    [
        ([T0] * 5, 5, [True] * 5),
        ([T0] * 6, 5, [True] * 5 + [False]),
        ([T0] * 3, 3, [True, True, True]),
        # after a full burst, one request per interval (12 s at 5/min) comes back
        ([T0] * 5 + [T0 + 11_999_999, T0 + 12_000_000], 5, [True] * 5 + [False, True]),
        # a steady pace at exactly the rate always passes
        ([T0 + i * 12_000_000 for i in range(20)], 5, [True] * 20),
        # 7 per minute: floor(60e6/7) keeps a burst of exactly 7
        ([T0] * 8, 7, [True] * 7 + [False]),
        ([T0] * 201, 200, [True] * 200 + [False]),
    ],
)
def test_bursts_and_pace(times: list[int], limit: int, expected: list[bool]) -> None:
    assert run(times, limit) == expected


def test_remaining_retry_and_reset() -> None:
    first = gcra_decide(None, T0, 5, MIN)
    assert (first.allowed, first.remaining, first.retry_after_us, first.reset_after_us) == (
        True,
        4,
        0,
        12_000_000,
    )
    tat = first.tat_us
    for _ in range(4):
        r = gcra_decide(tat, T0, 5, MIN)
        tat = r.tat_us
    assert r.remaining == 0
    denied = gcra_decide(tat, T0 + 1_000_000, 5, MIN)
    assert (denied.allowed, denied.remaining, denied.retry_after_us) == (False, 0, 11_000_000)
    assert denied.tat_us == tat
    assert gcra_decide(tat, T0 + 1_000_000 + denied.retry_after_us, 5, MIN).allowed


def test_bucket_refills_completely() -> None:
    tat = None
    for _ in range(5):
        r = gcra_decide(tat, T0, 5, MIN)
        tat = r.tat_us
    later = gcra_decide(tat, T0 + MIN, 5, MIN)
    assert (later.allowed, later.remaining) == (True, 4)


def test_lua_matches_the_reference(backends: Backends) -> None:
    """Random arrival sequences: the Redis script and gcra_decide agree on every request."""
    limiter = RateLimiter(get_redis(), GeoRules(get_db))
    rng = random.Random(391)
    for trial in range(5):
        subject = Subject(f"user-{trial}", ClientInfo(f"10.0.0.{trial}", None, "fp"))
        now_us = T0 + trial * 10 * MIN
        times = []
        for _ in range(120):
            now_us += rng.choice([0, 0, 100_000, 1_000_000, 5_000_000, 20_000_000])
            times.append(now_us)
        expected = run(times, 10)
        got = [
            limiter.decide(
                EndpointClass.WALLET, subject, datetime.fromtimestamp(t / 1e6, UTC)
            ).allowed
            for t in times
        ]
        assert got == expected, f"trial {trial}"
