"""The ``sandbox-errors`` fault: a share of the endpoints' requests answered 500, until
its ttl runs out or the share is set back to 0 (``GET``/``POST /__faults``).

The ttl is kept as a deadline on the machine's monotonic clock, which every process
shares: with several workers (:mod:`stack.sandbox.workers`) the same ``(errorPct,
until)`` is set in each, and each expires it at the same instant."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from aiohttp import web

log = logging.getLogger("pack391.sandbox")


class FaultRequestError(ValueError):
    """A ``POST /__faults`` body that is not ``{"errorPct": 0-100, "ttlSec": > 0}``."""


def parse_fault(body: Any) -> tuple[float, float | None]:
    """``(errorPct, until)`` of a ``POST /__faults`` body: ``until`` is the monotonic
    deadline (None: until set back to 0). :class:`FaultRequestError` when malformed."""
    try:
        pct = float(body.get("errorPct", 0))
        ttl = body.get("ttlSec")
        ttl_sec = float(ttl) if ttl is not None else None
    except (ValueError, TypeError, AttributeError) as exc:
        raise FaultRequestError("give errorPct (0-100), ttlSec") from exc
    if not 0 <= pct <= 100 or (ttl_sec is not None and ttl_sec <= 0):
        raise FaultRequestError("errorPct 0-100, ttlSec > 0")
    return pct, (time.monotonic() + ttl_sec if pct and ttl_sec else None)


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

    def set(self, pct: float, until: float | None) -> None:
        """Answer ``pct`` % of requests with 500 until the monotonic ``until`` (None: until
        set back to 0)."""
        self.error_pct = pct
        self._errors_until = until if pct else None
        ttl_sec = round(until - time.monotonic(), 3) if until is not None else None
        log.warning("injected errors: %.0f%% of requests (ttl %s s)", pct, ttl_sec)

    def state(self) -> dict[str, Any]:
        """``{"errorPct", "ttlSec"}`` as ``GET /__faults`` answers (expired first), with
        ``until``, the deadline every worker shares."""
        self.draw()  # expire
        until = self._errors_until
        ttl_left = round(until - time.monotonic(), 3) if until else None
        return {"errorPct": self.error_pct, "ttlSec": ttl_left, "until": until}

    async def handle(self, request: web.Request) -> web.Response:
        """``GET``: the injected error share; ``POST {"errorPct", "ttlSec"}``: set it."""
        if request.method == "POST":
            try:
                self.set(*parse_fault(await request_json(request)))
            except FaultRequestError as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(public(self.state()))


async def request_json(request: web.Request) -> Any:
    """The request's JSON body (:class:`FaultRequestError` when it is not JSON)."""
    try:
        return await request.json()
    except ValueError as exc:
        raise FaultRequestError("give errorPct (0-100), ttlSec") from exc


def public(state: dict[str, Any]) -> dict[str, Any]:
    """What ``/__faults`` answers: ``errorPct`` and ``ttlSec`` (not the deadline)."""
    return {"errorPct": state["errorPct"], "ttlSec": state["ttlSec"]}
