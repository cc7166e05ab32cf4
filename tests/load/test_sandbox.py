"""The sandbox closes the local loop: load -> pushed metrics -> scaler -> capacity."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import redis
import requests

from functions.load.engine import ShardRunner
from functions.load.scenarios import build_plan
from functions.scaling.api import PushedMetricsStore
from shared.firestore import get_db
from shared.redis import get_redis
from shared.slo.recorder import read_minutes
from stack.aioserve import served_aiohttp
from stack.platform.tokens import role_token
from stack.sandbox import Sandbox, functions_reporter
from tests.conftest import Backends, Caller


def test_sandbox_pushes_metrics_and_honours_the_resize_hook(
    caller: Caller, backends: Backends, live_server: str
) -> None:
    assert caller.call("pack391_initScaling", {}).status == 200
    functions_url = f"{live_server}/{backends.project}/us-central1"
    hook: list[str] = []

    async def report(service_id: str, sample: dict[str, object]) -> None:
        await functions_reporter(functions_url, role_token(backends.project, "ops"), hook[0])(
            service_id, sample
        )

    sandbox = Sandbox(get_db(), backends.redis_url, reporter=report, interval_sec=0.5)
    with served_aiohttp(sandbox.app()) as url:
        hook.append(f"{url}/__resize")
        plan = build_plan("ai_companion_messages", url, rps=30, duration_sec=2, shards=1)
        outcome, _ = ShardRunner("loop-test", plan, 0).run()
        assert outcome.progress.errors == 0
        time.sleep(1.0)  # one more push interval
        store = PushedMetricsStore(get_redis())
        assert store.hook_url("ai-companion") == hook[0]
        pushed = redis.Redis.from_url(backends.redis_url).keys("*:m:ai-companion:*")
        assert pushed, "no metrics sample reached the scaling push path"
        # every answer is an SLI event under the load engine's endpoint names (what
        # loadtest --from-metrics plays) and the class the app's callable is limited as
        now_minute = int(time.time()) // 60
        minutes = read_minutes(get_redis(), range(now_minute - 2, now_minute + 1)).values()
        total = {
            scope: sum(m.get(scope, {}).get("n", 0) for m in minutes)
            for scope in ("platform", "callable:ai_message", "callable:wallet_balance", "class:ai")
        }
        answered = total["callable:ai_message"] + total["callable:wallet_balance"]
        assert answered == outcome.progress.completed > 0, total
        # the platform holds them and the functions' own calls (the pushes, initScaling)
        assert total["platform"] > answered
        assert total["class:ai"] == total["callable:ai_message"] > 0
        assert sum(m.get("platform", {}).get("bad", 0) for m in minutes) == 0
        # the local scaler's path: a manual scale posts to the registered hook
        res = caller.call(
            "pack391_manualScale",
            {"serviceId": "ai-companion", "action": "scale_to", "instanceCount": 20,
             "reason": "load test loop"},
        )  # fmt: skip
        assert res.status == 200, res.body
        health = requests.get(f"{url}/__health", timeout=5).json()
        assert health["ai-companion"]["instances"] == 20
        assert sandbox.services["ai-companion"].capacity.limit == 20 * 8


def test_sandbox_footprints(backends: Backends, sandbox_url: str) -> None:
    tagged = {"loadRunId": "run-abc", "uid": "u1"}

    def post(path: str, body: object) -> requests.Response:
        return requests.post(f"{sandbox_url}{path}", json=body, timeout=5)

    assert post("/chat/message", tagged | {"tokens": 5}).json()["balance"] == 10_000 - 5
    assert post("/wallet/balance", tagged).json()["balance"] == 10_000 - 5
    assert post("/payout/request", tagged | {"amountTokens": 100}).status_code == 202
    assert post("/event/purchase", tagged | {"eventId": "e1", "quantity": 2}).json()["left"] == (
        1_000_000 - 2
    )
    # 30 at once: however they straddle a second boundary, at most 2 x 10 pass the limiter
    with ThreadPoolExecutor(30) as pool:
        answers = pool.map(lambda i: post("/swipe", tagged | {"targetUid": f"p{i}"}), range(30))
        codes = [a.status_code for a in answers]
    assert codes.count(429) >= 10 and codes.count(200) >= 10
    assert post("/call/start", tagged | {"callId": "c1"}).status_code == 200
    assert post("/call/heartbeat", tagged | {"callId": "c1"}).json()["beats"] == 1
    assert post("/swipe", [1, 2]).status_code == 400
    client = get_redis()
    assert client.llen("pack391:sandbox:run-abc:payouts") == 1
    keys = [str(k) for k in client.keys("pack391:sandbox:*")]
    assert keys and all(k.startswith("pack391:sandbox:run-abc:") for k in keys)
