"""The front door's count and checks, before token verification has its say: no Redis
round trip of its own. The counts go to the instance's counter buffer (batched,
:mod:`shared.ratelimit.counters`), the block lists are this instance's copy
(:class:`BlockedAddresses`), and a request without a valid token meets its address's
pre-auth bucket in this process (:class:`PreauthBuckets`) with the fleet-wide backstop
the counters' flush reads back (:meth:`Door.note_flush`).

:class:`shared.ratelimit.limiter.RateLimiter` owns one :class:`Door` and the counter
buffer they share (:meth:`RateLimiter.door`, :meth:`RateLimiter.charge_preauth`)."""

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

from shared.models.slo import ActionsSnapshot
from shared.ratelimit import keys
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.counters import CounterBuffer, FlushResult
from shared.ratelimit.policy import Reason
from shared.slo.actions import ACTIONS_KEY, parse_actions
from shared.thresholds import (
    DDOS_BLOCK_LIST_REFRESH_SEC,
    PREAUTH_FLEET_PER_MIN,
    PREAUTH_MAX_TRACKED_COUNT,
    PREAUTH_PER_MIN,
    RATE_LIMIT_PERIOD_SEC,
    SLO_ACTIONS_TTL_SEC,
)

log = logging.getLogger("pack391.ratelimit")

LOCKDOWN_RETRY_MS = 60_000
"""``retryAfterSec`` of a request without a valid token during a lockdown: sign in first."""


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
    """This instance's copy of the global protection state: the addresses under a DDoS
    block or refused without a token, the lockdown, DDoS mode and the error budgets'
    actions (:mod:`shared.slo.actions`), re-read from Redis at most every ``refresh_sec``
    by the request that finds it stale (one pipelined round trip). The front door checks
    the lists before token verification with no round trip of its own (the decision's
    scripts stay the exact check of a block), and every decision takes DDoS mode and the
    budgets' shedding from here: the global keys never enter a decision's scripts,
    so those stay within one hash slot each (:mod:`shared.ratelimit.keys`). When Redis
    cannot be read the last copy stays."""

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
        self._ddos = False
        self._slo: ActionsSnapshot | None = None
        self._slo_raw: Any = None
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

    def ddos_mode(self, now_ms: int) -> bool:
        """Whether DDoS mode is on (``DDOS_MODE``), as of this instance's last read."""
        self._refresh_if_stale(now_ms)
        return self._ddos

    def lockdown(self, now_ms: int) -> bool:
        """Whether every request without a valid token is refused now (``ANON_LOCKDOWN``)."""
        self._refresh_if_stale(now_ms)
        return self._lockdown

    def slo_actions(self, now_ms: int) -> ActionsSnapshot | None:
        """The budgets' actions (``pack391_evaluateSlos``'s snapshot), as of this
        instance's last read; None when there is none, or when the copy is older than the
        snapshot's TTL (a Redis that stopped answering never keeps an action in force)."""
        self._refresh_if_stale(now_ms)
        snapshot = self._slo
        if snapshot is None:
            return None
        age_ms = now_ms - snapshot.at.timestamp() * 1000
        return snapshot if age_ms <= SLO_ACTIONS_TTL_SEC * 1000 else None

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
            pipe.pttl(keys.DDOS_MODE)
            pipe.get(ACTIONS_KEY)
            blocked, anon, lockdown_ms, ddos_ms, slo = pipe.execute()
            self._until_ms = _scored(blocked)
            self._anon_until_ms = _scored(anon)
            self._lockdown = int(lockdown_ms) > 0 or int(lockdown_ms) == -1
            self._ddos = int(ddos_ms) > 0 or int(ddos_ms) == -1
            if slo != self._slo_raw:  # parsed only when it changed (once a minute)
                self._slo, self._slo_raw = parse_actions(slo), slo
        except redis.RedisError as exc:
            log.warning("blocked addresses not refreshed, keeping the last copy: %r", exc)
        finally:
            self._lock.release()


def _scored(rows: Any) -> dict[str, int]:
    return {
        (ip.decode() if isinstance(ip, bytes) else str(ip)): int(score)
        for ip, score in cast(list[tuple[Any, float]], rows)
    }


class Door:
    """The front door of one instance: counts every request it is shown and says whether
    it may go on (:meth:`check`), charges a wrong role to the pre-auth bucket
    (:meth:`charge_preauth`), and learns from each counters' flush which addresses the
    whole fleet has seen over the pre-auth limit (:meth:`note_flush`)."""

    def __init__(self, client: redis.Redis, counters: CounterBuffer) -> None:
        self._counters = counters
        self.blocked = BlockedAddresses(client)
        self.preauth = PreauthBuckets()
        self._preauth_over: dict[str, int] = {}
        """Addresses over the fleet-wide pre-auth limit: address -> the minute it holds for."""
        self._lock = threading.Lock()

    def check(
        self, client: ClientInfo, now: datetime, credential: Credential = Credential.USER
    ) -> DoorVerdict:
        """Count one request at the front door and say whether it may go on. No Redis
        round trip of its own (see the module); the caller flushes the counters when due.

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

    def note_flush(self, result: FlushResult) -> None:
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
