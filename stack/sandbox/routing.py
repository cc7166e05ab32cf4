"""The sandbox's revisions: which revision serves each request, and what its faults do.

:class:`RevisionRouter` picks the revision that serves each request by the local traffic
split's shares (:mod:`stack.revisions`), applies that revision's faults to that request
only, counts requests, 5xx and latency per revision and pushes them (through a
:data:`RevisionReporter`, :func:`stack.sandbox.reporting.revision_reporter`) to
``pack391_reportRevisionMetrics`` (what :class:`PushedRevisionMetrics` gives the canary
judge), and records the business events :class:`BusinessMetrics` counts (``payouts``,
``token_transactions``, each naming its ``revision``) for services that have more than one
revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import redis
import redis.asyncio as aioredis
from aiohttp import web
from google.cloud import firestore

from shared import collections
from stack.revisions import (
    NO_FAULTS,
    LocalRevisions,
    RevisionFaults,
    percentile_95,
    pick,
    split_key,
)

log = logging.getLogger("pack391.revisions")

ROUTE_REFRESH_SEC = 1.0
"""How old the router's view of a service's split and faults may get."""
ROUTE_REFRESH_TIMEOUT_SEC = 0.25
"""A refresh waits this long for Redis; then the request is routed on the old view."""
EVENT_BATCH_COUNT = 500
"""Business events per Firestore batch (Firestore's limit per commit)."""
EVENT_BUFFER_MAX_COUNT = 50_000
"""Events kept while Firestore does not take them; older ones are dropped beyond this."""
P95_MAX_MS = 600_000.0
"""A pushed p95 is capped here (the report's validation bound)."""


RevisionReporter = Callable[[dict[str, Any]], Awaitable[None]]
"""Pushes one revision's sample ``{revision, requests, errors, p95LatencyMs}``."""


@dataclass
class _View:
    split: dict[str, int] = field(default_factory=dict)
    faults: dict[str, RevisionFaults] = field(default_factory=dict)
    fetched_at: float = float("-inf")
    loaded: bool = False
    refreshing: asyncio.Event | None = None
    """Set while one request refreshes the view (set when it is done)."""

    @property
    def events(self) -> bool:
        """Business events are recorded once a service has a second revision."""
        return len(self.faults) > 1


@dataclass
class _Counts:
    requests: int = 0
    errors: int = 0


LATENCY_WINDOW_SEC: Final = 60.0
"""A revision's pushed p95 is over its requests of this trailing window, not of one push
interval: Cloud Monitoring's p95 is over a minute's distribution, and a 10-second p95 of
a low-traffic canary (under 20 requests) is its maximum, which the minute's bucket then
keeps: a good canary at 5 % looked far slower than stable and was rolled back."""


@dataclass
class _Latencies:
    """One revision's latencies of the trailing :data:`LATENCY_WINDOW_SEC`."""

    window: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, now: float, latency_ms: float) -> None:
        self.window.append((now, latency_ms))

    def p95(self, now: float) -> float | None:
        while self.window and self.window[0][0] < now - LATENCY_WINDOW_SEC:
            self.window.popleft()
        return percentile_95([ms for _, ms in self.window]) if self.window else None


@dataclass(frozen=True)
class Served:
    """Which revision serves one request, and what it does to it."""

    service: str
    revision: str | None
    faults: RevisionFaults = NO_FAULTS
    events: bool = False
    answer: web.Response | None = None
    """Set when a fault answers instead of the endpoint (the handler must not run)."""
    asked_tokens: int | None = None
    """``/chat/message``: the tokens the client asked to spend (before a mismatch)."""


class RevisionRouter:
    """Routes the sandbox's requests between each service's revisions (see module doc)."""

    def __init__(
        self,
        client: aioredis.Redis,
        db: firestore.Client | None,
        reporter: RevisionReporter | None = None,
        *,
        rng: random.Random | None = None,
        refresh_sec: float = ROUTE_REFRESH_SEC,
    ) -> None:
        self._redis = client
        self._db = db
        self._reporter = reporter
        self._rng = rng or random.Random()
        self._refresh_sec = refresh_sec
        self._views: dict[str, _View] = {}
        self._counts: dict[str, _Counts] = {}
        self._latencies: dict[str, _Latencies] = {}
        self._events: list[tuple[str, dict[str, Any]]] = []

    # ---------------------------------------------------------------- view

    async def _fetch(self, service: str) -> tuple[dict[str, int], dict[str, RevisionFaults]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(split_key(service), "split")
            pipe.hgetall(LocalRevisions.key(service))
            raw_split, raw_faults = await pipe.execute()
        split = {str(k): int(v) for k, v in json.loads(raw_split or "{}").items()}
        faults = {
            (k.decode() if isinstance(k, bytes) else str(k)): RevisionFaults.from_json(v)
            for k, v in (raw_faults or {}).items()
        }
        return split, faults

    async def view(self, service: str) -> _View:
        """The service's split and faults, at most ``refresh_sec`` old when Redis answers
        within :data:`ROUTE_REFRESH_TIMEOUT_SEC`. One request refreshes; the others use the
        view they have, except before the first load, when they wait for it (as long)."""
        view = self._views.setdefault(service, _View())
        now = time.monotonic()
        if now - view.fetched_at < self._refresh_sec:
            return view
        if view.refreshing is not None:
            if not view.loaded:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(view.refreshing.wait(), ROUTE_REFRESH_TIMEOUT_SEC)
            return view
        done = view.refreshing = asyncio.Event()
        try:
            split, faults = await asyncio.wait_for(self._fetch(service), ROUTE_REFRESH_TIMEOUT_SEC)
            view.split, view.faults, view.loaded = split, faults, True
        except (TimeoutError, redis.exceptions.RedisError, ValueError) as exc:
            log.debug("revisions of %s not refreshed: %s", service, exc)
        finally:
            view.fetched_at, view.refreshing = now, None
            done.set()
        return view

    # ---------------------------------------------------------------- hooks

    async def route(self, service: str, path: str, body: dict[str, Any]) -> Served:
        """Before the endpoint: pick the revision and apply its faults (latency waited here;
        ``answer`` set when the request fails by the revision's fault; ``body`` changed
        when the revision debits a wrong amount)."""
        view = await self.view(service)
        rev = pick(view.split, self._rng.random() * 100)
        if rev is None:
            return Served(service, None)
        faults = view.faults.get(rev, NO_FAULTS)
        served = Served(service, rev, faults, view.events)
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.error_pct and self._rng.random() * 100 < faults.error_pct:
            answer = web.json_response({"error": "revision fault", "revision": rev}, status=500)
            return Served(service, rev, faults, view.events, answer=answer)
        if path == "/payout/request" and faults.fail_payouts:
            self._payout(served, body, failed=True)
            answer = web.json_response({"error": "payout failed", "revision": rev}, status=500)
            return Served(service, rev, faults, view.events, answer=answer)
        if path == "/chat/message":
            asked = int(body.get("tokens") or 1)
            if faults.token_mismatch:
                body["tokens"] = asked + 1
            return Served(service, rev, faults, view.events, asked_tokens=asked)
        return served

    def done(
        self, served: Served, path: str, body: dict[str, Any], status: int, latency_ms: float
    ) -> None:
        """After the endpoint (or the fault's answer): count the request for its revision
        and record its business event."""
        if served.revision is None:
            return
        counts = self._counts.setdefault(served.revision, _Counts())
        counts.requests += 1
        counts.errors += status >= 500
        self._latencies.setdefault(served.revision, _Latencies()).add(time.monotonic(), latency_ms)
        if served.answer is not None or status >= 300:
            return
        if path == "/payout/request":
            self._payout(served, body, failed=False)
        elif path == "/chat/message" and served.asked_tokens is not None:
            self._ledger(served, body)

    def _payout(self, served: Served, body: dict[str, Any], failed: bool) -> None:
        if not served.events:
            return
        self._event(
            collections.PAYOUTS,
            {
                "uid": str(body.get("uid")),
                "amount": float(body.get("amountTokens") or 0),
                "status": "failed" if failed else "paid",
                "createdAt": datetime.now(UTC),
                collections.BUSINESS_REVISION_FIELD: served.revision,
                "anomaly": failed,
                "loadRunId": str(body.get("loadRunId") or "untagged"),
            },
        )

    def _ledger(self, served: Served, body: dict[str, Any]) -> None:
        if not served.events:
            return
        debited = int(body.get("tokens") or 1)
        self._event(
            collections.TOKEN_TRANSACTIONS,
            {
                "uid": str(body.get("uid")),
                "amount": -debited,
                "expectedAmount": -(served.asked_tokens or debited),
                "at": datetime.now(UTC),
                collections.BUSINESS_REVISION_FIELD: served.revision,
                "mismatch": debited != served.asked_tokens,
                "loadRunId": str(body.get("loadRunId") or "untagged"),
            },
        )

    def _event(self, collection: str, doc: dict[str, Any]) -> None:
        self._events.append((collection, doc))
        if len(self._events) > EVENT_BUFFER_MAX_COUNT:
            del self._events[: len(self._events) - EVENT_BUFFER_MAX_COUNT]

    # ------------------------------------------------------------- reporting

    def samples(self) -> list[dict[str, Any]]:
        """Each revision's sample since the last call (and the counters reset)."""
        out = []
        now = time.monotonic()
        for rev, counts in sorted(self._counts.items()):
            if not counts.requests:
                continue
            p95 = self._latencies[rev].p95(now) or 0.0
            out.append(
                {
                    "revision": rev,
                    "requests": counts.requests,
                    "errors": counts.errors,
                    "p95LatencyMs": round(min(P95_MAX_MS, p95), 3),
                }
            )
        self._counts.clear()
        return out

    async def flush_events(self) -> int:
        """Write the buffered business events (batches of 500); how many were written."""
        if self._db is None or not self._events:
            return 0
        events, self._events = self._events, []
        db = self._db
        written = 0
        for start in range(0, len(events), EVENT_BATCH_COUNT):
            chunk = events[start : start + EVENT_BATCH_COUNT]

            def commit(chunk: list[tuple[str, dict[str, Any]]] = chunk) -> None:
                batch = db.batch()
                for name, doc in chunk:
                    batch.set(db.collection(name).document(), doc)
                batch.commit()

            try:
                await asyncio.to_thread(commit)
                written += len(chunk)
            except Exception:
                log.exception("business events not written (%d dropped)", len(chunk))
        return written

    async def report_once(self) -> int:
        """Push every revision's sample and write the business events; samples pushed."""
        pushed = 0
        for sample in self.samples():
            if self._reporter is None:
                break
            try:
                await self._reporter(sample)
                pushed += 1
            except Exception:
                log.exception("revision metrics push for %s failed", sample["revision"])
        await self.flush_events()
        return pushed
