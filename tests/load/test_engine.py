"""The engine against real local HTTP targets: open-model honesty, drops, aborts."""

from __future__ import annotations

import threading
import time

import pytest

from functions.load.engine import ShardRunner
from functions.load.results import summarize
from functions.load.scenarios import build_plan
from shared import thresholds as t


def test_a_stalling_target_shows_in_p99_and_the_rate_holds(stalling_url: str) -> None:
    """The target freezes 0.5 s every 2 s: a closed-loop generator would wait and
    report ~10 ms; starts keep their schedule here and the wait is in the latency."""
    plan = build_plan("live_calls", stalling_url, rps=100, duration_sec=4, shards=1)
    outcome, seconds = ShardRunner("co-test1", plan, 0).run()
    summary = summarize(seconds, plan.thresholds, outcome.elapsed_sec, plan.rps)
    assert outcome.status == "completed"
    assert summary["scheduled"] == 400
    assert summary["requests"] == 400 and summary["dropped"] == 0
    assert summary["achievedRps"] == pytest.approx(100, rel=0.01)
    assert summary["latencyMs"]["p50"] < 100
    assert summary["latencyMs"]["p99"] > 300
    assert summary["latencyMs"]["max"] > 400


def test_starts_beyond_the_in_flight_bound_are_dropped_not_errors(stalling_url: str) -> None:
    plan = build_plan("live_calls", stalling_url, rps=50, duration_sec=2, shards=1, max_in_flight=1)
    outcome, seconds = ShardRunner("drop-test", plan, 0).run()
    summary = summarize(seconds, plan.thresholds, outcome.elapsed_sec, plan.rps)
    assert summary["dropped"] > 0
    assert summary["errors"] == 0
    assert summary["scheduled"] == 100 == summary["requests"] + summary["dropped"]
    assert {v["name"] for v in summary["thresholds"] if not v["passed"]} >= {"droppedPct"}


def test_an_unreachable_target_is_errors_by_kind() -> None:
    plan = build_plan("live_calls", "http://127.0.0.1:9", rps=20, duration_sec=1, shards=1)
    outcome, seconds = ShardRunner("err-test", plan, 0).run()
    summary = summarize(seconds, plan.thresholds, outcome.elapsed_sec, plan.rps)
    assert summary["requests"] == 20 and summary["errors"] == 20
    assert set(summary["errorsByKind"]) == {"ClientConnectorError"}
    assert summary["verdict"] == "fail"


def test_abort_stops_within_two_seconds_even_mid_stall(stalling_url: str) -> None:
    plan = build_plan("live_calls", stalling_url, rps=50, duration_sec=30, shards=1)
    flagged: list[float] = []

    def check() -> str | None:
        if time.monotonic() - started > 1.2 and not flagged:
            flagged.append(time.monotonic())
        return "stop" if flagged else None

    started = time.monotonic()
    outcome, seconds = ShardRunner("abort-t1", plan, 0, abort_check=check).run()
    ended = time.monotonic()
    assert outcome.status == "aborted" and outcome.abort_reason == "stop"
    assert ended - flagged[0] < t.LOAD_TEST_ABORT_WITHIN_SEC
    assert outcome.elapsed_sec < 3
    assert sum(s.sent for s in seconds.values()) > 0


def test_abort_on_fail_after_a_sustained_breach() -> None:
    plan = build_plan(
        "live_calls", "http://127.0.0.1:9", rps=20, duration_sec=30, shards=1, abort_on_fail=True
    )
    breaches: list[str] = []
    started = time.monotonic()
    outcome, _ = ShardRunner("breach-1", plan, 0, on_breach=breaches.append).run()
    assert outcome.status == "aborted"
    assert breaches and "consecutive" in breaches[0]
    assert time.monotonic() - started < t.LOAD_TEST_BREACH_SUSTAIN_SEC + 3


def test_shards_started_together_share_the_schedule(stalling_url: str) -> None:
    plan = build_plan("live_calls", stalling_url, rps=60, duration_sec=1, shards=3)
    start_at = time.time() + 0.5
    results: list[int] = []

    def shard(k: int) -> None:
        _, seconds = ShardRunner("multi-1", plan, k).run(start_at)
        results.append(sum(s.sent for s in seconds.values()))

    threads = [threading.Thread(target=shard, args=(k,)) for k in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [20, 20, 20]
