"""Load-test fixtures: the sandbox on a free port, and a stalling target."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from shared.firestore import get_db
from stack.aioserve import served_aiohttp
from stack.sandbox import Sandbox
from tests.conftest import Backends


@pytest.fixture
def sandbox_url(backends: Backends) -> Iterator[str]:
    with served_aiohttp(Sandbox(get_db(), backends.redis_url).app()) as url:
        yield url


def stalling_app(answer_ms: float, period_sec: float, stall_sec: float) -> web.Application:
    """Answers in ``answer_ms``, but freezes for ``stall_sec`` once every ``period_sec``
    (every request arriving in the frozen window waits for its end)."""
    started = time.monotonic()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        phase = (time.monotonic() - started) % period_sec
        if phase >= period_sec - stall_sec:
            await asyncio.sleep(period_sec - phase)
        await asyncio.sleep(answer_ms / 1000)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
def stalling_url() -> Iterator[str]:
    with served_aiohttp(stalling_app(answer_ms=10, period_sec=2.0, stall_sec=0.5)) as url:
        yield url
