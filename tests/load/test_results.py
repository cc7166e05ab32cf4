"""Per-second histograms: exact merges across shards, summaries, verdicts, heatmap."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from functions.load.results import (
    Seconds,
    SecondStats,
    crash_map,
    heatmap,
    merge,
    new_histogram,
    seconds_from_json,
    seconds_to_json,
    summarize,
    timeline,
    verdict,
)
from functions.load.scenarios import Thresholds


def test_merge_across_shards_is_exact() -> None:
    rng = random.Random(7)
    values = [
        (rng.randrange(5), rng.choice("ab"), int(rng.lognormvariate(9, 1.5))) for _ in range(20_000)
    ]
    whole: Seconds = {}
    shards: list[Seconds] = [{}, {}, {}]
    for i, (sec, endpoint, us) in enumerate(values):
        for target in (whole, shards[i % 3]):
            stats = target.setdefault(sec, SecondStats())
            stats.record(endpoint, us)
            stats.sent += 1
            stats.scheduled += 1
    # through the wire form each shard ships (JSON of the encoded histograms)
    shipped = [seconds_from_json(json.loads(json.dumps(seconds_to_json(s)))) for s in shards]
    merged = merge(shipped)
    assert sorted(merged) == sorted(whole)
    for sec, stats in whole.items():
        for endpoint, hist in stats.hist.items():
            other = merged[sec].hist[endpoint]
            assert other.get_total_count() == hist.get_total_count()
            assert [other.get_count_at_index(i) for i in range(other.counts_len)] == [
                hist.get_count_at_index(i) for i in range(hist.counts_len)
            ]
            assert other.get_max_value() == hist.get_max_value()
            for pct in (0, 50, 90, 95, 99, 99.9, 100):
                assert other.get_value_at_percentile(pct) == hist.get_value_at_percentile(pct)
    t = Thresholds()
    assert summarize(merged, t, 5.0, 4000) == summarize(whole, t, 5.0, 4000)


def test_summary_counts_errors_drops_and_verdicts() -> None:
    stats = SecondStats(scheduled=100, sent=98, dropped=2, late=3)
    for i in range(98):
        stats.record("swipe", 5_000 if i < 70 else 900_000)
    stats.errors.update({"swipe|http_503": 1, "swipe|timeout": 1})
    summary = summarize({0: stats}, Thresholds(), 1.0, 100)
    assert summary["requests"] == 98 and summary["dropped"] == 2 and summary["late"] == 3
    assert summary["errorsByKind"] == {"http_503": 1, "timeout": 1}
    assert summary["droppedPct"] == 2.0
    assert summary["latencyMs"]["p99"] == pytest.approx(900.0, rel=0.002)
    failed = {v["name"] for v in summary["thresholds"] if not v["passed"]}
    assert failed == {"avgMs", "p95Ms", "p99Ms", "errorRatePct", "droppedPct"}
    assert summary["verdict"] == "fail"


@pytest.mark.parametrize(
    ("latency", "errors", "dropped", "requests", "failed"),
    [
        ({"avg": 10, "p50": 5, "p95": 50, "p99": 90, "max": 100}, 0.0, 0.0, 10, set()),
        ({"avg": 250, "p50": 5, "p95": 50, "p99": 90, "max": 100}, 0.0, 0.0, 10, {"avgMs"}),
        ({"avg": 10, "p50": 5, "p95": 400, "p99": 90, "max": 100}, 0.0, 0.0, 10, {"p95Ms"}),
        ({"avg": 10, "p50": 5, "p95": 50, "p99": 800, "max": 900}, 0.0, 0.0, 10, {"p99Ms"}),
        ({"avg": 10, "p50": 5, "p95": 50, "p99": 90, "max": 100}, 1.0, 0.0, 10, {"errorRatePct"}),
        ({"avg": 10, "p50": 5, "p95": 50, "p99": 90, "max": 100}, 0.0, 1.5, 10, {"droppedPct"}),
        ({"avg": 0, "p50": 0, "p95": 0, "p99": 0, "max": 0}, 0.0, 0.0, 0, {"requests"}),
    ],
)
def test_verdict_table(
    latency: dict[str, float], errors: float, dropped: float, requests: int, failed: set[str]
) -> None:
    rows = verdict(latency, errors, dropped, requests, Thresholds())
    assert {r["name"] for r in rows if not r["passed"]} == failed


def test_heatmap_and_crash_map() -> None:
    first, second = SecondStats(), SecondStats()
    for us in (500, 1_500, 7_000, 7_500, 3_000_000, 30_000_000):
        first.record("a", us)
    second.record("b", 150_000)
    second.errors.update({"b|http_500": 2})
    hm = heatmap({0: first, 1: second})
    assert hm["secs"] == [0, 1]
    bounds = hm["bucketsMs"]
    row0 = dict(zip([*bounds, "more"], hm["counts"][0], strict=True))
    assert (row0[1], row0[2], row0[10], row0[5000], row0["more"]) == (1, 1, 2, 1, 1)
    assert sum(hm["counts"][1]) == 1 and hm["counts"][1][bounds.index(200)] == 1
    assert crash_map({0: first, 1: second}) == [
        {"sec": 1, "endpoint": "b", "kind": "http_500", "count": 2}
    ]


def test_histogram_range_clamps() -> None:
    stats = SecondStats()
    stats.record("a", 0)
    stats.record("a", 10**12)
    hist = stats.hist["a"]
    assert hist.get_total_count() == 2
    assert hist.get_min_value() >= 1
    assert Counter({"x": 1}) == Counter({"x": 1}) and new_histogram().get_total_count() == 0


def test_shed_is_counted_apart_from_errors_and_latency() -> None:
    stats = SecondStats(scheduled=100, sent=100)
    for _ in range(80):
        stats.record("swipe", 5_000)
    stats.errors.update({"swipe|http_500": 2})
    stats.shed.update({"swipe": 20})
    again = SecondStats.from_json(stats.to_json())
    assert again.shed == stats.shed
    merged = merge([{0: stats}, {0: again}])
    summary = summarize(merged, Thresholds(), 1.0, 200)
    assert summary["shed"] == 40 and summary["shedByEndpoint"] == {"swipe": 40}
    assert summary["completed"] == 160  # shed answers are not in the latency histograms
    assert summary["errorsByKind"] == {"http_500": 4}
    assert summary["errorRatePct"] == pytest.approx(100 * 4 / 160)  # of what was served
    assert summary["shedRatePct"] == 20.0
    failed = {v["name"] for v in summary["thresholds"] if not v["passed"]}
    assert failed == {"errorRatePct", "shedPct"}
    assert timeline(merged)[0]["shed"] == 40
    # a slice stored before shed existed reads as none shed
    legacy = stats.to_json()
    del legacy["shed"]
    assert SecondStats.from_json(legacy).shed == {}
