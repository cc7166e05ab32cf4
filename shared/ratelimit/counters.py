"""The per-minute traffic counters the DDoS detector reads, batched per instance.

Every decision adds to an in-process buffer; at most once a second (or when the
buffer grows large) the request that notices writes the whole buffer to Redis in
one pipelined round trip. The decision itself stays one round trip, repeated
sources are aggregated before they reach Redis (an attack is mostly repeats), and
the counters lag real traffic by about a second, which a per-minute detector does
not notice. Nothing runs between requests (Cloud Functions throttles the CPU
there): an instance that goes idle keeps its last second of counts until its next
request. When Redis cannot be written, the counts stay buffered and are retried;
beyond ``max_sources`` distinct sources the oldest minutes are dropped (and
counted as dropped) so memory stays bounded.

Every request is counted once as a *source* (its address and fingerprint, and the
``all`` field): at the front door, before token verification, for this bundle's
callables (so floods without a valid token are seen), or by the decision for a
request that did not pass a front door (other bundles' ``@rate_limited``). The
decision adds the class fields and, for signed-in callers, which user was behind
the address.

Redis layout per minute ``m`` (see :mod:`shared.ratelimit.keys`):
``stats(m)`` hash (``all``, ``door``, ``req:<class>``, ``cc:<country>``,
``den:<class>``, ``why:<reason>``, ``shadow:<class>``, ``near:<class>``,
``overddos:<class>``, ``pass``, ``redis_fail``), ``stats_ips(m)`` zset (requests per
IP), ``stats_hll(m)`` HyperLogLog (distinct IPs), ``stats_fingerprints(m)`` zset and
``stats_fingerprint_ips(m, fp)`` HyperLogLogs (distinct IPs per client fingerprint),
``stats_ip_users(m, ip)`` zsets (requests per user behind an address) and
``stats_users_hll(m)`` (distinct signed-in users).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from shared.ratelimit import keys
from shared.thresholds import DDOS_STATS_TTL_SEC

TOP_LISTS_TTL_SEC = 5 * 60
"""Per-IP and per-fingerprint lists are only read for the last few minutes."""


@dataclass
class MinuteCounts:
    fields: Counter[str] = field(default_factory=Counter)
    ips: Counter[str] = field(default_factory=Counter)
    fingerprints: Counter[str] = field(default_factory=Counter)
    fingerprint_ips: dict[str, set[str]] = field(default_factory=dict)
    ip_users: dict[str, Counter[str]] = field(default_factory=dict)

    def merge(self, other: MinuteCounts) -> None:
        self.fields.update(other.fields)
        self.ips.update(other.ips)
        self.fingerprints.update(other.fingerprints)
        for fp, ips in other.fingerprint_ips.items():
            self.fingerprint_ips.setdefault(fp, set()).update(ips)
        for ip, users in other.ip_users.items():
            self.ip_users.setdefault(ip, Counter()).update(users)

    def sources(self) -> int:
        return len(self.ips) + sum(len(users) for users in self.ip_users.values())


class CounterBuffer:
    def __init__(
        self,
        flush_every_sec: float = 1.0,
        max_sources: int = 20_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._every = flush_every_sec
        self._max = max_sources
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._minutes: dict[int, MinuteCounts] = {}
        self._sources = 0
        self._last_flush = monotonic()
        self.dropped = 0
        """Requests whose counts were dropped because Redis stayed unwritable."""

    def record(
        self,
        minute: int,
        names: Iterable[str],
        ip: str,
        fingerprint: str,
        *,
        source: bool = True,
        uid: str | None = None,
    ) -> None:
        """Count one request's ``names``; ``source``: also count its address and
        fingerprint (once per request); ``uid``: the signed-in user behind the address."""
        with self._lock:
            counts = self._minutes.get(minute)
            if counts is None:
                counts = self._minutes[minute] = MinuteCounts()
            counts.fields.update(names)
            if source:
                counts.fields["all"] += 1
                if ip not in counts.ips:
                    self._sources += 1
                counts.ips[ip] += 1
                counts.fingerprints[fingerprint] += 1
                counts.fingerprint_ips.setdefault(fingerprint, set()).add(ip)
            if uid:
                users = counts.ip_users.get(ip)
                if users is None:
                    users = counts.ip_users[ip] = Counter()
                if uid not in users:
                    self._sources += 1
                users[uid] += 1
            while self._sources > self._max and len(self._minutes) > 1:
                oldest = min(self._minutes)
                lost = self._minutes.pop(oldest)
                self._sources -= lost.sources()
                self.dropped += lost.fields.get("all", 0)

    def due(self) -> bool:
        return bool(self._minutes) and (
            self._monotonic() - self._last_flush >= self._every or self._sources >= self._max
        )

    def flush(self, client: redis.Redis) -> int:
        """Write everything buffered in one pipelined round trip; returns the minutes written.
        On a Redis error the counts go back into the buffer and the error is raised."""
        with self._lock:
            drained, self._minutes = self._minutes, {}
            self._sources = 0
            self._last_flush = self._monotonic()
        if not drained:
            return 0
        try:
            pipe = client.pipeline(transaction=False)
            for minute, counts in drained.items():
                _write(pipe, minute, counts)
            pipe.execute()
        except redis.RedisError:
            with self._lock:
                for minute, counts in drained.items():
                    self._minutes.setdefault(minute, MinuteCounts()).merge(counts)
                    self._sources += counts.sources()
            raise
        return len(drained)


def _write(pipe: redis.client.Pipeline, minute: int, counts: MinuteCounts) -> None:
    stats = keys.stats(minute)
    for name, n in counts.fields.items():
        pipe.hincrby(stats, name, n)
    pipe.expire(stats, DDOS_STATS_TTL_SEC)
    ips = keys.stats_ips(minute)
    for ip, n in counts.ips.items():
        pipe.zincrby(ips, n, ip)
    pipe.expire(ips, TOP_LISTS_TTL_SEC)
    hll = keys.stats_hll(minute)
    if counts.ips:
        pipe.pfadd(hll, *counts.ips)
        pipe.expire(hll, DDOS_STATS_TTL_SEC)
    fps = keys.stats_fingerprints(minute)
    for fp, n in counts.fingerprints.items():
        pipe.zincrby(fps, n, fp)
        fp_ips = keys.stats_fingerprint_ips(minute, fp)
        pipe.pfadd(fp_ips, *counts.fingerprint_ips[fp])
        pipe.expire(fp_ips, TOP_LISTS_TTL_SEC)
    pipe.expire(fps, TOP_LISTS_TTL_SEC)
    if counts.ip_users:
        users_hll = keys.stats_users_hll(minute)
        everyone: set[str] = set()
        for ip, users in counts.ip_users.items():
            per_ip = keys.stats_ip_users(minute, ip)
            for uid, n in users.items():
                pipe.zincrby(per_ip, n, uid)
            pipe.expire(per_ip, TOP_LISTS_TTL_SEC)
            everyone.update(users)
        pipe.pfadd(users_hll, *everyone)
        pipe.expire(users_hll, DDOS_STATS_TTL_SEC)
