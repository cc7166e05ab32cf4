"""The sandbox under load: admission sheds (503 + Retry-After) instead of queueing, its
own pools never fail a request, and it is idle again as soon as the load stops."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import redis
import requests

from bench.stack_measures import count_docs
from functions.load.engine import ShardRunner
from functions.load.results import summarize
from functions.load.scenarios import build_plan
from shared import thresholds as t
from shared.firestore import get_db
from stack.aioserve import served_aiohttp
from stack.constants import LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE, LOAD_SANDBOX_SHED_RETRY_AFTER_SEC
from stack.sandbox import Admission, Sandbox, admission
from tests.conftest import Backends

pytestmark = pytest.mark.serial  # a quiet core: admission and shedding under load

OLD_POOL_SIZE = 100
"""redis-py's default (non-blocking) pool size, which the sandbox used to overflow."""


@pytest.mark.parametrize(
    ("in_use", "waiting", "limit", "queue_limit", "expected"),
    [
        (0, 0, 8, 8, Admission.RUN),
        (7, 0, 8, 8, Admission.RUN),
        (8, 0, 8, 8, Admission.QUEUE),
        (8, 7, 8, 8, Admission.QUEUE),
        (8, 8, 8, 8, Admission.SHED),
        (3, 1, 8, 8, Admission.QUEUE),  # a free slot, but one waits first: behind it
        (8, 0, 8, 0, Admission.SHED),  # no queue at all
        (0, 0, 0, 0, Admission.SHED),
    ],
)
def test_admission_table(
    in_use: int, waiting: int, limit: int, queue_limit: int, expected: Admission
) -> None:
    assert admission(in_use, waiting, limit, queue_limit) is expected


def test_concurrency_above_the_old_pool_size_gives_no_500(backends: Backends) -> None:
    # matching-engine: 5 instances x 50 = 250 requests at once, each holding a Redis
    # connection for its feed read: more than the old 100 (the non-blocking pool raised
    # MaxConnectionsError past it, a 500).
    sandbox = Sandbox(
        get_db(),
        backends.redis_url,
        per_instance=50,
        queue_per_instance=50,
        queue_wait_max_ms=30_000,  # nothing shed, however slow this machine is today
    )
    assert sandbox.pool_size() >= 250 > OLD_POOL_SIZE
    concurrent = 300

    async def burst(url: str) -> list[int]:
        limits = aiohttp.TCPConnector(limit=concurrent)
        async with aiohttp.ClientSession(connector=limits) as session:

            async def one(k: int) -> int:
                body = {"loadRunId": "pool-test", "uid": f"u{k}"}
                async with session.post(f"{url}/discovery/feed", json=body) as response:
                    await response.read()
                    return response.status

            return await asyncio.gather(*(one(k) for k in range(concurrent)))

    with served_aiohttp(sandbox.app()) as url:
        statuses = asyncio.run(burst(url))
        health = requests.get(f"{url}/__health", timeout=5).json()
    assert statuses.count(200) == concurrent, {s: statuses.count(s) for s in set(statuses)}
    assert health["matching-engine"]["inUse"] == 0 and health["matching-engine"]["shed"] == 0


def test_the_redis_pool_follows_a_resize(backends: Backends) -> None:
    sandbox = Sandbox(get_db(), backends.redis_url)
    with served_aiohttp(sandbox.app()) as url:
        before = sandbox.redis_pool.max_connections
        answer = requests.post(
            f"{url}/__resize", json={"serviceId": "matching-engine", "instances": 40}, timeout=5
        )
        assert answer.status_code == 200
    grown = (40 - t.SCALING_SERVICE_INSTANCES["matching-engine"][0]) * (
        LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE
    )
    assert sandbox.redis_pool.max_connections == before + grown == sandbox.pool_size()


def test_over_the_queue_limit_it_sheds_with_retry_after_counted_as_shed(
    backends: Backends,
) -> None:
    # ai-companion: 10 instances x 1 slot, 10 queued at most; a reply takes 40-120 ms,
    # so 300 RPS wants about 24 at once: the rest must be shed, at once, as 503s
    sandbox = Sandbox(get_db(), backends.redis_url, per_instance=1, queue_per_instance=1)
    with served_aiohttp(sandbox.app()) as url:
        plan = build_plan("ai_companion_messages", url, rps=300, duration_sec=3, shards=1)
        outcome, seconds = ShardRunner("shed-test", plan, 0).run()
        after = requests.post(f"{url}/ai/message", json={"uid": "u-after"}, timeout=5)
        # no backlog: idle again right after the load
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            health = requests.get(f"{url}/__health", timeout=5).json()["ai-companion"]
            if health["inUse"] == 0 and health["waiting"] == 0:
                break
            time.sleep(0.05)
    assert health["inUse"] == 0 and health["waiting"] == 0, health
    assert after.status_code == 200
    summary = summarize(seconds, plan.thresholds, outcome.elapsed_sec, plan.rps)
    assert summary["shed"] > 0 and outcome.progress.shed == summary["shed"]
    assert summary["errors"] == 0 and "http_503" not in summary["errorsByKind"]
    assert summary["errorRatePct"] == 0.0 and summary["shedRatePct"] > t.LOAD_TEST_SHED_PCT
    assert summary["shed"] + summary["completed"] == summary["requests"]
    failed = {v["name"] for v in summary["thresholds"] if not v["passed"]}
    assert "shedPct" in failed and "errorRatePct" not in failed
    assert health["shed"] == summary["shed"]


def test_a_shed_answer_is_503_with_retry_after_and_costs_no_work(backends: Backends) -> None:
    sandbox = Sandbox(get_db(), backends.redis_url, per_instance=1, queue_per_instance=0)

    async def pair(url: str) -> list[tuple[int, str | None]]:
        async with aiohttp.ClientSession() as session:

            async def one(k: int) -> tuple[int, str | None]:
                body = {"loadRunId": "shed-one", "uid": f"u{k}"}
                async with session.post(f"{url}/ai/message", json=body) as response:
                    await response.read()
                    return response.status, response.headers.get("Retry-After")

            # 11 at once against 10 slots (ai-companion: 10 instances x 1), no queue
            return await asyncio.gather(*(one(k) for k in range(11)))

    with served_aiohttp(sandbox.app()) as url:
        answers = asyncio.run(pair(url))
    shed = [a for a in answers if a[0] == 503]
    assert len(shed) == 1 and shed[0][1] == str(LOAD_SANDBOX_SHED_RETRY_AFTER_SEC)
    assert sorted(a[0] for a in answers).count(200) == 10
    # the shed request never reached Redis: 10 conversations kept, not 11
    client = redis.Redis.from_url(backends.redis_url, decode_responses=True)
    assert len(client.keys("pack391:sandbox:shed-one:convo:*")) == 10


@pytest.mark.parametrize("group_commit", [True, False])
def test_concurrent_swipes_share_commits_and_each_answers_after_its_write(
    backends: Backends, group_commit: bool
) -> None:
    sandbox = Sandbox(
        get_db(),
        backends.redis_url,
        per_instance=50,
        queue_per_instance=50,
        queue_wait_max_ms=30_000,  # nothing shed: every swipe is a write
        group_commit=group_commit,
    )
    run_id = f"group-commit-{group_commit}"
    swipes = 120

    async def burst(url: str) -> list[int]:
        async with aiohttp.ClientSession() as session:

            async def one(k: int) -> int:
                body = {"loadRunId": run_id, "uid": f"u{k}", "targetUid": f"p{k}",
                        "direction": "right"}  # fmt: skip
                async with session.post(f"{url}/swipe", json=body) as response:
                    await response.read()
                    return response.status

            return await asyncio.gather(*(one(k) for k in range(swipes)))

    with served_aiohttp(sandbox.app()) as url:
        statuses = asyncio.run(burst(url))
        stats = requests.get(f"{url}/__group-commit", timeout=5).json()
    assert statuses == [200] * swipes
    # every request answered after its own write was committed: all are there now
    written = count_docs(backends.project, backends.firestore_host, run_id)
    assert written == swipes == stats["writes"]
    assert stats["groupCommit"] is group_commit and stats["failedCommits"] == 0
    if group_commit:
        assert stats["commits"] < swipes and stats["largestCommit"] > 1
    else:
        assert stats["commits"] == swipes
