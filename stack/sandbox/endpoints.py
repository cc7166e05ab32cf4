"""The app's endpoints, each doing to the backends what the app's real one does."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from shared.collections import LOAD_SANDBOX_COLLECTIONS
from stack.constants import LOAD_SANDBOX_AI_DELAY_MS, LOAD_SANDBOX_SWIPES_PER_USER_PER_SEC

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

CLASS_OF: dict[str, str] = {
    "/swipe": "swipe",
    "/discovery/feed": "swipe",
    "/chat/message": "general",
    "/wallet/balance": "wallet",
    "/payout/request": "payment",
    "/call/start": "general",
    "/call/heartbeat": "general",
    "/event/purchase": "payment",
    "/ai/message": "ai",
    "/notification/send": "general",
}
"""Endpoint path -> the endpoint class the app's real callable is rate-limited as (what
the SLI recorder counts it under, as ``@rate_limited(CLASS)`` records the real one)."""


def sli_scopes(path: str) -> tuple[str, str]:
    """The SLO scopes a sandbox answer counts in besides the platform: the endpoint, by
    the load engine's name for it (what ``loadtest --from-metrics`` plays), and its
    class."""
    from functions.load.scenarios import ENDPOINTS

    names = {e.path: e.name for e in ENDPOINTS.values()}
    name = names.get(path, path.strip("/").replace("/", "_"))
    return (f"callable:{name}", f"class:{CLASS_OF[path]}")


Handler = Callable[[str, dict[str, Any]], Awaitable[web.Response]]
"""An endpoint: the request's ``loadRunId`` and JSON body -> the answer."""
Writer = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Writes a new document (collection, fields), nobody reading it back."""


class Endpoints:
    """The endpoints of :data:`SERVICE_OF`: Redis through ``redis``, new Firestore
    documents through ``write`` (the sandbox's group commit)."""

    def __init__(self, redis: aioredis.Redis, write: Writer, rng: random.Random) -> None:
        self.redis = redis
        self._write = write
        self._rng = rng

    def handlers(self) -> dict[str, Handler]:
        """Endpoint path -> its handler."""
        return {
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

    def _key(self, run_id: str, *parts: str) -> str:
        return PREFIX + run_id + ":" + ":".join(parts)

    async def swipe(self, run_id: str, body: dict[str, Any]) -> web.Response:
        uid = str(body.get("uid"))
        key = self._key(run_id, "rl", uid, str(int(time.time())))
        # one round trip, no MULTI/EXEC: a fixed window's count needs no transaction
        async with self.redis.pipeline(transaction=False) as pipe:
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
