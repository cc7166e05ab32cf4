"""The rate limiter: one Redis round trip per decision, a declared failure mode per class,
and the detector's counters batched per instance (:mod:`shared.ratelimit.counters`)."""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import redis

from shared.errors import BackendUnavailable
from shared.ratelimit import keys
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.counters import CounterBuffer, FlushResult
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
    ADDRESS_QUOTA_BASE_USERS,
    ADDRESS_QUOTA_MAX_USERS,
    DDOS_BLOCK_LIST_REFRESH_SEC,
    PREAUTH_FLEET_PER_MIN,
    PREAUTH_MAX_TRACKED_COUNT,
    PREAUTH_PER_MIN,
    RATE_LIMIT_PERIOD_SEC,
    RATE_LIMIT_UNAVAILABLE_RETRY_SEC,
)

log = logging.getLogger("pack391.ratelimit")

_DECIDE = LUA_DIR / "rate_decide.lua"
_LOG_EVERY_SEC = 10.0
LOCKDOWN_RETRY_MS = 60_000
"""``retryAfterSec`` of a request without a valid token during a lockdown: sign in first."""
US_PER_SEC = 1_000_000


@dataclass(frozen=True)
class Subject:
    """Who a decision is about."""

    uid: str | None
    client: ClientInfo
    door_counted: bool = False
    """The request was already counted as a source at the front door (:meth:`RateLimiter.door`)."""
    established: bool = False
    """The user counts as established (:func:`shared.auth.is_established`): it is counted
    among the users behind its address, which sizes the address's quota and decides
    whether the address is shared."""


class Credential(enum.Enum):
    """What the front door found in a request's ``Authorization`` header."""

    USER = "user"
    """A valid ID token of a user (or of staff)."""
    SERVICE = "service"
    """A valid ID token of a trusted service (``service: true``): keyed by principal,
    never counted or turned away by its egress address."""
    NONE = "none"
    """No token, or one that does not verify: the pre-auth bucket applies."""


def bot_bucket(score: int) -> str:
    """Cloudflare's bot score in four buckets: ``1`` (automated), ``2-29`` (likely
    automated), ``30-99`` (likely human); requests without a proven score are not counted."""
    if score <= 1:
        return "1"
    return "2-29" if score < 30 else "30-99"


@dataclass(frozen=True)
class DoorVerdict:
    """The front door's answer: go on (``retry_ms`` 0) or turn away, and why."""

    retry_ms: int = 0
    reason: Reason = Reason.OK


@dataclass
class PreauthBuckets:
    """Per-address GCRA buckets for requests without a valid token, in this process:
    ``limit`` per ``period_sec``; at most ``max_keys`` addresses (full buckets are
    forgotten first, then the oldest), so an attacker's addresses bound its memory."""

    limit: int = PREAUTH_PER_MIN
    period_sec: float = float(RATE_LIMIT_PERIOD_SEC)
    max_keys: int = PREAUTH_MAX_TRACKED_COUNT
    _tat: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: str, now: float) -> float:
        """Count one request from ``key`` at ``now`` (seconds); 0 when allowed, else the
        seconds until one would be."""
        interval = self.period_sec / self.limit
        with self._lock:
            tat = max(self._tat.get(key, now), now)
            allow_at = tat + interval - self.period_sec
            if now < allow_at:
                return allow_at - now
            if key not in self._tat and len(self._tat) >= self.max_keys:
                self._evict(now)
            self._tat[key] = tat + interval
            return 0.0

    def __len__(self) -> int:
        return len(self._tat)

    def _evict(self, now: float) -> None:
        full = [k for k, tat in self._tat.items() if tat <= now]
        for k in full:
            del self._tat[k]
        while len(self._tat) >= self.max_keys:
            del self._tat[next(iter(self._tat))]


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
        self._anon_until_ms: dict[str, int] = {}
        self._lockdown = False
        self._loaded_at: float | None = None

    def until_ms(self, ip: str, now_ms: int) -> int:
        """When the block on ``ip`` ends (ms since the epoch), or 0 when there is none."""
        self._refresh_if_stale(now_ms)
        until = self._until_ms.get(ip, 0)
        return until if until > now_ms else 0

    def anon_until_ms(self, ip: str, now_ms: int) -> int:
        """When ``ip``'s refusal of traffic without a valid token ends, or 0."""
        self._refresh_if_stale(now_ms)
        until = self._anon_until_ms.get(ip, 0)
        return until if until > now_ms else 0

    def lockdown(self, now_ms: int) -> bool:
        """Whether every request without a valid token is refused now (``ANON_LOCKDOWN``)."""
        self._refresh_if_stale(now_ms)
        return self._lockdown

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
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrangebyscore(keys.BLOCKED_ADDRESSES, now_ms, "+inf", withscores=True)
            pipe.zrangebyscore(keys.ANON_REFUSED_ADDRESSES, now_ms, "+inf", withscores=True)
            pipe.pttl(keys.ANON_LOCKDOWN)
            blocked, anon, lockdown_ms = pipe.execute()
            self._until_ms = _scored(blocked)
            self._anon_until_ms = _scored(anon)
            self._lockdown = int(lockdown_ms) > 0 or int(lockdown_ms) == -1
        except redis.RedisError as exc:
            log.warning("blocked addresses not refreshed, keeping the last copy: %r", exc)
        finally:
            self._lock.release()


def _scored(rows: Any) -> dict[str, int]:
    return {
        (ip.decode() if isinstance(ip, bytes) else str(ip)): int(score)
        for ip, score in cast(list[tuple[Any, float]], rows)
    }


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
        telemetry: redis.Redis | None = None,
    ) -> None:
        """``telemetry``: where the traffic counters go (default: ``client``)."""
        self._redis = client
        self._telemetry = telemetry if telemetry is not None else client
        self._script = lua_script(_DECIDE, client)
        self._geo = geo
        self._shadow = shadow_classes
        self._counters = counters if counters is not None else CounterBuffer()
        self.blocked = BlockedAddresses(client)
        self.preauth = PreauthBuckets()
        self._preauth_over: dict[str, int] = {}
        """Addresses over the fleet-wide pre-auth limit: address -> the minute it holds for."""
        self._established: dict[str, dict[int, int]] = {}
        """Address -> {minute: established users seen behind it then, fleet-wide}, as the
        counters' flushes read them back (the two newest minutes)."""
        self._lock = threading.Lock()
        self._failures_total = 0
        self._last_log = 0.0

    @property
    def failures_total(self) -> int:
        """Redis failures this instance has seen (for its logs and tests)."""
        return self._failures_total

    def door(
        self, client: ClientInfo, now: datetime, credential: Credential = Credential.USER
    ) -> DoorVerdict:
        """Count one request at the front door and say whether it may go on. No Redis
        round trip of its own: the counts are batched, the block lists are this instance's
        copy, the pre-auth bucket lives in this process (with the fleet-wide backstop the
        counters' flush reads back).

        - A service principal is not counted or judged by its egress address: its calls
          are counted under the principal (or, for a proxied check, under its subject).
        - Any other request is counted as a source; a DDoS-blocked address is turned away.
        - A request without a valid token also meets the address's pre-auth bucket and
          the refusal list of held blocks (traffic without a token, from an address too
          shared to block)."""
        if credential is Credential.SERVICE:
            self._counters.record(
                keys.minute_of(now), ("door:service",), client.ip, "", source=False
            )
            self.flush_counters(only_if_due=True)
            return DoorVerdict()
        preauth = credential is Credential.NONE
        minute = keys.minute_of(now)
        names: tuple[str, ...] = ("door", "door:preauth") if preauth else ("door",)
        if client.bot_score is not None:  # Cloudflare's, proven: four buckets, bounded
            names = (*names, f"bot:{bot_bucket(client.bot_score)}")
        self._counters.record(minute, names, client.ip, client.fingerprint, preauth=preauth)
        now_ms = int(now.timestamp() * 1000)
        verdict = DoorVerdict()
        until = self.blocked.until_ms(client.ip, now_ms)
        if until:
            verdict = DoorVerdict(until - now_ms, Reason.IP_BLOCK)
        elif preauth:
            verdict = self._preauth(client.ip, now, minute, now_ms)
        self.flush_counters(only_if_due=True)
        return verdict

    def charge_preauth(self, client: ClientInfo, now: datetime) -> DoorVerdict:
        """A request with a valid token but the wrong role for its function: it draws from
        the address's pre-auth bucket too (counted; no Redis round trip)."""
        minute = keys.minute_of(now)
        self._counters.record(
            minute, ("door:wrong_role",), client.ip, client.fingerprint, source=False, preauth=True
        )
        return self._preauth(client.ip, now, minute, int(now.timestamp() * 1000))

    def _preauth(self, ip: str, now: datetime, minute: int, now_ms: int) -> DoorVerdict:
        if self.blocked.lockdown(now_ms):
            return DoorVerdict(LOCKDOWN_RETRY_MS, Reason.ANON_REFUSED)
        refused = self.blocked.anon_until_ms(ip, now_ms)
        if refused:
            return DoorVerdict(refused - now_ms, Reason.ANON_REFUSED)
        if self._preauth_over.get(ip) == minute:
            return DoorVerdict((minute + 1) * 60_000 - now_ms, Reason.PREAUTH_LIMIT)
        wait = self.preauth.take(ip, now.timestamp())
        if wait > 0:
            return DoorVerdict(max(1, math.ceil(wait * 1000)), Reason.PREAUTH_LIMIT)
        return DoorVerdict()

    def decide(
        self,
        endpoint_class: EndpointClass,
        subject: Subject,
        now: datetime,
        *,
        staff: bool = False,
        service: bool = False,
    ) -> RateDecision:
        """Count one request of ``endpoint_class`` by ``subject`` and decide it.
        ``staff``: an ops or admin caller of an ops or admin function, decided in the
        ``staff`` class's own per-user bucket, exempt from IP blocks and DDoS mode.
        ``service``: a trusted service's own call, in the ``service`` class's bucket of
        its principal, the same way (never its egress address's)."""
        staff = staff and bool(subject.uid)
        service = service and bool(subject.uid) and not staff
        if staff:
            endpoint_class = EndpointClass.STAFF
        elif service:
            endpoint_class = EndpointClass.SERVICE
        policy = class_policy(endpoint_class)
        limits = limits_for(policy, self._geo.get(subject.client.country))
        uid = subject.uid or ""
        ip = subject.client.ip
        cls = endpoint_class.value
        minute = keys.minute_of(now)
        principal_only = staff or service
        try:
            result = self._script(
                keys=[
                    keys.bucket(cls, "u", uid),
                    keys.bucket(cls, "ip" if uid else "anon", ip),
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
                    1 if principal_only else 0,
                    self.address_users(ip, minute),
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
        over_ddos = decision.allowed and over_ddos_limit(decision.remaining, decision.limit)
        if over_ddos:
            names.append(f"overddos:{cls}")
        principal_only = decision.endpoint_class in (EndpointClass.STAFF, EndpointClass.SERVICE)
        self._counters.record(
            keys.minute_of(now),
            names,
            subject.client.ip,
            subject.client.fingerprint,
            source=not subject.door_counted and not principal_only,
            uid=None if principal_only else subject.uid,
            established=subject.established,
            over_ddos=over_ddos,
        )

    def flush_counters(self, only_if_due: bool = False) -> None:
        """Write the buffered traffic counters to Redis (see :mod:`shared.ratelimit.counters`).
        A Redis failure keeps them buffered for the next try."""
        if only_if_due and not self._counters.due():
            return
        try:
            result = self._counters.flush(self._telemetry, self._redis)
        except redis.RedisError as exc:
            log.warning("traffic counters kept for the next flush: %r", exc)
            return
        self._note_preauth(result)
        self._note_established(result)

    def address_users(self, ip: str, minute: int) -> int:
        """How many users' limits ``ip``'s own bucket holds: ``ADDRESS_QUOTA_BASE_USERS``
        plus the established users seen behind it in this minute or the last (this
        instance's copy, read back by the counters' flush), at most
        ``ADDRESS_QUOTA_MAX_USERS``."""
        seen = self._established.get(ip)
        behind = max((n for m, n in seen.items() if m >= minute - 1), default=0) if seen else 0
        return min(ADDRESS_QUOTA_MAX_USERS, ADDRESS_QUOTA_BASE_USERS + behind)

    def _note_established(self, result: FlushResult) -> None:
        if not result.established:
            return
        newest = max(m for m, _ in result.established)
        with self._lock:
            kept: dict[str, dict[int, int]] = {}
            for ip, per_minute in self._established.items():
                recent = {m: n for m, n in per_minute.items() if m >= newest - 1}
                if recent:
                    kept[ip] = recent
            for (minute, ip), n in result.established.items():
                if minute >= newest - 1:
                    per_minute = kept.setdefault(ip, {})
                    per_minute[minute] = max(n, per_minute.get(minute, 0))
            self._established = kept

    def _note_preauth(self, result: FlushResult) -> None:
        """The pre-auth backstop: addresses the whole fleet has seen send more than
        ``PREAUTH_FLEET_PER_MIN`` requests without a valid token this minute are refused
        by this instance too, until the minute ends."""
        if not result.preauth and not self._preauth_over:
            return
        newest = max((m for m, _ in result.preauth), default=0)
        with self._lock:
            over = {ip: m for ip, m in self._preauth_over.items() if m >= newest}
            for (minute, ip), n in result.preauth.items():
                if n > PREAUTH_FLEET_PER_MIN and minute >= newest:
                    over[ip] = minute
            self._preauth_over = over

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
