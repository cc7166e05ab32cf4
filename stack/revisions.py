"""Local revisions: what ``firebase deploy`` and Cloud Run do for the sandbox's services.

Each service of the scaling registry has revisions on the local platform
(:class:`functions.deploy_guard.local.LocalTraffic`: the latest revision and the
traffic split in Redis, which the deploy guard reads and writes). This module adds what
a revision *is* locally: its faults, kept beside the split in
``pack391:local:revisions:{service}`` (revision -> JSON :class:`RevisionFaults`).

- :class:`LocalRevisions` (sync; the CLI and :mod:`stack.world`): deploy a revision with
  faults (``pack391 deploy revision``), give a fresh service its first revision.
- :class:`RevisionRouter` (async; the sandbox): picks the revision that serves each
  request by the split's shares, applies that revision's faults to that request only,
  counts requests, 5xx and latency per revision and pushes them to
  ``pack391_reportRevisionMetrics`` (what :class:`PushedRevisionMetrics` gives the canary
  judge), and records the business events :class:`BusinessMetrics` counts (``payouts``,
  ``token_transactions``, each naming its ``revision``) for services that have more than
  one revision.

Faults of a revision: ``errorPct`` (that share of its requests answer 500),
``latencyMs`` (added to each of its requests), ``failPayouts`` (its ``/payout/request``
fails: 500, a ``failed`` payout with ``anomaly: true``), ``tokenMismatch`` (its
``/chat/message`` debits one token more than asked and records ``mismatch: true``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, cast

import redis
import redis.asyncio as aioredis
from aiohttp import ClientSession, ClientTimeout, web
from google.cloud import firestore

from functions.deploy_guard.local import LocalTraffic
from functions.scaling.api import PREFIX as PLATFORM_PREFIX
from shared import collections
from shared import thresholds as t

log = logging.getLogger("pack391.revisions")

REVISIONS_PREFIX = "pack391:local:revisions:"
"""``REVISIONS_PREFIX + service``: hash revision -> JSON faults."""

FIRST_REVISION_NUMBER = 1
REVISION_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
"""A Cloud Run revision name: lowercase letters, digits and hyphens, 63 at most."""

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

SERVICES: tuple[str, ...] = tuple(t.SCALING_SERVICE_INSTANCES)
"""The scaling registry's services: every one has revisions on the local platform."""


def split_key(service: str) -> str:
    """The hash :class:`LocalTraffic` keeps a service's split in (read here without it:
    the router's client is async)."""
    return f"{PLATFORM_PREFIX}:deploy:svc:{service}"


# ------------------------------------------------------------------- pure


@dataclass(frozen=True)
class RevisionFaults:
    """What a revision does wrong (nothing, by default)."""

    error_pct: float = 0.0
    latency_ms: float = 0.0
    fail_payouts: bool = False
    token_mismatch: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.error_pct <= 100:
            raise ValueError(f"errorPct must be 0-100: {self.error_pct}")
        if not 0 <= self.latency_ms <= 60_000:
            raise ValueError(f"latencyMs must be 0-60000: {self.latency_ms}")

    def to_json(self) -> str:
        return json.dumps(
            {
                "errorPct": self.error_pct,
                "latencyMs": self.latency_ms,
                "failPayouts": self.fail_payouts,
                "tokenMismatch": self.token_mismatch,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> RevisionFaults:
        data = json.loads(raw) if raw else {}
        return cls(
            error_pct=float(data.get("errorPct", 0.0)),
            latency_ms=float(data.get("latencyMs", 0.0)),
            fail_payouts=bool(data.get("failPayouts", False)),
            token_mismatch=bool(data.get("tokenMismatch", False)),
        )

    def wire(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.to_json()))


NO_FAULTS = RevisionFaults()


def revision_name(service: str, number: int) -> str:
    """``<service>-NNNNN``, as Cloud Run names a service's revisions."""
    return f"{service}-{number:05d}"


def next_revision_name(service: str, existing: Iterable[str]) -> str:
    """The next ``<service>-NNNNN`` after the numbered revisions in ``existing``."""
    numbers = [
        int(name[len(service) + 1 :])
        for name in existing
        if name.startswith(service + "-") and name[len(service) + 1 :].isdigit()
    ]
    return revision_name(service, max(numbers, default=FIRST_REVISION_NUMBER - 1) + 1)


def pick(split: Mapping[str, int], draw_pct: float) -> str | None:
    """The revision whose share covers ``draw_pct`` (0 <= draw < 100) in the split, in
    name order; None when nothing serves. Shares summing under 100 leave the rest to the
    largest share (the platform never drops a request)."""
    serving = sorted((rev, pct) for rev, pct in split.items() if pct > 0)
    if not serving:
        return None
    edge = 0.0
    for rev, pct in serving:
        edge += pct
        if draw_pct < edge:
            return rev
    return max(serving, key=lambda item: item[1])[0]


def percentile_95(latencies_ms: list[float]) -> float:
    ordered = sorted(latencies_ms)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] if ordered else 0.0


# ---------------------------------------------------------- the platform side


class RevisionExists(ValueError):
    """``deploy`` was given the name of a revision the service already has."""


class LocalRevisions:
    """Revisions of the local platform and their faults (sync Redis, decoded responses)."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self.traffic = LocalTraffic(client)

    @staticmethod
    def key(service: str) -> str:
        return REVISIONS_PREFIX + service

    def revisions(self, service: str) -> dict[str, RevisionFaults]:
        raw = cast(dict[str, str], self._redis.hgetall(self.key(service)))
        return {rev: RevisionFaults.from_json(spec) for rev, spec in sorted(raw.items())}

    def deploy(
        self,
        service: str,
        name: str | None = None,
        faults: RevisionFaults = NO_FAULTS,
        all_traffic: bool = True,
    ) -> str:
        """A new latest revision of ``service`` (named ``<service>-NNNNN`` unless ``name``)
        with ``faults``: it takes all traffic as ``firebase deploy`` gives a function's new
        revision, or none with ``all_traffic=False`` (``gcloud run deploy --no-traffic``;
        :meth:`LocalTraffic.deploy`). Answers its name."""
        known = self.revisions(service)
        seen = self.traffic.observe(service, "")
        existing = set(known) | set(seen.shares) | ({seen.latest_ready} - {None})
        rev = name or next_revision_name(service, cast(set[str], existing))
        if not REVISION_NAME.match(rev):
            raise ValueError(
                f"revision name {rev!r}: lowercase letters, digits and hyphens, "
                "starting with a letter, 63 at most"
            )
        if rev in existing:
            raise RevisionExists(f"{service} already has a revision {rev}")
        # the faults first: the revision serves nothing before the platform knows it
        self._redis.hset(self.key(service), rev, faults.to_json())
        self.traffic.deploy(service, rev, all_traffic)
        return rev

    def ensure_serving(self, service: str) -> str | None:
        """A service serving nothing gets its first revision (``<service>-00001``) at
        100 %, pinned (as ``pack391 deploy pin-traffic`` leaves it), so the next revision
        lands at 0 %. Answers the revision created, None when the service already serves."""
        if self.traffic.observe(service, "").shares:
            return None
        rev = self.deploy(service)
        self.traffic.apply(service, "", {rev: 100})
        return rev


# ------------------------------------------------------------- the sandbox side

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


def revision_reporter(functions_url: str, token: str) -> RevisionReporter:
    """Push samples to ``pack391_reportRevisionMetrics`` over the callable protocol."""

    async def report(sample: dict[str, Any]) -> None:
        async with (
            ClientSession(timeout=ClientTimeout(total=5)) as session,
            session.post(
                f"{functions_url}/pack391_reportRevisionMetrics",
                json={"data": sample},
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            if response.status != 200:
                log.warning("revision push %s: %s", response.status, await response.text())

    return report


def describe(revisions: LocalRevisions, service: str) -> dict[str, Any]:
    """What ``pack391 deploy revision`` prints: the service's revisions, faults, split."""
    seen = revisions.traffic.observe(service, "")
    return {
        "service": service,
        "latest": seen.latest_ready,
        "shares": seen.shares,
        "revisions": {rev: f.wire() for rev, f in revisions.revisions(service).items()},
    }
