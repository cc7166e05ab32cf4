"""The sandbox's app: its routes, each service's admission, and the backends' pools.

Every endpoint of :class:`stack.sandbox.endpoints.Endpoints` is served by its registry
service (:data:`SERVICE_OF`): an injected error first (:mod:`stack.sandbox.faults`), then
the service's admission (:mod:`stack.sandbox.capacity`), then the revision that serves
the request (:mod:`stack.sandbox.routing`), then the endpoint. A backend down is 503 with
``Retry-After``, never 500. Samples are pushed every interval
(:mod:`stack.sandbox.reporting`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions
from aiohttp import web
from google.api_core import exceptions as gexc
from google.cloud import firestore
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.driver_info import DriverInfo

from shared import thresholds as t
from shared.redis import cluster_url
from stack.constants import (
    LOAD_SANDBOX_BACKEND_TIMEOUT_SEC,
    LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE,
    LOAD_SANDBOX_METRICS_INTERVAL_SEC,
    LOAD_SANDBOX_QUEUE_PER_INSTANCE,
    LOAD_SANDBOX_QUEUE_WAIT_MAX_MS,
    LOAD_SANDBOX_SHED_RETRY_AFTER_SEC,
)
from stack.group_commit import GroupCommit, new_id
from stack.sandbox.capacity import Capacity, ServiceSim
from stack.sandbox.control import DROPPED, CloudRunStall, ControlPlane
from stack.sandbox.endpoints import SERVICE_OF, SWIPES, Endpoints, Handler
from stack.sandbox.faults import InjectedErrors
from stack.sandbox.reporting import Reporter, push_service_samples
from stack.sandbox.routing import RevisionReporter, RevisionRouter, Served
from stack.sandbox.sli import SandboxSli
from stack.sandbox.workers import WorkerSlot
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

DRIVER = DriverInfo(name="redis-py", lib_version=redis.__version__)
"""What each Redis connection tells the server (``CLIENT SETINFO``), as redis-py does."""

REPORTING = web.AppKey("reporting", asyncio.Task[None])


class Sandbox:
    """The endpoints of :data:`SERVICE_OF`, each admitted by its service's capacity.

    ``db`` (sync) names the Firestore project; the endpoints write through an async
    client on the same project, made on the serving loop (gRPC's aio channel binds to
    it), so no thread pool sits between a request and Firestore.

    ``worker``: this process is one of several serving the port (:mod:`.workers`): it
    holds its portion of each service's slots, and its control routes answer for all
    (:mod:`.control`). None: the only process, as ever."""

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
        worker: WorkerSlot | None = None,
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
                    share=(worker.index, worker.count) if worker else (0, 1),
                ),
            )
            for sid in sorted(set(SERVICE_OF.values()))
        }
        self._pool, self.redis = _redis_client(redis_url, self.pool_size(), backend_timeout_sec)
        self._adb: firestore.AsyncClient | None = None
        self._commits: GroupCommit | None = None
        self._rng = random.Random()
        # each service's revisions on the local platform: routing, faults, per-revision push
        self.revisions = RevisionRouter(self.redis, db, revision_reporter)
        self.injected = InjectedErrors(self._rng)
        self.cloud_run = CloudRunStall()  # the cloudrun-slow fault: resizes held
        self.endpoints = Endpoints(self.redis, self._write, self._rng)
        self.sli = SandboxSli()  # the answers for the error budgets (reporting loop)
        self.control = ControlPlane(self, worker) if worker is not None else None

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
        handlers = self.endpoints.handlers()
        for path, handler in handlers.items():
            app.router.add_post(path, self.sli.recorded(path, self._served(path, handler)))
        if self.control is not None:
            self.control.add_routes(app)  # answering for every worker
        else:
            app.router.add_post("/__resize", self.resize)
            app.router.add_get("/__health", self.health)
            app.router.add_get("/__faults", self.injected.handle)
            app.router.add_post("/__faults", self.injected.handle)
            app.router.add_get("/__cloudrun", self.cloud_run.handle)
            app.router.add_post("/__cloudrun", self.cloud_run.handle)
            app.router.add_get("/__group-commit", self.group_commit_stats)
        app.on_startup.append(self._start_reporting)
        app.on_cleanup.append(self._stop)
        return app

    def _served(
        self, path: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        service = self.services[SERVICE_OF[path]]
        capacity = service.capacity

        async def serve(request: web.Request) -> web.Response:
            started = time.monotonic()
            if self.injected.draw():
                service.requests += 1
                service.errors += 1
                service.latencies_ms.append((time.monotonic() - started) * 1000)
                return web.json_response({"error": "injected fault"}, status=500)
            # admission first: a shed request costs no parsing, no routing, no backend
            if not await capacity.acquire():
                return shed(service)
            transport = request.transport
            if transport is None or transport.is_closing():
                capacity.release()  # the client gave up while this waited: nobody reads it
                return shed(service)
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

    async def _write(self, collection: str, doc: dict[str, Any]) -> None:
        """A new document with a generated id, nobody reading it back: group-committed."""
        await self.commits.set(self.adb.collection(collection).document(new_id()), doc)

    # ---------------------------------------------------------------- scaling

    async def resize(self, request: web.Request) -> web.Response:
        body = await request.json()
        service = self.services.get(str(body.get("serviceId")))
        instances = body.get("instances")
        if service is None or not isinstance(instances, int) or instances < 1:
            return web.json_response({"error": "unknown service or bad instances"}, status=400)
        if not await self.cloud_run.hold(request):
            return web.json_response(DROPPED, status=504)
        self.apply_resize(service.service_id, instances)
        return web.json_response({"serviceId": service.service_id, "instances": instances})

    def apply_resize(self, service_id: str, instances: int) -> None:
        """``instances`` of the service (this process's portion of their slots)."""
        self.services[service_id].capacity.resize(instances)
        _resize_redis_pool(self._pool, self.redis, self.pool_size())
        log.info("resized %s to %d instances", service_id, instances)

    @property
    def redis_pool(self) -> aioredis.BlockingConnectionPool:
        """The Redis connection pool (one Redis; a cluster has one per node)."""
        if self._pool is None:
            raise AttributeError("the sandbox is on a Redis Cluster: a pool per node")
        return self._pool

    def local_health(self) -> dict[str, dict[str, int]]:
        """Each service's instances, and this process's requests in use, waiting, shed."""
        return {sid: {"instances": s.capacity.instances, "inUse": s.capacity.in_use,
                      "waiting": s.capacity.waiting, "shed": s.capacity.shed}
                for sid, s in self.services.items()}  # fmt: skip

    def take_samples(self) -> dict[str, dict[str, Any]]:
        """Each service's counts in this process since the last take (reset)."""
        return {sid: s.take() for sid, s in self.services.items()}

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(self.local_health())

    async def group_commit_stats(self, request: web.Request) -> web.Response:
        stats = self.commits.stats.as_json()
        return web.json_response({"groupCommit": self.group_commit} | stats)

    async def report_once(self) -> int:
        """Push one sample per active service and revision; how many were pushed. With
        several workers worker 0 pushes the services' merged samples, and each worker its
        revisions' (the push path sums them)."""
        if self.control is not None:
            pushed = await self.control.push_merged_samples(self.reporter)
        else:
            pushed = await push_service_samples(
                self.services.values(), self.interval_sec, self.reporter
            )
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
                await self.sli.flush(self.redis)

        app[REPORTING] = asyncio.create_task(loop())

    async def _stop(self, app: web.Application) -> None:
        app[REPORTING].cancel()
        if self._commits is not None:
            await self._commits.drain()
        await self.redis.aclose()
        if self._pool is not None:
            await self._pool.disconnect()
        if self._adb is not None:
            self._adb.close()  # type: ignore[no-untyped-call]
            self._adb = None


def _redis_client(
    redis_url: str, pool_size: int, timeout_sec: float
) -> tuple[aioredis.BlockingConnectionPool | None, aioredis.Redis]:
    """The sandbox's Redis client, and its pool (None on a Redis Cluster).

    Blocking, sized to every service's concurrency (resized with it), bounded wait: a
    request never fails because the sandbox ran out of its own connections. One retry on
    a broken connection: after a Redis restart every pooled connection is stale once,
    and a service should not answer 503 for that. The driver's name and version are
    given (:data:`DRIVER`): else each new connection reads the package's metadata from
    disk (about 1.5 ms of CPU, hundreds of connections as the pool grows)."""
    plain = cluster_url(redis_url)
    if plain is None:
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=pool_size,
            timeout=timeout_sec,
            retry=AsyncRetry(NoBackoff(), 1),
            retry_on_error=[redis.exceptions.ConnectionError],
            driver_info=DRIVER,
        )
        return pool, aioredis.Redis(connection_pool=pool)
    # A Redis Cluster (``redis+cluster://``): a pool per node, each as large as the one
    # pool above (every key of an endpoint's command or transaction is one).
    cluster = aioredis.RedisCluster.from_url(
        plain,
        max_connections=pool_size,
        retry=AsyncRetry(NoBackoff(), 1),
        retry_on_error=[redis.exceptions.ConnectionError],
        driver_info=DRIVER,
    )
    return None, cast(aioredis.Redis, cluster)


def _resize_redis_pool(
    pool: aioredis.BlockingConnectionPool | None, client: aioredis.Redis, size: int
) -> None:
    if pool is not None:
        pool.max_connections = size
        return
    for node in cast(aioredis.RedisCluster, client).get_nodes():
        node.max_connections = size


SHED_BODY = json.dumps({"error": "over capacity"}).encode()


def shed(service: ServiceSim) -> web.Response:
    """503 with Retry-After and no work done (a 5xx in the service's sample, as Cloud
    Run's metrics count it)."""
    service.requests += 1
    service.errors += 1
    return web.Response(
        body=SHED_BODY,
        status=503,
        content_type="application/json",
        headers={"Retry-After": str(LOAD_SANDBOX_SHED_RETRY_AFTER_SEC)},
    )
