"""HTTP targets for the load benchmarks (and the engine's tests).

    python -m bench.targets minimal --port 18080
    python -m bench.targets stalling --port 18081 [--answer-ms 10 --period 10 --stall 1]

``minimal`` answers every request at once with a small JSON body. ``stalling`` answers
in ``answer_ms`` but freezes for ``stall`` seconds once every ``period`` seconds: every
request arriving in the frozen window waits until its end.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web


def minimal_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def stalling_app(answer_ms: float, period_sec: float, stall_sec: float) -> web.Application:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["minimal", "stalling"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answer-ms", type=float, default=10.0)
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--stall", type=float, default=1.0)
    args = parser.parse_args()
    if args.kind == "minimal":
        app = minimal_app()
    else:
        app = stalling_app(args.answer_ms, args.period, args.stall)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
