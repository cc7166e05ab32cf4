"""The engine against real local HTTP targets: open-model honesty, drops, aborts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest
from aiohttp import web

from functions.load.engine import ShardRunner
from functions.load.results import (
    summarize,
)
from functions.load.scenarios import ENDPOINTS, RUN_HEADER, build_plan, pick_endpoint
from shared import thresholds as t
from stack.aioserve import served_aiohttp
from stack.constants import LOAD_TEST_ABORT_WITHIN_SEC

pytestmark = pytest.mark.serial  # a quiet core: real-time rates and latency bounds


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
    assert ended - flagged[0] < LOAD_TEST_ABORT_WITHIN_SEC
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


def _recording_app(seen: list[tuple[str, str, dict[str, object], int]]) -> web.Application:
    """Answers by path: chunked bodies, a 500, a closed connection after each answer, a
    stall past the timeout; records (path, run header, body, peer port) of each request."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        peer = request.transport.get_extra_info("peername")[1] if request.transport else 0
        seen.append((request.path, request.headers.get(RUN_HEADER, ""), body, peer))
        if request.path == "/call/start":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b'{"ok":')
            await resp.write(b" true}")
            await resp.write_eof()
            return resp
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def test_requests_are_tagged_per_endpoint_over_kept_alive_connections() -> None:
    """Every request carries the run id (header and body), the mix's shares hold exactly,
    chunked answers parse, and a few connections carry the whole run."""
    seen: list[tuple[str, str, dict[str, object], int]] = []
    with served_aiohttp(_recording_app(seen)) as url:
        plan = build_plan("live_calls", url, rps=200, duration_sec=2, shards=1)
        outcome, seconds = ShardRunner("tag-run1", plan, 0).run()
    summary = summarize(seconds, plan.thresholds, outcome.elapsed_sec, plan.rps)
    assert summary["requests"] == summary["completed"] == 400 and summary["errors"] == 0
    assert {h for _, h, _, _ in seen} == {"tag-run1"}
    assert all(b["loadRunId"] == "tag-run1" and str(b["uid"]).startswith("load-tag-run1-")
               for _, _, b, _ in seen)  # fmt: skip
    counts = Counter(path for path, _, _, _ in seen)
    expected = Counter(ENDPOINTS[pick_endpoint(plan.mix, i)].path for i in range(400))
    assert counts == expected and 55 <= expected["/call/start"] <= 65
    assert summary["endpoints"]["call_start"]["count"] == expected["/call/start"]
    assert len({port for *_, port in seen}) <= 20


def test_http_errors_closed_connections_and_timeouts_are_counted_by_kind() -> None:
    """500s are ``http_500``, answers that close their connection are fine, and a
    request past the timeout is a ``timeout`` recorded at the timeout."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.text()
        if request.path == "/call/start":
            await asyncio.sleep(2.0)  # past the 0.5 s timeout
        elif '"video":true' in body:
            return web.json_response({"error": "boom"}, status=500)
        return web.Response(text="ok", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    with served_aiohttp(app) as url:
        plan = build_plan("live_calls", url, rps=100, duration_sec=1, shards=1, timeout_sec=0.5)
        outcome, seconds = ShardRunner("kind-run", plan, 0).run()
    summary = summarize(seconds, plan.thresholds, outcome.elapsed_sec, plan.rps)
    errors: Counter[str] = Counter()
    for stats in seconds.values():
        errors.update(stats.errors)
    assert summary["requests"] == 100 == summary["completed"]
    assert errors["call_start|timeout"] == 15
    assert errors["call_heartbeat|http_500"] > 0
    assert sum(errors.values()) == 15 + errors["call_heartbeat|http_500"]
    assert summary["endpoints"]["call_start"]["p50"] >= 500


def test_latency_counts_from_the_scheduled_start(fast_url: str) -> None:
    """A fast target: every latency is small and positive, nothing late or dropped."""
    plan = build_plan("live_calls", fast_url, rps=500, duration_sec=2, shards=1)
    outcome, seconds = ShardRunner("fast-run", plan, 0).run()
    summary = summarize(seconds, plan.thresholds, outcome.elapsed_sec, plan.rps)
    assert summary["requests"] == 1000 and summary["dropped"] == 0
    # late starts are counted, never hidden; on two cores shared with the other test worker
    # the generator itself is a few starts behind now and then (3 of 1,000 seen)
    assert summary["late"] <= 10, summary["late"]
    assert 0 < summary["latencyMs"]["p50"] < 50
    assert [s.scheduled for _, s in sorted(seconds.items())] == [500, 500]
