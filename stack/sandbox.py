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
- ``/ai/message`` (ai-companion): waits a model-like delay, keeps the conversation;
- ``/notification/send`` (notification-service): queues a notification in Redis.

Requests are routed between each service's revisions by the local traffic split, and a
revision's faults apply to the requests it serves (:mod:`stack.revisions`).

Each service serves at most ``instances x LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE``
requests at once; up to ``instances x LOAD_SANDBOX_QUEUE_PER_INSTANCE`` more wait (for
at most ``LOAD_SANDBOX_QUEUE_WAIT_MAX_MS``), and a request past that is shed at once:
``503`` with ``Retry-After``, no work done, as Cloud Run answers when over capacity
(:func:`admission`). Shedding instead of queueing means an overload leaves no backlog:
the sandbox is back to normal within a second of the load easing. ``POST /__resize``
(the local scaler's resize hook) changes ``instances``.

The sandbox's own pools never fail a request: Redis connections come from a blocking
pool sized to the services' total concurrency (resized with it) with a bounded wait,
and Firestore writes go over one async gRPC client (no thread pool), group-committed
(:mod:`stack.group_commit`: the writes of requests in flight together share one commit,
each request answering once its own write is committed; ``--no-group-commit`` or
``PACK391_SANDBOX_GROUP_COMMIT=0`` commits each write alone; ``GET /__group-commit``
counts writes and commits); past
``LOAD_SANDBOX_BACKEND_TIMEOUT_SEC`` a backend call is answered 503 with
``Retry-After``, like a backend that is down. No per-request access log unless
``--access-log`` or ``PACK391_ACCESS_LOG=1``. ``POST /__faults {"errorPct": 50,
"ttlSec": 30}`` (``pack391 chaos sandbox-errors``) answers that share of the endpoints'
requests with 500 until the ttl runs out or ``errorPct`` is back to 0. Every
``LOAD_SANDBOX_METRICS_INTERVAL_SEC`` each service pushes its sample to
``pack391_reportServiceMetrics`` (the scaling push path), registering the resize
hook. Data is tagged with the request's ``loadRunId``.

Run: ``python -m stack.sandbox --port 5002 --redis-url redis://... --functions-url
http://127.0.0.1:5001/P/R`` (``--queue-per-instance N`` overrides the queue bound).
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import logging
import os
import random
import time
from collections import deque
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
from stack.constants import (
    LOAD_SANDBOX_AI_DELAY_MS,
    LOAD_SANDBOX_BACKEND_TIMEOUT_SEC,
    LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE,
    LOAD_SANDBOX_METRICS_INTERVAL_SEC,
    LOAD_SANDBOX_QUEUE_PER_INSTANCE,
    LOAD_SANDBOX_QUEUE_WAIT_MAX_MS,
    LOAD_SANDBOX_SHED_RETRY_AFTER_SEC,
    LOAD_SANDBOX_SWIPES_PER_USER_PER_SEC,
)
from stack.group_commit import GroupCommit, new_id
from stack.procs import ACCESS_LOG_ENV, access_log_wanted
from stack.revisions import RevisionReporter, RevisionRouter, Served, revision_reporter
from stack.sdk_private import credentials_of

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
GROUP_COMMIT_ENV = "PACK391_SANDBOX_GROUP_COMMIT"
"""Set to 0 to commit each Firestore write alone (default: group commit)."""
POOL_HEADROOM = 8
"""Redis connections beyond the services' concurrency (the revision router's refreshes)."""

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
    "/notification/send": "notification-service",
}
"""Endpoint path -> the registry service that serves it."""

Reporter = Callable[[str, dict[str, Any]], Awaitable[None]]

REPORTING = web.AppKey("reporting", asyncio.Task[None])


class Admission(enum.StrEnum):
    """What a service does with an arriving request."""

    RUN = "run"
    """A slot is free and nobody waits before it: served now."""
    QUEUE = "queue"
    """Every slot is busy but the queue has room: waits for a slot."""
    SHED = "shed"
    """The queue is full: answered 503 with ``Retry-After`` at once."""


def admission(in_use: int, waiting: int, limit: int, queue_limit: int) -> Admission:
    """The admission decision for one arriving request (first come, first served)."""
    if in_use < limit and waiting == 0:
        return Admission.RUN
    if waiting < queue_limit:
        return Admission.QUEUE
    return Admission.SHED


class Capacity:
    """A resizable bound on concurrent requests, with a bounded queue in front.

    A waiter is a future in a FIFO; a finished request hands its slot straight to the
    first waiter (no wake-up of everyone). A waiter still waiting after ``wait_max_sec``
    gives up (shed)."""

    def __init__(
        self,
        instances: int,
        per_instance: int = LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE,
        queue_per_instance: int = LOAD_SANDBOX_QUEUE_PER_INSTANCE,
        wait_max_sec: float = LOAD_SANDBOX_QUEUE_WAIT_MAX_MS / 1000,
    ) -> None:
        self.instances = instances
        self.per_instance = per_instance
        self.queue_per_instance = queue_per_instance
        self.wait_max_sec = wait_max_sec
        self.in_use = 0
        self.shed = 0
        """Requests shed since start."""
        self._waiters: deque[asyncio.Future[bool]] = deque()

    @property
    def limit(self) -> int:
        return self.instances * self.per_instance

    @property
    def queue_limit(self) -> int:
        return self.instances * self.queue_per_instance

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> bool:
        """True with a slot held (call :meth:`release`), False when shed."""
        decision = admission(self.in_use, len(self._waiters), self.limit, self.queue_limit)
        if decision is Admission.RUN:
            self.in_use += 1
            return True
        if decision is Admission.SHED:
            self.shed += 1
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self.wait_max_sec, self._give_up, waiter)
        try:
            granted = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # the slot was handed over just as we were cancelled
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()
        if not granted:
            self.shed += 1
        return granted

    def _give_up(self, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():
            waiter.set_result(False)
            self._waiters.remove(waiter)

    def release(self) -> None:
        """Frees a slot: handed to the first waiter, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self.in_use -= 1

    def resize(self, instances: int) -> None:
        self.instances = instances
        while self._waiters and self.in_use < self.limit:
            self.in_use += 1
            self.release()  # hands the new slot to the first waiter
        # when none was waiting, release() took back the slot it was given


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
    """The endpoints of :data:`SERVICE_OF`, each admitted by its service's capacity.

    ``db`` (sync) names the Firestore project; the endpoints write through an async
    client on the same project, made on the serving loop (gRPC's aio channel binds to
    it), so no thread pool sits between a request and Firestore."""

    def __init__(
        self,
        db: firestore.Client,
        redis_url: str,
        *,
        reporter: Reporter | None = None,
        interval_sec: float = LOAD_SANDBOX_METRICS_INTERVAL_SEC,
        revision_reporter: RevisionReporter | None = None,
        per_instance: int = LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE,
        queue_per_instance: int = LOAD_SANDBOX_QUEUE_PER_INSTANCE,
        queue_wait_max_ms: float = LOAD_SANDBOX_QUEUE_WAIT_MAX_MS,
        backend_timeout_sec: float = LOAD_SANDBOX_BACKEND_TIMEOUT_SEC,
        group_commit: bool = True,
    ) -> None:
        self.db = db
        self.redis_url = redis_url
        self.reporter = reporter
        self.interval_sec = interval_sec
        self.backend_timeout_sec = backend_timeout_sec
        self.group_commit = group_commit
        self.services = {
            sid: ServiceSim(
                sid,
                Capacity(
                    t.SCALING_SERVICE_INSTANCES[sid][0],
                    per_instance,
                    queue_per_instance,
                    queue_wait_max_ms / 1000,
                ),
            )
            for sid in sorted(set(SERVICE_OF.values()))
        }
        # Blocking, sized to every service's concurrency (resized with it), bounded wait:
        # a request never fails because the sandbox ran out of its own connections. One
        # retry on a broken connection: after a Redis restart every pooled connection is
        # stale once, and a service should not answer 503 for that.
        self.redis_pool = aioredis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=self.pool_size(),
            timeout=backend_timeout_sec,
            retry=AsyncRetry(NoBackoff(), 1),
            retry_on_error=[redis.exceptions.ConnectionError],
        )
        self.redis: aioredis.Redis = aioredis.Redis(connection_pool=self.redis_pool)
        self._adb: firestore.AsyncClient | None = None
        self._commits: GroupCommit | None = None
        self._shed_body = json.dumps({"error": "over capacity"}).encode()
        self._rng = random.Random()
        # each service's revisions on the local platform: routing, faults, per-revision push
        self.revisions = RevisionRouter(self.redis, db, revision_reporter)
        self.error_pct = 0.0
        self._errors_until: float | None = None

    def pool_size(self) -> int:
        """Redis connections the sandbox may hold: one per request all services may serve
        at once, plus a few for the revision router's refreshes."""
        return sum(s.capacity.limit for s in self.services.values()) + POOL_HEADROOM

    @property
    def adb(self) -> firestore.AsyncClient:
        """The async Firestore client (made on first use, on the serving loop)."""
        if self._adb is None:
            self._adb = firestore.AsyncClient(
                project=self.db.project,
                credentials=credentials_of(self.db),  # the sync client's (anonymous locally)
            )
        return self._adb

    @property
    def commits(self) -> GroupCommit:
        """The Firestore writes' coalescer (one per sandbox, on the serving loop)."""
        if self._commits is None:
            self._commits = GroupCommit(
                self.adb, timeout_sec=self.backend_timeout_sec, coalesce=self.group_commit
            )
        return self._commits

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
            "/notification/send": self.notify,
        }
        for path, handler in handlers.items():
            app.router.add_post(path, self._served(path, handler))
        app.router.add_post("/__resize", self.resize)
        app.router.add_get("/__health", self.health)
        app.router.add_get("/__faults", self.faults)
        app.router.add_post("/__faults", self.faults)
        app.router.add_get("/__group-commit", self.group_commit_stats)
        app.on_startup.append(self._start_reporting)
        app.on_cleanup.append(self._stop)
        return app

    def _served(
        self, path: str, handler: Callable[[str, dict[str, Any]], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        service = self.services[SERVICE_OF[path]]
        capacity = service.capacity

        async def serve(request: web.Request) -> web.Response:
            started = time.monotonic()
            if self._injected_error():
                service.requests += 1
                service.errors += 1
                service.latencies_ms.append((time.monotonic() - started) * 1000)
                return web.json_response({"error": "injected fault"}, status=500)
            # admission first: a shed request costs no parsing, no routing, no backend
            if not await capacity.acquire():
                return self._shed(service)
            transport = request.transport
            if transport is None or transport.is_closing():
                capacity.release()  # the client gave up while this waited: nobody reads it
                return self._shed(service)
            began = time.monotonic()
            served: Served | None = None
            body: Any = None
            try:
                try:
                    body = await request.json()
                except ValueError:
                    return web.json_response({"error": "body must be JSON"}, status=400)
                if not isinstance(body, dict):
                    return web.json_response({"error": "body must be an object"}, status=400)
                run_id = str(body.get("loadRunId") or "untagged")
                served = await self.revisions.route(service.service_id, path, body)
                response = (
                    served.answer if served.answer is not None else await handler(run_id, body)
                )
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
                capacity.release()
            service.busy_sec += time.monotonic() - began
            service.requests += 1
            if response.status >= 500:
                service.errors += 1
            service.latencies_ms.append((time.monotonic() - started) * 1000)
            if served is not None:
                latency_ms = service.latencies_ms[-1]
                self.revisions.done(served, path, body, response.status, latency_ms)
            return response

        return serve

    def _shed(self, service: ServiceSim) -> web.Response:
        """503 with Retry-After and no work done (a 5xx in the service's sample, as Cloud
        Run's metrics count it)."""
        service.requests += 1
        service.errors += 1
        return web.Response(
            body=self._shed_body,
            status=503,
            content_type="application/json",
            headers={"Retry-After": str(LOAD_SANDBOX_SHED_RETRY_AFTER_SEC)},
        )

    def _key(self, run_id: str, *parts: str) -> str:
        return PREFIX + run_id + ":" + ":".join(parts)

    async def _write(self, collection: str, doc: dict[str, Any]) -> None:
        """A new document with a generated id, nobody reading it back: group-committed."""
        await self.commits.set(self.adb.collection(collection).document(new_id()), doc)

    # ---------------------------------------------------------------- endpoints

    async def swipe(self, run_id: str, body: dict[str, Any]) -> web.Response:
        uid = str(body.get("uid"))
        key = self._key(run_id, "rl", uid, str(int(time.time())))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = await pipe.execute()
        if int(count) > LOAD_SANDBOX_SWIPES_PER_USER_PER_SEC:
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
        low, high = LOAD_SANDBOX_AI_DELAY_MS
        await asyncio.sleep(self._rng.uniform(low, high) / 1000)
        key = self._key(run_id, "convo", str(body.get("uid")))
        await self.redis.lpush(key, str(body.get("text"))[:200])
        await self.redis.ltrim(key, 0, 19)
        return web.json_response({"reply": "that sounds lovely"})

    async def notify(self, run_id: str, body: dict[str, Any]) -> web.Response:
        key = self._key(run_id, "notifications", str(body.get("uid")))
        await self.redis.lpush(key, str(body.get("text"))[:200])
        await self.redis.ltrim(key, 0, 49)
        return web.json_response({"queued": True}, status=202)

    # ---------------------------------------------------------------- scaling

    async def resize(self, request: web.Request) -> web.Response:
        body = await request.json()
        service = self.services.get(str(body.get("serviceId")))
        instances = body.get("instances")
        if service is None or not isinstance(instances, int) or instances < 1:
            return web.json_response({"error": "unknown service or bad instances"}, status=400)
        service.capacity.resize(instances)
        self.redis_pool.max_connections = self.pool_size()
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
            {sid: {"instances": s.capacity.instances, "inUse": s.capacity.in_use,
                   "waiting": s.capacity.waiting, "shed": s.capacity.shed}
             for sid, s in self.services.items()}
        )  # fmt: skip

    async def group_commit_stats(self, request: web.Request) -> web.Response:
        stats = self.commits.stats.as_json()
        return web.json_response({"groupCommit": self.group_commit} | stats)

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
        return pushed + await self.revisions.report_once()

    async def _start_reporting(self, app: web.Application) -> None:
        # Open the Firestore channel and a Redis connection before the first request:
        # a cold gRPC channel would otherwise be the first requests' latency.
        await self.adb.collection(SWIPES).document("warmup").get(timeout=30)
        await self.redis.ping()

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.interval_sec)
                await self.report_once()

        app[REPORTING] = asyncio.create_task(loop())

    async def _stop(self, app: web.Application) -> None:
        app[REPORTING].cancel()
        if self._commits is not None:
            await self._commits.drain()
        await self.redis.aclose()
        await self.redis_pool.disconnect()
        if self._adb is not None:
            self._adb.close()  # type: ignore[no-untyped-call]
            self._adb = None


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
    parser.add_argument(
        "--queue-per-instance",
        type=int,
        default=LOAD_SANDBOX_QUEUE_PER_INSTANCE,
        help="requests waiting per simulated instance before it sheds (503 + Retry-After)",
    )
    parser.add_argument(
        "--group-commit",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get(GROUP_COMMIT_ENV, "1").strip().lower() not in ("0", "false", "no"),
        help=f"coalesce concurrent Firestore writes into one commit (default on; "
        f"{GROUP_COMMIT_ENV}=0 turns it off)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help=f"log every request (or {ACCESS_LOG_ENV}=1)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    reporter = None
    if args.functions_url:
        hook = f"http://{args.host}:{args.port}/__resize"
        reporter = functions_reporter(args.functions_url, role_token(project_id(), "ops"), hook)
    revisions = None
    if args.functions_url:
        revisions = revision_reporter(args.functions_url, role_token(project_id(), "ops"))
    sandbox = Sandbox(
        get_db(),
        args.redis_url,
        reporter=reporter,
        revision_reporter=revisions,
        queue_per_instance=args.queue_per_instance,
        group_commit=args.group_commit,
    )
    log.info("group commit %s", "on" if args.group_commit else "off")
    access_log = logging.getLogger("aiohttp.access") if access_log_wanted(args.access_log) else None
    web.run_app(
        sandbox.app(),
        host=args.host,
        port=args.port,
        print=None,
        access_log=access_log,
        loop=_new_loop(),
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed: the sandbox's CPU per request matters, it shares the
    machine with the load generator and the emulator."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - requirements.txt pins it
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


if __name__ == "__main__":
    main()
