"""The load-test sandbox: the app's endpoints each scenario hits, with real footprints.

Each endpoint does what the app's real one does to the backends, against the Firestore
emulator and Redis, and is served by one of the scaling registry's services:

- ``/swipe`` (matching-engine): a per-user rate limiter in Redis, then a swipe document;
- ``/discovery/feed`` (matching-engine): reads a Redis sorted set;
- ``/chat/message`` (chat-service): debits tokens in a Redis transaction (WATCH/MULTI),
  then writes the message document;
- ``/wallet/balance`` (payment-processor): reads the balance;
- ``/payout/request`` (payment-processor): enqueues the request (Redis list + document);
- ``/call/start``, ``/call/heartbeat`` (media-processing): call sessions in Redis;
- ``/event/purchase`` (api-gateway): decrements stock, refusing to oversell;
- ``/ai/message`` (ai-companion): waits a model-like delay, keeps the conversation.

Each service serves at most ``instances x LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE``
requests at once (the rest queue, which is latency); ``POST /__resize`` (the local
scaler's resize hook) changes ``instances``. ``POST /__faults {"errorPct": 50,
"ttlSec": 30}`` (``pack391 chaos sandbox-errors``) answers that share of the endpoints'
requests with 500 until the ttl runs out or ``errorPct`` is back to 0. Every
``LOAD_SANDBOX_METRICS_INTERVAL_SEC`` each service pushes its sample to
``pack391_reportServiceMetrics`` (the scaling push path), registering the resize
hook. Data is tagged with the request's ``loadRunId``.

Run: ``python -m stack.sandbox --port 5002 --functions-url http://127.0.0.1:5001/P/R``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from aiohttp import ClientSession, ClientTimeout, web
from google.api_core import exceptions as gexc
from google.cloud import firestore
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from shared import thresholds as t
from shared.collections import LOAD_SANDBOX_COLLECTIONS

log = logging.getLogger("pack391.sandbox")

BACKEND_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,
    TimeoutError,
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.RetryError,
)
"""Failures of Redis or Firestore: answered 503 with Retry-After, never 500."""
BACKEND_RETRY_AFTER_SEC = 1

SWIPES, MESSAGES, PAYOUTS, PURCHASES = LOAD_SANDBOX_COLLECTIONS
PREFIX = "pack391:sandbox:"
START_BALANCE_TOKENS = 10_000
EVENT_STOCK = 1_000_000

SERVICE_OF: dict[str, str] = {
    "/swipe": "matching-engine",
    "/discovery/feed": "matching-engine",
    "/chat/message": "chat-service",
    "/wallet/balance": "payment-processor",
    "/payout/request": "payment-processor",
    "/call/start": "media-processing",
    "/call/heartbeat": "media-processing",
    "/event/purchase": "api-gateway",
    "/ai/message": "ai-companion",
}
"""Endpoint path -> the registry service that serves it."""

Reporter = Callable[[str, dict[str, Any]], Awaitable[None]]

REPORTING = web.AppKey("reporting", asyncio.Task[None])


class Capacity:
    """A resizable bound on concurrent requests."""

    def __init__(self, instances: int) -> None:
        self.instances = instances
        self.in_use = 0
        self.waiting = 0
        self._cond = asyncio.Condition()

    @property
    def limit(self) -> int:
        return self.instances * t.LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE

    async def acquire(self) -> None:
        async with self._cond:
            self.waiting += 1
            await self._cond.wait_for(lambda: self.in_use < self.limit)
            self.waiting -= 1
            self.in_use += 1

    async def release(self) -> None:
        async with self._cond:
            self.in_use -= 1
            self._cond.notify()

    async def resize(self, instances: int) -> None:
        async with self._cond:
            self.instances = instances
            self._cond.notify_all()


@dataclass
class ServiceSim:
    service_id: str
    capacity: Capacity
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    busy_sec: float = 0.0

    def sample(self, interval_sec: float) -> dict[str, Any] | None:
        if not self.requests and not self.capacity.waiting:
            return None
        lat = sorted(self.latencies_ms)
        p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))] if lat else 0.0
        capacity_sec = interval_sec * self.capacity.limit
        sample = {
            "serviceId": self.service_id,
            "requests": self.requests,
            "errors": self.errors,
            "p95LatencyMs": round(p95, 3),
            "cpuPct": round(min(100.0, 100.0 * self.busy_sec / capacity_sec), 2),
            "queueDepth": self.capacity.waiting,
        }
        self.requests = self.errors = 0
        self.latencies_ms = []
        self.busy_sec = 0.0
        return sample


class Sandbox:
    def __init__(
        self,
        db: firestore.Client,
        redis_url: str,
        *,
        reporter: Reporter | None = None,
        interval_sec: float = t.LOAD_SANDBOX_METRICS_INTERVAL_SEC,
    ) -> None:
        self.db = db
        self.redis_url = redis_url
        self.reporter = reporter
        self.interval_sec = interval_sec
        self.services = {
            sid: ServiceSim(sid, Capacity(t.SCALING_SERVICE_INSTANCES[sid][0]))
            for sid in sorted(set(SERVICE_OF.values()))
        }
        # one retry on a broken connection: after a Redis restart every pooled connection
        # is stale once, and a service should not answer 503 for that
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            redis_url,
            retry=AsyncRetry(NoBackoff(), 1),
            retry_on_error=[redis.exceptions.ConnectionError],
        )
        self._rng = random.Random()
        self.error_pct = 0.0
        self._errors_until: float | None = None

    # ---------------------------------------------------------------- app

    def app(self) -> web.Application:
        app = web.Application()
        handlers: dict[str, Callable[[str, dict[str, Any]], Awaitable[web.Response]]] = {
            "/swipe": self.swipe,
            "/discovery/feed": self.feed,
            "/chat/message": self.chat,
            "/wallet/balance": self.balance,
            "/payout/request": self.payout,
            "/call/start": self.call_start,
            "/call/heartbeat": self.call_heartbeat,
            "/event/purchase": self.purchase,
            "/ai/message": self.ai,
        }
        for path, handler in handlers.items():
            app.router.add_post(path, self._served(path, handler))
        app.router.add_post("/__resize", self.resize)
        app.router.add_get("/__health", self.health)
        app.router.add_get("/__faults", self.faults)
        app.router.add_post("/__faults", self.faults)
        app.on_startup.append(self._start_reporting)
        app.on_cleanup.append(self._stop)
        return app

    def _served(
        self, path: str, handler: Callable[[str, dict[str, Any]], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        service = self.services[SERVICE_OF[path]]

        async def serve(request: web.Request) -> web.Response:
            started = time.monotonic()
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "body must be JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "body must be an object"}, status=400)
            run_id = str(body.get("loadRunId") or "untagged")
            if self._injected_error():
                service.requests += 1
                service.errors += 1
                service.latencies_ms.append((time.monotonic() - started) * 1000)
                return web.json_response({"error": "injected fault"}, status=500)
            await service.capacity.acquire()
            began = time.monotonic()
            try:
                response = await handler(run_id, body)
            except BACKEND_DOWN as exc:
                # a backend down is not the service's bug: 503 and when to retry, as the
                # real platform answers (no 500 while Redis or Firestore is away)
                log.warning("sandbox %s: backend unavailable: %s", path, type(exc).__name__)
                response = web.json_response(
                    {"error": "backend unavailable"},
                    status=503,
                    headers={"Retry-After": str(BACKEND_RETRY_AFTER_SEC)},
                )
            except Exception:
                log.exception("sandbox %s failed", path)
                response = web.json_response({"error": "internal"}, status=500)
            finally:
                await service.capacity.release()
            service.busy_sec += time.monotonic() - began
            service.requests += 1
            if response.status >= 500:
                service.errors += 1
            service.latencies_ms.append((time.monotonic() - started) * 1000)
            return response

        return serve

    def _key(self, run_id: str, *parts: str) -> str:
        return PREFIX + run_id + ":" + ":".join(parts)

    async def _write(self, collection: str, doc: dict[str, Any]) -> None:
        await asyncio.to_thread(self.db.collection(collection).document().set, doc)

    # ---------------------------------------------------------------- endpoints

    async def swipe(self, run_id: str, body: dict[str, Any]) -> web.Response:
        uid = str(body.get("uid"))
        key = self._key(run_id, "rl", uid, str(int(time.time())))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = await pipe.execute()
        if int(count) > t.LOAD_SANDBOX_SWIPES_PER_USER_PER_SEC:
            return web.json_response({"error": "rate limited"}, status=429)
        doc = {k: body.get(k) for k in ("uid", "targetUid", "direction")}
        await self._write(SWIPES, doc | {"loadRunId": run_id, "at": datetime.now(UTC)})
        await self.redis.zadd(self._key(run_id, "feed"), {str(body.get("targetUid")): time.time()})
        return web.json_response({"ok": True, "match": self._rng.random() < 0.05})

    async def feed(self, run_id: str, body: dict[str, Any]) -> web.Response:
        limit = int(body.get("limit") or 10)
        raw = await self.redis.zrevrange(self._key(run_id, "feed"), 0, limit - 1)
        return web.json_response(
            {"profiles": [str(r, "utf-8") if isinstance(r, bytes) else str(r) for r in raw]}
        )

    async def _balance_key(self, run_id: str, uid: str) -> str:
        key = self._key(run_id, "wallet", uid)
        await self.redis.set(key, START_BALANCE_TOKENS, nx=True)
        return key

    async def chat(self, run_id: str, body: dict[str, Any]) -> web.Response:
        uid, tokens = str(body.get("uid")), int(body.get("tokens") or 1)
        key = await self._balance_key(run_id, uid)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    balance = int(await pipe.get(key) or 0)
                    if balance < tokens:
                        return web.json_response({"error": "insufficient tokens"}, status=402)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.decrby(key, tokens)
                    await pipe.execute()
                    break
                except aioredis.WatchError:
                    continue
        doc = {"uid": uid, "chatId": body.get("chatId"), "tokens": tokens, "loadRunId": run_id}
        await self._write(MESSAGES, doc | {"at": datetime.now(UTC)})
        return web.json_response({"ok": True, "balance": balance - tokens})

    async def balance(self, run_id: str, body: dict[str, Any]) -> web.Response:
        key = await self._balance_key(run_id, str(body.get("uid")))
        return web.json_response({"balance": int(await self.redis.get(key) or 0)})

    async def payout(self, run_id: str, body: dict[str, Any]) -> web.Response:
        request = {k: body.get(k) for k in ("uid", "amountTokens", "method")}
        await self.redis.rpush(self._key(run_id, "payouts"), json.dumps(request))
        status = {"status": "queued", "loadRunId": run_id, "at": datetime.now(UTC)}
        await self._write(PAYOUTS, request | status)
        return web.json_response({"queued": True}, status=202)

    async def call_start(self, run_id: str, body: dict[str, Any]) -> web.Response:
        key = self._key(run_id, "call", str(body.get("callId")))
        await self.redis.hset(key, mapping={"uid": str(body.get("uid")), "beats": 0})
        await self.redis.expire(key, 300)
        return web.json_response({"ok": True})

    async def call_heartbeat(self, run_id: str, body: dict[str, Any]) -> web.Response:
        key = self._key(run_id, "call", str(body.get("callId")))
        beats = await self.redis.hincrby(key, "beats", 1)
        await self.redis.expire(key, 300)
        return web.json_response({"beats": int(beats)})

    async def purchase(self, run_id: str, body: dict[str, Any]) -> web.Response:
        quantity = int(body.get("quantity") or 1)
        key = self._key(run_id, "stock", str(body.get("eventId")))
        await self.redis.set(key, EVENT_STOCK, nx=True)
        left = int(await self.redis.decrby(key, quantity))
        if left < 0:
            await self.redis.incrby(key, quantity)
            return web.json_response({"error": "sold out"}, status=409)
        doc = {"uid": body.get("uid"), "eventId": body.get("eventId"), "quantity": quantity}
        await self._write(PURCHASES, doc | {"loadRunId": run_id, "at": datetime.now(UTC)})
        return web.json_response({"ok": True, "left": left})

    async def ai(self, run_id: str, body: dict[str, Any]) -> web.Response:
        low, high = t.LOAD_SANDBOX_AI_DELAY_MS
        await asyncio.sleep(self._rng.uniform(low, high) / 1000)
        key = self._key(run_id, "convo", str(body.get("uid")))
        await self.redis.lpush(key, str(body.get("text"))[:200])
        await self.redis.ltrim(key, 0, 19)
        return web.json_response({"reply": "that sounds lovely"})

    # ---------------------------------------------------------------- scaling

    async def resize(self, request: web.Request) -> web.Response:
        body = await request.json()
        service = self.services.get(str(body.get("serviceId")))
        instances = body.get("instances")
        if service is None or not isinstance(instances, int) or instances < 1:
            return web.json_response({"error": "unknown service or bad instances"}, status=400)
        await service.capacity.resize(instances)
        log.info("resized %s to %d instances", service.service_id, instances)
        return web.json_response({"serviceId": service.service_id, "instances": instances})

    # ---------------------------------------------------------------- faults

    def _injected_error(self) -> bool:
        if not self.error_pct:
            return False
        if self._errors_until is not None and time.monotonic() >= self._errors_until:
            log.info("injected errors (%.0f%%) expired", self.error_pct)
            self.error_pct, self._errors_until = 0.0, None
            return False
        return self._rng.random() * 100 < self.error_pct

    async def faults(self, request: web.Request) -> web.Response:
        """``GET``: the injected error share; ``POST {"errorPct", "ttlSec"}``: set it."""
        if request.method == "POST":
            try:
                body = await request.json()
                pct = float(body.get("errorPct", 0))
                ttl = body.get("ttlSec")
                ttl_sec = float(ttl) if ttl is not None else None
            except (ValueError, TypeError, AttributeError):
                return web.json_response({"error": "give errorPct (0-100), ttlSec"}, status=400)
            if not 0 <= pct <= 100 or (ttl_sec is not None and ttl_sec <= 0):
                return web.json_response({"error": "errorPct 0-100, ttlSec > 0"}, status=400)
            self.error_pct = pct
            self._errors_until = time.monotonic() + ttl_sec if pct and ttl_sec else None
            log.warning("injected errors: %.0f%% of requests (ttl %s s)", pct, ttl_sec)
        self._injected_error()  # expire
        ttl_left = round(self._errors_until - time.monotonic(), 3) if self._errors_until else None
        return web.json_response({"errorPct": self.error_pct, "ttlSec": ttl_left})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {sid: {"instances": s.capacity.instances, "inUse": s.capacity.in_use}
             for sid, s in self.services.items()}
        )  # fmt: skip

    async def report_once(self) -> int:
        """Push one sample per active service; how many were pushed."""
        pushed = 0
        for service in self.services.values():
            sample = service.sample(self.interval_sec)
            if sample is not None and self.reporter is not None:
                try:
                    await self.reporter(service.service_id, sample)
                    pushed += 1
                except Exception:
                    log.exception("metrics push for %s failed", service.service_id)
        return pushed

    async def _start_reporting(self, app: web.Application) -> None:
        # Open the Firestore channel and a Redis connection before the first request:
        # a cold gRPC channel would otherwise be the first requests' latency.
        await asyncio.to_thread(self.db.collection(SWIPES).document("warmup").get)
        await self.redis.ping()

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.interval_sec)
                await self.report_once()

        app[REPORTING] = asyncio.create_task(loop())

    async def _stop(self, app: web.Application) -> None:
        app[REPORTING].cancel()
        await self.redis.aclose()


def functions_reporter(functions_url: str, token: str, hook_url: str) -> Reporter:
    """Push samples to ``pack391_reportServiceMetrics`` over the callable protocol."""

    async def report(service_id: str, sample: dict[str, Any]) -> None:
        async with (
            ClientSession(timeout=ClientTimeout(total=5)) as session,
            session.post(
                f"{functions_url}/pack391_reportServiceMetrics",
                json={"data": sample | {"resizeHookUrl": hook_url}},
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            if response.status != 200:
                log.warning("metrics push %s: %s", response.status, await response.text())

    return report


def main() -> None:
    from shared.config import project_id
    from shared.firestore import get_db
    from stack.tokens import role_token

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5002)
    parser.add_argument("--functions-url", help="base of the callables (.../PROJECT/REGION)")
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    reporter = None
    if args.functions_url:
        hook = f"http://{args.host}:{args.port}/__resize"
        reporter = functions_reporter(args.functions_url, role_token(project_id(), "ops"), hook)
    sandbox = Sandbox(get_db(), args.redis_url, reporter=reporter)
    web.run_app(sandbox.app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
