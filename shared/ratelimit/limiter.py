"""The rate limiter: one Redis round trip per decision, a declared failure mode per class,
and the detector's counters batched per instance (:mod:`shared.ratelimit.counters`)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import redis

from shared.errors import BackendUnavailable
from shared.ratelimit import keys
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.counters import CounterBuffer
from shared.ratelimit.gcra import US_PER_MS
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.policy import (
    ClassPolicy,
    EndpointClass,
    FailMode,
    Reason,
    class_policy,
    limits_for,
    near_limit,
    over_ddos_limit,
)
from shared.redis import LUA_DIR, lua_script
from shared.thresholds import (
    DDOS_BLOCK_LIST_REFRESH_SEC,
    RATE_LIMIT_PERIOD_SEC,
    RATE_LIMIT_UNAVAILABLE_RETRY_SEC,
)

log = logging.getLogger("pack391.ratelimit")

_DECIDE = LUA_DIR / "rate_decide.lua"
_LOG_EVERY_SEC = 10.0
US_PER_SEC = 1_000_000


@dataclass(frozen=True)
class Subject:
    """Who a decision is about."""

    uid: str | None
    client: ClientInfo
    door_counted: bool = False
    """The request was already counted as a source at the front door (:meth:`RateLimiter.door`)."""


class BlockedAddresses:
    """This instance's copy of the addresses under a DDoS block, re-read from Redis at most
    every ``refresh_sec`` by the request that finds it stale (one ZRANGEBYSCORE). The
    front door checks it before token verification with no round trip of its own; the
    decision script stays the exact check. When Redis cannot be read the last copy stays."""

    def __init__(
        self,
        client: redis.Redis,
        refresh_sec: float = DDOS_BLOCK_LIST_REFRESH_SEC,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._every = refresh_sec
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._until_ms: dict[str, int] = {}
        self._loaded_at: float | None = None

    def until_ms(self, ip: str, now_ms: int) -> int:
        """When the block on ``ip`` ends (ms since the epoch), or 0 when there is none."""
        self._refresh_if_stale(now_ms)
        until = self._until_ms.get(ip, 0)
        return until if until > now_ms else 0

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = None

    def _refresh_if_stale(self, now_ms: int) -> None:
        loaded = self._loaded_at
        now = self._monotonic()
        if loaded is not None and now - loaded < self._every:
            return
        if not self._lock.acquire(blocking=False):
            return  # another request is refreshing: use the copy we have
        try:
            self._loaded_at = now
            rows = self._redis.zrangebyscore(
                keys.BLOCKED_ADDRESSES, now_ms, "+inf", withscores=True
            )
            self._until_ms = {
                (ip.decode() if isinstance(ip, bytes) else str(ip)): int(score)
                for ip, score in cast(list[tuple[Any, float]], rows)
            }
        except redis.RedisError as exc:
            log.warning("blocked addresses not refreshed, keeping the last copy: %r", exc)
        finally:
            self._lock.release()


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int
    retry_after_sec: float
    reset_sec: float
    reason: Reason
    limit: int
    endpoint_class: EndpointClass


def _sec(us: int) -> float:
    """Microseconds as seconds, rounded up to the millisecond (never early)."""
    return math.ceil(us / US_PER_MS) / 1000


class RateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        geo: GeoRules,
        shadow_classes: frozenset[str] = frozenset(),
        counters: CounterBuffer | None = None,
    ) -> None:
        self._redis = client
        self._script = lua_script(_DECIDE, client)
        self._geo = geo
        self._shadow = shadow_classes
        self._counters = counters if counters is not None else CounterBuffer()
        self.blocked = BlockedAddresses(client)
        self._lock = threading.Lock()
        self._failures_total = 0
        self._last_log = 0.0

    @property
    def failures_total(self) -> int:
        """Redis failures this instance has seen (for its logs and tests)."""
        return self._failures_total

    def door(self, client: ClientInfo, now: datetime) -> int:
        """Count one request at the front door, before token verification, and say how long
        its address stays blocked by DDoS mitigation (ms; 0: not blocked). No Redis round
        trip of its own: the counts are batched, the block list is this instance's copy."""
        self._counters.record(keys.minute_of(now), ("door",), client.ip, client.fingerprint)
        now_ms = int(now.timestamp() * 1000)
        until = self.blocked.until_ms(client.ip, now_ms)
        self.flush_counters(only_if_due=True)
        return max(0, until - now_ms)

    def decide(
        self,
        endpoint_class: EndpointClass,
        subject: Subject,
        now: datetime,
        *,
        staff: bool = False,
    ) -> RateDecision:
        """Count one request of ``endpoint_class`` by ``subject`` and decide it.
        ``staff``: an ops or admin caller of an ops or admin function, decided in the
        ``staff`` class's own per-user bucket, exempt from IP blocks and DDoS mode."""
        staff = staff and bool(subject.uid)
        if staff:
            endpoint_class = EndpointClass.STAFF
        policy = class_policy(endpoint_class)
        limits = limits_for(policy, self._geo.get(subject.client.country))
        uid = subject.uid or ""
        ip = subject.client.ip
        cls = endpoint_class.value
        try:
            result = self._script(
                keys=[
                    keys.bucket(cls, "u", uid),
                    keys.bucket(cls, "ip", ip),
                    keys.country_bucket(subject.client.country or "unknown"),
                    keys.block("bf", "user", uid),
                    keys.block("bf", "ip", ip),
                    keys.block("ddos", "ip", ip),
                    keys.panic_pass(uid),
                    keys.DDOS_MODE,
                    keys.block("ddos", "user", uid),
                ],
                args=[
                    int(now.timestamp() * US_PER_SEC),
                    RATE_LIMIT_PERIOD_SEC * US_PER_SEC,
                    limits.limit,
                    limits.ddos_limit,
                    limits.country_cap or 0,
                    1 if uid else 0,
                    1 if policy.brute_force_guarded else 0,
                    1 if cls in self._shadow else 0,
                    1 if staff else 0,
                ],
            )
        except redis.RedisError as exc:
            decision = self._redis_failed(policy, limits.limit, exc)
            self._count(decision, subject, now, redis_failed=True)
            return decision
        allowed, remaining, retry_us, reset_us, reason, limit = result
        decision = RateDecision(
            allowed=bool(allowed),
            remaining=int(remaining),
            retry_after_sec=_sec(int(retry_us)),
            reset_sec=_sec(int(reset_us)),
            reason=Reason(reason),
            limit=int(limit),
            endpoint_class=endpoint_class,
        )
        self._count(decision, subject, now)
        self.flush_counters(only_if_due=True)
        return decision

    def _count(
        self, decision: RateDecision, subject: Subject, now: datetime, redis_failed: bool = False
    ) -> None:
        cls = decision.endpoint_class.value
        names = [f"req:{cls}"]
        if subject.client.country:
            names.append(f"cc:{subject.client.country}")
        if redis_failed:
            names.append("redis_fail")
        elif not decision.allowed:
            names += [f"den:{cls}", f"why:{decision.reason.value}"]
        elif decision.reason is Reason.SHADOW_LIMITED:
            names.append(f"shadow:{cls}")
        elif decision.reason is Reason.PANIC_PASS:
            names.append("pass")
        elif near_limit(decision.remaining, decision.limit):
            names.append(f"near:{cls}")
        if decision.allowed and over_ddos_limit(decision.remaining, decision.limit):
            names.append(f"overddos:{cls}")
        self._counters.record(
            keys.minute_of(now),
            names,
            subject.client.ip,
            subject.client.fingerprint,
            source=not subject.door_counted,
            uid=subject.uid,
        )

    def flush_counters(self, only_if_due: bool = False) -> None:
        """Write the buffered traffic counters to Redis (see :mod:`shared.ratelimit.counters`).
        A Redis failure keeps them buffered for the next try."""
        if only_if_due and not self._counters.due():
            return
        try:
            self._counters.flush(self._redis)
        except redis.RedisError as exc:
            log.warning("traffic counters kept for the next flush: %r", exc)

    def _redis_failed(self, policy: ClassPolicy, limit: int, exc: redis.RedisError) -> RateDecision:
        with self._lock:
            self._failures_total += 1
            now = time.monotonic()
            should_log = now - self._last_log >= _LOG_EVERY_SEC
            if should_log:
                self._last_log = now
        if should_log:
            log.error(
                "Redis unavailable for rate limiting (%d failures so far); %s fails %s: %r",
                self._failures_total,
                policy.endpoint_class.value,
                policy.fail_mode.value,
                exc,
            )
        if policy.fail_mode is FailMode.CLOSED:
            raise BackendUnavailable(
                f"{policy.endpoint_class.value} requests are refused while rate limiting is "
                "unavailable; try again shortly",
                endpointClass=policy.endpoint_class.value,
                retryAfterSec=RATE_LIMIT_UNAVAILABLE_RETRY_SEC,
            ) from exc
        return RateDecision(
            allowed=True,
            remaining=limit,
            retry_after_sec=0.0,
            reset_sec=0.0,
            reason=Reason.REDIS_UNAVAILABLE,
            limit=limit,
            endpoint_class=policy.endpoint_class,
        )
