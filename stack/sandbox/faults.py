"""The ``sandbox-errors`` fault: a share of the endpoints' requests answered 500, until
its ttl runs out or the share is set back to 0 (``GET``/``POST /__faults``)."""

from __future__ import annotations

import logging
import random
import time

from aiohttp import web

log = logging.getLogger("pack391.sandbox")


class InjectedErrors:
    """The share of requests to answer 500 (``error_pct``), and until when."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.error_pct = 0.0
        self._errors_until: float | None = None

    def draw(self) -> bool:
        """This request is to answer 500 (expiring the fault when its ttl ran out)."""
        if not self.error_pct:
            return False
        if self._errors_until is not None and time.monotonic() >= self._errors_until:
            log.info("injected errors (%.0f%%) expired", self.error_pct)
            self.error_pct, self._errors_until = 0.0, None
            return False
        return self._rng.random() * 100 < self.error_pct

    async def handle(self, request: web.Request) -> web.Response:
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
        self.draw()  # expire
        ttl_left = round(self._errors_until - time.monotonic(), 3) if self._errors_until else None
        return web.json_response({"errorPct": self.error_pct, "ttlSec": ttl_left})
