"""The sandbox's answers as SLI events, as the app's real callables record theirs
(``@rate_limited``, :mod:`shared.slo.recorder`): every answer of an endpoint counts in
``platform``, ``callable:{the load engine's name}`` and ``class:{its class}``; a 5xx (an
injected fault, a shed request, a backend down) is the system's failure. The counts are
written by the sandbox's reporting loop with its asyncio Redis client."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import redis.exceptions
from aiohttp import web

from shared.clock import utc_now
from shared.slo.recorder import SliRecorder, configured_objectives, queue_flush
from stack.sandbox.endpoints import sli_scopes

log = logging.getLogger("pack391.sandbox")

Serve = Callable[[web.Request], Awaitable[web.Response]]


class SandboxSli:
    def __init__(self) -> None:
        # never flushes itself: :meth:`flush` writes with the sandbox's own client
        self.recorder = SliRecorder(None, configured_objectives, flush_every_sec=math.inf)

    def recorded(self, path: str, answer: Serve) -> Serve:
        """``answer`` with each of its answers recorded."""
        scopes = sli_scopes(path)

        async def serve(request: web.Request) -> web.Response:
            started = time.monotonic()
            response = await answer(request)
            latency_ms = (time.monotonic() - started) * 1000
            self.recorder.record(utc_now(), scopes, response.status >= 500, latency_ms)
            return response

        return serve

    async def flush(self, client: aioredis.Redis | aioredis.RedisCluster) -> None:
        """Add the recorded answers to Redis (kept for the next flush when it does not
        answer)."""
        drained = self.recorder.drain()
        if not drained:
            return
        try:
            pipe = client.pipeline(transaction=False)
            queue_flush(pipe, drained)
            await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("sandbox: recorded answers kept for the next flush: %r", exc)
            self.recorder.keep(drained)
