"""The load of one chaos scenario, open model, every request recorded as a
:class:`stack.chaos_check.Call`."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from functions.load.scenarios import ENDPOINTS, MIXES, pick_endpoint
from stack import chaos_check as cc
from stack.chaos.config import RATE_CLASSES, ChaosConfig
from stack.platform.handle import StackHandle
from stack.platform.scheduler import scheduler_headers
from stack.platform.tokens import emulator_id_token, role_token

# ------------------------------------------------------------------ the load


def now() -> float:
    return time.time()


class Recorder:
    """Makes the requests of one scenario and records each as a :class:`chaos_check.Call`."""

    def __init__(self, handle: StackHandle, config: ChaosConfig, run_id: str) -> None:
        self.h = handle
        self.config = config
        self.run_id = run_id
        self.history: list[cc.Call] = []
        self.swipe_dropped = 0
        self.swipe_scheduled = 0
        self._in_flight_swipes = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rng = random.Random(run_id)
        self.admin_token = role_token(handle.project, "admin", "chaos-admin")

    def url(self, name: str) -> str:
        return f"{self.h.functions_url.rstrip('/')}/{self.h.project}/{self.h.region}/{name}"

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()

    async def call(
        self,
        session: aiohttp.ClientSession,
        op: str,
        cls: str,
        name: str,
        data: Any,
        token: str,
        uid: str | None = None,
        keep: Sequence[str] = (),
    ) -> cc.Call:
        """One callable request, recorded."""
        start = now()
        http: int | None = None
        error = reason = None
        retry: float | None = None
        result: dict[str, Any] = {}
        body: Any = None
        try:
            async with session.post(
                self.url(name),
                json={"data": data},
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_sec),
            ) as response:
                http = response.status
                try:
                    body = await response.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    body = None
        except TimeoutError:
            error, body = "timeout", None
        except aiohttp.ClientError:
            error, body = "connection", None
        if error is None:
            error, reason, retry, result = cc.callable_answer(body, keep)
        recorded = cc.Call(op, cls, start, now(), http, error, reason, retry, result, uid, name)
        self.history.append(recorded)
        return recorded

    async def job(self, session: aiohttp.ClientSession, name: str, timeout: float) -> cc.Call:
        """Run a scheduled function now, as Cloud Scheduler does; recorded."""
        start = now()
        http: int | None = None
        error = None
        try:
            async with session.post(
                self.url(name),
                data=b"{}",
                headers=scheduler_headers(name, self.h.region, datetime.now(UTC)),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                http = response.status
                await response.read()
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError:
            error = "connection"
        recorded = cc.Call("job", name, start, now(), http, error, function=name)
        self.history.append(recorded)
        return recorded

    async def swipe(self, session: aiohttp.ClientSession, index: int) -> None:
        name = pick_endpoint(MIXES["swipe_load"], index)
        endpoint = ENDPOINTS[name]
        body = endpoint.payload(self._rng, self.run_id, index) | {"loadRunId": self.run_id}
        start = now()
        http: int | None = None
        error = None
        self._in_flight_swipes += 1
        try:
            async with session.request(
                endpoint.method,
                self.h.sandbox_url.rstrip("/") + endpoint.path,
                json=body,
                timeout=aiohttp.ClientTimeout(total=self.config.swipe_timeout_sec),
            ) as response:
                http = response.status
                await response.read()
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError:
            error = "connection"
        finally:
            self._in_flight_swipes -= 1
        self.history.append(cc.Call("swipe", name, start, now(), http, error))

    # ------------------------------------------------------------ generators

    async def open_model(self, rate: float, until: float, fire: Any) -> None:
        """Start ``fire(index)`` at ``rate`` per second until ``until`` (wall clock),
        on schedule whatever the target does."""
        if rate <= 0:
            return
        t0 = now()
        index = 0
        while True:
            due = t0 + index / rate
            if due >= until:
                return
            delay = due - now()
            if delay > 0:
                await asyncio.sleep(delay)
            fire(index)
            index += 1

    async def load(self, session: aiohttp.ClientSession, country: str, until: float) -> None:
        user_tokens = {
            i: emulator_id_token(self.h.project, f"chaos-{self.run_id}-rl{i}", {})
            for i in range(20)
        }

        def fire_swipe(i: int) -> None:
            self.swipe_scheduled += 1
            if self._in_flight_swipes >= self.config.swipe_max_in_flight:
                self.swipe_dropped += 1
                return
            self.spawn(self.swipe(session, i))

        def fire_rate(i: int) -> None:
            cls = RATE_CLASSES[i % len(RATE_CLASSES)]
            self.spawn(
                self.call(
                    session, "ratelimit", cls, "pack391_checkRateLimit", {"endpointClass": cls},
                    user_tokens[i % len(user_tokens)], keep=("allowed", "limit", "remaining"),
                )
            )  # fmt: skip

        def fire_wallet(i: int) -> None:
            self.spawn(
                self.call(
                    session, "wallet", "wallet", "pack391_walletBruteForceShield",
                    {"attempt": "success"}, user_tokens[i % len(user_tokens)],
                    keep=("blocked", "attemptsLeft"),
                )
            )  # fmt: skip

        def fire_signup(i: int) -> None:
            uid = f"chaos-{self.run_id}-{country}-s{i}"
            token = emulator_id_token(self.h.project, uid, {"email_verified": True})
            self.spawn(
                self.call(
                    session, "signup", country, "pack391_checkMarketAccess",
                    {"country": country, "signup": True}, token, uid=uid,
                    keep=("signupAdmitted", "currentUsers", "trafficLimit"),
                )
            )  # fmt: skip

        await asyncio.gather(
            self.open_model(self.config.swipe_rps, until, fire_swipe),
            self.open_model(self.config.ratelimit_rps, until, fire_rate),
            self.open_model(self.config.wallet_rps, until, fire_wallet),
            self.open_model(self.config.signup_rps, until, fire_signup),
        )
