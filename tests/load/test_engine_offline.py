"""The engine's answers that do not depend on a quiet machine: an unreachable target's
errors by kind, and the report path's figures against hdrh's own. They run in the
parallel phase; the tests that judge real rates and latencies are in the quiet lane
(tests/load/test_engine.py)."""

from __future__ import annotations

import random

from functions.load.engine import ShardRunner
from functions.load.results import (
    SecondStats,
    heatmap,
    latency_of,
    percentiles,
    recorded,
    summarize,
)
from functions.load.scenarios import build_plan


def test_an_unreachable_target_is_errors_by_kind() -> None:
    plan = build_plan("live_calls", "http://127.0.0.1:9", rps=20, duration_sec=1, shards=1)
    outcome, seconds = ShardRunner("err-test", plan, 0).run()
    summary = summarize(seconds, plan.thresholds, outcome.elapsed_sec, plan.rps)
    assert summary["requests"] == 20 and summary["errors"] == 20
    assert set(summary["errorsByKind"]) == {"ClientConnectorError"}
    assert summary["verdict"] == "fail"


def test_the_fast_report_path_equals_hdrh_own_methods() -> None:
    """``latency_of``, ``percentiles`` and ``heatmap`` walk only the non-empty buckets;
    their figures are exactly hdrh's (mean, percentiles, recorded iterator)."""
    rng = random.Random(7)
    for shape in (0.3, 1.0, 2.5):
        stats = SecondStats()
        for i in range(3000):
            stats.record("a" if i % 3 else "b", int(rng.lognormvariate(7, shape)))
        hist = stats.total()
        assert latency_of(hist) == {
            "avg": round(hist.get_mean_value() / 1000, 3),
            "p50": round(hist.get_value_at_percentile(50) / 1000, 3),
            "p95": round(hist.get_value_at_percentile(95) / 1000, 3),
            "p99": round(hist.get_value_at_percentile(99) / 1000, 3),
            "max": round(hist.get_max_value() / 1000, 3),
        }
        wanted = (1.0, 33.3, 90.0, 99.9, 100.0)
        assert percentiles(hist, wanted) == [hist.get_value_at_percentile(p) for p in wanted]
        walk = [(i.value_iterated_to, i.count_at_value_iterated_to)
                for i in hist.get_recorded_iterator()]  # fmt: skip
        assert recorded(hist) == walk
        assert sum(heatmap({0: stats})["counts"][0]) == 3000
