"""Load shaped like production, the pure parts: windows, the builder (rate, mix, missing
minutes, names that are not endpoints, refusals) and the recorded profile's schedule.
Literal tables, no I/O."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.load.profile import RecordedProfile, minute_endpoints, recorded_starts
from functions.load.recorded import apportion, parse_window, recorded_plan
from functions.load.scenarios import Plan, Shape, plan_starts, rate_share
from shared.errors import InvalidInput
from shared.models.slo import SliMinuteDoc

NOW = datetime(2026, 12, 7, 9, 30, 20, tzinfo=UTC)
NOW_MINUTE = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
T0 = datetime(2026, 12, 5, 18, 0, tzinfo=UTC)
TARGET = "http://127.0.0.1:9"


def minute(m: int, **counts: int) -> SliMinuteDoc:
    """Minute ``T0 + m`` with ``counts`` requests per recorded name."""
    return SliMinuteDoc.model_validate(
        {
            "at": T0 + timedelta(minutes=m),
            "callables": {name: {"n": n, "bad": 0, "slow": 0} for name, n in counts.items()},
            "classes": {"swipe": {"n": sum(counts.values())}},
            "services": {},
        }
    )


# ------------------------------------------------------------------ windows


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-12-05T18:00Z/2026-12-05T19:00Z", T0, T0 + timedelta(hours=1)),
        ("2026-12-05T19:00+01:00/2026-12-05T19:30+01:00", T0, T0 + timedelta(minutes=30)),
        ("2026-12-05T18:00:00Z/PT1H30M", T0, T0 + timedelta(minutes=90)),
        ("2026-12-05T18:00Z/pt45m", T0, T0 + timedelta(minutes=45)),
        # relative: ending at the start of the current minute (the last complete one)
        ("last:90m", NOW_MINUTE - timedelta(minutes=90), NOW_MINUTE),
        ("last:2h", NOW_MINUTE - timedelta(hours=2), NOW_MINUTE),
        # a day is the longest window
        ("2026-12-05T18:00Z/2026-12-06T18:00Z", T0, T0 + timedelta(days=1)),
    ],
)  # fmt: skip
def test_windows(text: str, start: datetime, end: datetime) -> None:
    window = parse_window(text, NOW)
    assert (window.start, window.end) == (start, end)


@pytest.mark.parametrize(
    ("text", "field", "says"),
    [
        ("2026-12-05T18:00Z", "fromMetrics", "START/END"),
        ("yesterday/today", "fromMetrics.start", "not an ISO 8601 time"),
        ("2026-12-05T18:00/2026-12-05T19:00Z", "fromMetrics.start", "no time zone"),
        ("2026-12-05T18:00:30Z/2026-12-05T19:00Z", "fromMetrics.start", "not a whole minute"),
        ("2026-12-05T18:00Z/soon", "fromMetrics.end", "not an ISO 8601 time"),
        ("2026-12-05T18:00Z/P", "fromMetrics.end", "neither a time nor a duration"),
        ("2026-12-05T19:00Z/2026-12-05T18:00Z", "fromMetrics.end", "must be after start"),
        ("2026-12-05T18:00Z/2026-12-05T18:00Z", "fromMetrics.end", "must be after start"),
        ("2026-12-07T09:00Z/2026-12-07T09:31Z", "fromMetrics.end", "in the future"),
        ("2026-12-05T18:00Z/2026-12-06T18:01Z", "fromMetrics.end", "1441 minutes, over the 1440"),
        ("last:25h", "fromMetrics.end", "over the 1440"),
    ],
)
def test_bad_windows_name_the_field(text: str, field: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_window(text, NOW)
    assert caught.value.field == field
    assert says in str(caught.value)


# ------------------------------------------------------------------ the builder


@pytest.mark.parametrize(
    ("weights", "total", "parts"),
    [
        ([3, 1], 8, (6, 2)),
        ([1, 1, 1], 2, (1, 1, 0)),  # ties: the earlier one
        ([600, 60], 11, (10, 1)),  # exact 10.0 and 1.0
        ([1200, 60], 11, (10, 1)),  # 10.48 and 0.52: the larger remainder gets the unit
        ([5, 0, 5], 3, (2, 0, 1)),
        ([0, 0], 4, (0, 0)),
        ([7], 0, (0,)),
    ],
)
def test_apportion(weights: list[int], total: int, parts: tuple[int, ...]) -> None:
    assert apportion(weights, total) == parts


WINDOW = "2026-12-05T18:00Z/2026-12-05T18:04Z"
DOCS = [
    minute(0, swipe=3000, chat_message=600, wallet_balance=300),
    minute(1, swipe=1500, chat_message=2400, feed_v2=900, pack391_checkRateLimit=50),
    # minute 2 is missing: the recorder wrote nothing
    minute(3, swipe=4500, wallet_balance=600, pack391_checkRateLimit=70),
]


@pytest.mark.parametrize(
    ("scale", "minute_sec", "counts"),
    [
        # real time: a minute plays n x scale requests over its 60 s
        (1.0, 60, [(3000, 0, 600, 300), (1500, 900, 2400, 0), (0, 0, 0, 0), (4500, 0, 0, 600)]),
        (0.1, 60, [(300, 0, 60, 30), (150, 90, 240, 0), (0, 0, 0, 0), (450, 0, 0, 60)]),
        # compressed: each minute keeps its rate (n x scale / 60 per second) for 1 s
        (2.0, 1, [(100, 0, 20, 10), (50, 30, 80, 0), (0, 0, 0, 0), (150, 0, 0, 20)]),
        (1.0, 2, [(100, 0, 20, 10), (50, 30, 80, 0), (0, 0, 0, 0), (150, 0, 0, 20)]),
    ],
)
def test_rate_and_mix_follow_the_recorded_minutes(
    scale: float, minute_sec: int, counts: list[tuple[int, ...]]
) -> None:
    built = recorded_plan(
        DOCS, parse_window(WINDOW, NOW), TARGET, scale=scale, minute_sec=minute_sec,
        mapping={"feed_v2": "discovery_feed"},
    )  # fmt: skip
    plan, profile = built.plan, built.plan.profile
    assert profile is not None
    # in the order of the load endpoints' table
    assert profile.endpoints == ("swipe", "discovery_feed", "chat_message", "wallet_balance")
    assert [list(row) for row in profile.counts] == [list(row) for row in counts]
    assert (plan.shape, plan.type.value, plan.scenario_id) == (
        Shape.RECORDED, "recorded", "from_metrics"
    )  # fmt: skip
    assert plan.duration_sec == 4 * minute_sec
    assert plan.rps == max(sum(row) for row in counts) / minute_sec  # the busiest minute
    report = built.report
    assert (report["recordedMinutes"], report["missingMinutes"]) == (3, 1)
    assert report["missing"] == [["2026-12-05T18:02Z", "2026-12-05T18:03Z"]]
    assert report["unmapped"] == {"pack391_checkRateLimit": 120}
    assert report["mapped"] == {"feed_v2": "discovery_feed"}
    assert report["recordedRequests"] == 13_920
    assert report["plannedRequests"] == sum(map(sum, counts))
    assert report["endpoints"]["discovery_feed"] == {"recorded": 900, "planned": counts[1][1]}


def test_totals_are_rounded_on_the_running_sum() -> None:
    """Three minutes of 10 requests at scale 0.05: 0.5 each; the running sum plays
    1 of the first 0.5 (half up), 0 of the next (1.0 in all), then 1 (1.5 -> 2)."""
    docs = [minute(m, swipe=10) for m in range(3)]
    window = parse_window("2026-12-05T18:00Z/PT3M", NOW)
    profile = recorded_plan(docs, window, TARGET, scale=0.05).plan.profile
    assert profile is not None and profile.counts == ((1,), (0,), (1,))


@pytest.mark.parametrize(
    ("docs", "options", "field", "says"),
    [
        ([], {}, "fromMetrics", "no recorded traffic in 2026-12-05T18:00Z/2026-12-05T18:04Z"),
        ([minute(0, swipe=0)], {}, "fromMetrics", "1 of 4 minutes recorded"),
        ([minute(0, feed_v2=60, pack391_x=5)], {}, "fromMetrics.map", "feed_v2, pack391_x"),
        (DOCS, {"mapping": {"feed_v2": "feed"}}, "fromMetrics.map.feed_v2", "not a load endpoint"),
        (DOCS, {"scale": 0}, "fromMetrics.scale", "over 0"),
        (DOCS, {"scale": 101}, "fromMetrics.scale", "at most 100"),
        # the busiest minute, 5,100/min, at scale 60: 5,100 RPS, over the 5,000 RPS cap
        (DOCS, {"scale": 60}, "fromMetrics.scale", "scale at most 58.82"),
        (DOCS, {"scale": 0.00001}, "fromMetrics.scale", "plays no request"),
        (DOCS, {"minute_sec": 0}, "fromMetrics.minuteSec", "1..60"),
    ],
)
def test_refusals_name_the_field(
    docs: list[SliMinuteDoc], options: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        recorded_plan(docs, parse_window(WINDOW, NOW), TARGET, **options)
    assert caught.value.field == field
    assert says in str(caught.value)


def test_a_long_window_must_be_compressed_to_fit_a_run() -> None:
    window = parse_window("2026-12-05T18:00Z/PT1H", NOW)
    docs = [minute(m, swipe=60) for m in range(60)]
    with pytest.raises(InvalidInput) as caught:
        recorded_plan(docs, window, TARGET)
    assert caught.value.field == "fromMetrics.minuteSec"
    assert "3600 s, over the 1500 s" in str(caught.value) and "at most 25" in str(caught.value)
    plan = recorded_plan(docs, window, TARGET, minute_sec=25).plan
    assert (plan.duration_sec, plan.rps) == (1500, 1.0)


def test_minutes_outside_the_window_are_ignored() -> None:
    docs = [minute(-1, swipe=6000), minute(0, swipe=60), minute(4, swipe=6000)]
    built = recorded_plan(docs, parse_window(WINDOW, NOW), TARGET)
    assert built.report["recordedRequests"] == 60 and built.report["missingMinutes"] == 3
    assert built.plan.profile is not None and built.plan.profile.total == 60


# ------------------------------------------------------------------ the profile's schedule

PROFILE = RecordedProfile(
    minute_sec=2,
    endpoints=("swipe", "chat_message", "wallet_balance"),
    counts=((90, 9, 1), (0, 0, 0), (30, 0, 30), (1, 0, 0)),
)


def test_the_schedule_follows_each_minute_exactly() -> None:
    starts = list(recorded_starts(PROFILE))
    assert [i for i, _, _ in starts] == list(range(161))
    per_minute = Counter((int(offset // 2), name) for _, offset, name in starts)
    for m, row in enumerate(PROFILE.counts):
        for e, name in enumerate(PROFILE.endpoints):
            assert per_minute[(m, name)] == row[e]
    # evenly spaced at the minute's rate: 100 starts in minute 0's 2 s, 60 in minute 2's
    first = [offset for _, offset, _ in starts[:100]]
    assert first[:3] == pytest.approx([0.0, 0.02, 0.04]) and first[-1] == pytest.approx(1.98)
    assert [offset for _, offset, _ in starts[100:102]] == pytest.approx([4.0, 4.0 + 2 / 60])
    assert starts[-1][1:] == (6.0, "swipe")
    assert [PROFILE.rate_at(x) for x in (0.0, 1.99, 2.0, 4.5, 6.5, 8.0)] == [
        50.0, 50.0, 0.0, 30.0, 0.5, 0.0,
    ]  # fmt: skip


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_shards_split_every_minute_exactly(shards: int) -> None:
    whole = sorted(recorded_starts(PROFILE))
    parts = [list(recorded_starts(PROFILE, shard, shards)) for shard in range(shards)]
    assert sorted(x for part in parts for x in part) == whole
    for m in range(PROFILE.minutes):  # each shard gets its share of each minute's rate
        sizes = [sum(1 for _, offset, _ in part if int(offset // 2) == m) for part in parts]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("row", [(90, 9, 1), (30, 0, 30), (1, 2, 3, 4), (997, 3)])
def test_a_minutes_mix_is_exact_and_interleaved(row: tuple[int, ...]) -> None:
    picks = list(minute_endpoints(row))
    assert Counter(picks) == Counter({e: n for e, n in enumerate(row) if n})
    # every tenth of the minute has its share of each endpoint, within one or two
    count = len(picks)
    for k in range(10):
        part = Counter(picks[k * count // 10 : (k + 1) * count // 10])
        for e, n in enumerate(row):
            assert abs(part[e] - n / 10) <= 2, (row, k, e)


def test_a_recorded_plan_round_trips_and_needs_its_profile() -> None:
    built = recorded_plan(DOCS, parse_window(WINDOW, NOW), TARGET, scale=2.0, minute_sec=1)
    plan = built.plan
    raw = plan.to_json()
    # Firestore holds no nested arrays: the profile is a map of per-minute arrays
    assert raw["profile"]["counts"]["swipe"] == [100, 50, 0, 150]
    assert Plan.from_json(raw) == plan
    assert list(plan_starts(Plan.from_json(raw), 0)) == list(plan_starts(plan, 0))
    assert dict(plan.mix) == pytest.approx({"swipe": 300 / 430, "chat_message": 100 / 430,
                                            "wallet_balance": 30 / 430})  # fmt: skip
    with pytest.raises(ValueError, match="profile exactly when"):
        Plan.from_json({k: v for k, v in raw.items() if k != "profile"})
    with pytest.raises(ValueError, match="profile's"):
        rate_share(Shape.RECORDED, 1.0, 10.0)
