"""Serve an aiohttp application on a free loopback port from a background thread
(the load sandbox inside the CLI and tests, the benchmarks' targets)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web


@contextmanager
def served_aiohttp(app: web.Application, port: int = 0) -> Iterator[str]:
    """The app's base URL while the block runs; the server stops after it."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()
    bound: list[int] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        server: Any = site._server
        bound.append(server.sockets[0].getsockname()[1])

    failed: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # reported to the caller below
            failed.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(10) or failed:
        raise RuntimeError(f"aiohttp app did not start: {failed}")
    try:
        yield f"http://127.0.0.1:{bound[0]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
