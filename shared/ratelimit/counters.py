"""The per-minute traffic counters the DDoS detector reads, batched per instance.

Every decision adds to an in-process buffer; at most once a second (or when the
buffer grows large) the request that notices writes the whole buffer to Redis in
one pipelined round trip. The decision itself stays one round trip, repeated
sources are aggregated before they reach Redis (an attack is mostly repeats), and
the counters lag real traffic by about a second, which a per-minute detector does
not notice. Nothing runs between requests (Cloud Functions throttles the CPU
there): an instance that goes idle keeps its last second of counts until its next
request. When Redis cannot be written, the counts stay buffered and are retried;
beyond ``max_sources`` tracked entries (addresses, users behind them, client
fingerprints and the addresses seen per fingerprint, all counted) the oldest minutes
are dropped (and counted as dropped) so memory stays bounded, whatever values an
attacker sends.

Every request is counted once as a *source* (its address and fingerprint, and the
``all`` field): at the front door, before token verification, for this bundle's
callables (so floods without a valid token are seen), or by the decision for a
request that did not pass a front door (other bundles' ``@rate_limited``). The
decision adds the class fields and, for signed-in callers, which user was behind
the address (and, for *established* users, :func:`shared.auth.is_established`, the
per-address and per-minute counts of them that size an address's quota and decide
whether it is shared). Requests without a valid token are also counted per address in
``stats_preauth(m)``: each flush reads the fleet-wide totals back from the same
pipeline (no extra round trip), which is the pre-auth bucket's backstop across
instances.

Attacker-chosen values never make unbounded Redis state: per flush, only the
``top_k`` heaviest addresses (and pre-auth addresses) go into the per-minute sorted
sets (the detector reads the top ten); every address still goes into the
distinct-address HyperLogLog (12 KiB at most). Client fingerprints (User-Agent and
language, which a client chooses freely): an instance tracks at most
``MAX_FINGERPRINTS`` a minute (the rest are counted under ``~other``), writes at most
``FINGERPRINT_TOP_K`` per flush into the minute's sorted set, which is trimmed to its
``FINGERPRINT_KEEP`` heaviest, and keeps a distinct-address HyperLogLog only for a
fingerprint this instance saw at least ``FINGERPRINT_IPS_MIN_REQUESTS`` times in the
minute (a bot swarm is one fingerprint from many addresses; a User-Agent rotating flood
is many fingerprints seen once each, and makes no key).

Redis layout per minute ``m`` (see :mod:`shared.ratelimit.keys`):
``stats(m)`` hash (``all``, ``door``, ``req:<class>``, ``cc:<country>``,
``den:<class>``, ``why:<reason>``, ``shadow:<class>``, ``near:<class>``,
``overddos:<class>``, ``pass``, ``redis_fail``), ``stats_ips(m)`` zset (requests per
IP), ``stats_hll(m)`` HyperLogLog (distinct IPs), ``stats_fingerprints(m)`` zset and
``stats_fingerprint_ips(m, fp)`` HyperLogLogs (distinct IPs per client fingerprint),
``stats_ip_users(m, ip)`` zsets (requests per signed-in user behind an address),
``stats_ip_established(m, ip)`` and ``stats_users_hll(m)`` HyperLogLogs (distinct
established users behind an address, and in all), ``stats_overddos_users(m)``
(established users over DDoS mode's limit) and ``stats_preauth(m)`` (requests without a
valid token per address).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from shared.ratelimit import keys
from shared.redis import queue_pfcount
from shared.thresholds import DDOS_STATS_TTL_SEC

TOP_LISTS_TTL_SEC = 5 * 60
"""Per-IP and per-fingerprint lists are only read for the last few minutes."""

TOP_K = 2000
"""Heaviest addresses (and fingerprints, and pre-auth addresses) written per flush."""

FINGERPRINT_IPS_CAP = 1000
"""Addresses kept per client fingerprint per flush (the bot-swarm rule needs 50)."""

MAX_FINGERPRINTS = 1000
"""Fingerprints one instance tracks per minute; the rest are counted under
:data:`OTHER_FINGERPRINT`."""

FINGERPRINT_TOP_K = 200
"""Heaviest fingerprints of a flush written to the minute's sorted set."""

FINGERPRINT_KEEP = 500
"""The minute's fingerprint sorted set is trimmed to this many (the detector reads 5)."""

FINGERPRINT_IPS_MIN_REQUESTS = 20
"""A fingerprint gets a distinct-address HyperLogLog once one instance saw it this many
times in the minute."""

OTHER_FINGERPRINT = "~other"


@dataclass
class MinuteCounts:
    fields: Counter[str] = field(default_factory=Counter)
    ips: Counter[str] = field(default_factory=Counter)
    fingerprints: Counter[str] = field(default_factory=Counter)
    fingerprint_ips: dict[str, set[str]] = field(default_factory=dict)
    ip_users: dict[str, Counter[str]] = field(default_factory=dict)
    ip_established: dict[str, set[str]] = field(default_factory=dict)
    established: set[str] = field(default_factory=set)
    overddos_users: set[str] = field(default_factory=set)
    preauth: Counter[str] = field(default_factory=Counter)

    def merge(self, other: MinuteCounts) -> None:
        self.fields.update(other.fields)
        self.ips.update(other.ips)
        self.fingerprints.update(other.fingerprints)
        for fp, ips in other.fingerprint_ips.items():
            self.fingerprint_ips.setdefault(fp, set()).update(ips)
        for ip, users in other.ip_users.items():
            self.ip_users.setdefault(ip, Counter()).update(users)
        for ip, uids in other.ip_established.items():
            self.ip_established.setdefault(ip, set()).update(uids)
        self.established.update(other.established)
        self.overddos_users.update(other.overddos_users)
        self.preauth.update(other.preauth)

    def sources(self) -> int:
        """Entries held: what the buffer's bound counts."""
        return (
            len(self.ips)
            + len(self.fingerprints)
            + sum(len(ips) for ips in self.fingerprint_ips.values())
            + sum(len(users) for users in self.ip_users.values())
            + sum(len(uids) for uids in self.ip_established.values())
            + len(self.established)
            + len(self.overddos_users)
            + len(self.preauth)
        )


@dataclass(frozen=True)
class FlushResult:
    minutes: int
    """Minutes written."""
    preauth: dict[tuple[int, str], int]
    """Fleet-wide requests without a valid token, per (minute, address), as Redis counted
    them after this flush's increments (only the addresses this flush wrote)."""
    established: dict[tuple[int, str], int] = field(default_factory=dict)
    """Fleet-wide distinct established users behind each address this flush saw some
    behind, per (minute, address), read back after this flush's additions: the address
    quota's size, with no Redis work on the decision's path."""


class CounterBuffer:
    def __init__(
        self,
        flush_every_sec: float = 1.0,
        max_sources: int = 20_000,
        monotonic: Callable[[], float] = time.monotonic,
        top_k: int = TOP_K,
    ) -> None:
        self._every = flush_every_sec
        self._max = max_sources
        self._monotonic = monotonic
        self._top_k = top_k
        self._lock = threading.Lock()
        self._minutes: dict[int, MinuteCounts] = {}
        self._fp_seen: dict[int, Counter[str]] = {}
        """Fingerprints this instance saw per minute, across flushes (the two newest)."""
        self._sources = 0
        self._last_flush = monotonic()
        self.dropped = 0
        """Requests whose counts were dropped because Redis stayed unwritable."""

    @property
    def held(self) -> int:
        """Entries held now (bounded by ``max_sources``, plus one minute's worth)."""
        return self._sources

    def record(
        self,
        minute: int,
        names: Iterable[str],
        ip: str,
        fingerprint: str,
        *,
        source: bool = True,
        uid: str | None = None,
        established: bool = False,
        over_ddos: bool = False,
        preauth: bool = False,
    ) -> None:
        """Count one request's ``names``; ``source``: also count its address and
        fingerprint (once per request); ``uid``: the signed-in user behind the address
        (``established``: one who counts, see :func:`shared.auth.is_established`;
        ``over_ddos``: the request used more of the limit than DDoS mode allows);
        ``preauth``: a request without a valid token (the pre-auth backstop)."""
        with self._lock:
            counts = self._minutes.get(minute)
            if counts is None:
                counts = self._minutes[minute] = MinuteCounts()
            counts.fields.update(names)
            added = 0
            if source:
                counts.fields["all"] += 1
                if ip not in counts.ips:
                    added += 1
                counts.ips[ip] += 1
                seen = self._fp_seen.get(minute)
                if seen is None:
                    seen = self._fp_seen[minute] = Counter()
                    for old in sorted(self._fp_seen)[:-2]:
                        del self._fp_seen[old]
                fp = fingerprint
                if fp not in seen and len(seen) >= MAX_FINGERPRINTS:
                    fp = OTHER_FINGERPRINT
                seen[fp] += 1
                if fp not in counts.fingerprints:
                    added += 1
                counts.fingerprints[fp] += 1
                fp_ips = counts.fingerprint_ips.get(fp)
                if fp_ips is None:
                    fp_ips = counts.fingerprint_ips[fp] = set()
                if len(fp_ips) < FINGERPRINT_IPS_CAP and ip not in fp_ips:
                    fp_ips.add(ip)
                    added += 1
            if preauth:
                if ip not in counts.preauth:
                    added += 1
                counts.preauth[ip] += 1
            if uid:
                users = counts.ip_users.get(ip)
                if users is None:
                    users = counts.ip_users[ip] = Counter()
                if uid not in users:
                    added += 1
                users[uid] += 1
                if established:
                    behind = counts.ip_established.setdefault(ip, set())
                    if uid not in behind:
                        behind.add(uid)
                        added += 1
                    if uid not in counts.established:
                        counts.established.add(uid)
                        added += 1
                    if over_ddos and uid not in counts.overddos_users:
                        counts.overddos_users.add(uid)
                        added += 1
            self._sources += added
            while self._sources > self._max and len(self._minutes) > 1:
                oldest = min(self._minutes)
                lost = self._minutes.pop(oldest)
                self._sources -= lost.sources()
                self.dropped += lost.fields.get("all", 0)

    def due(self) -> bool:
        return bool(self._minutes) and (
            self._monotonic() - self._last_flush >= self._every or self._sources >= self._max
        )

    def flush(self, client: redis.Redis, enforcement: redis.Redis | None = None) -> FlushResult:
        """Write everything buffered in one pipelined round trip to ``client`` (the
        telemetry Redis), and the established users behind each address to
        ``enforcement`` (the Redis the decision script reads them from; a second round
        trip only when it is another Redis). On a Redis error the counts go back into
        the buffer and the error is raised (re-adding to a HyperLogLog is idempotent)."""
        with self._lock:
            drained, self._minutes = self._minutes, {}
            self._sources = 0
            self._last_flush = self._monotonic()
        if not drained:
            return FlushResult(0, {})
        try:
            pipe = client.pipeline(transaction=False)
            separate = enforcement is not None and enforcement is not client
            enf = enforcement.pipeline(transaction=False) if separate and enforcement else pipe
            reads: list[tuple[int, tuple[int, str]]] = []
            est_reads: list[tuple[int, tuple[int, str]]] = []
            for minute, counts in drained.items():
                seen = self._fp_seen.get(minute, Counter())
                heavy = {
                    fp for fp in counts.fingerprints if seen[fp] >= FINGERPRINT_IPS_MIN_REQUESTS
                }
                _write(pipe, enf, minute, counts, self._top_k, reads, heavy, est_reads)
            enf_results = enf.execute() if enf is not pipe and len(enf) else []
            results = pipe.execute()
            if enf is pipe:
                enf_results = results
        except redis.RedisError:
            with self._lock:
                for minute, counts in drained.items():
                    self._minutes.setdefault(minute, MinuteCounts()).merge(counts)
                    self._sources += counts.sources()
            raise
        return FlushResult(
            len(drained),
            {key: int(float(results[index])) for index, key in reads},
            {key: int(enf_results[index]) for index, key in est_reads},
        )


def _top(counter: Counter[str], k: int) -> list[tuple[str, int]]:
    return counter.most_common(k) if len(counter) > k else list(counter.items())


def _write(
    pipe: redis.client.Pipeline,
    enf: redis.client.Pipeline,
    minute: int,
    counts: MinuteCounts,
    top_k: int,
    reads: list[tuple[int, tuple[int, str]]],
    heavy: set[str],
    est_reads: list[tuple[int, tuple[int, str]]],
) -> None:
    """Queue one minute's writes; ``reads`` gets (pipeline index, (minute, address)) of
    each pre-auth total to read back; ``heavy``: the fingerprints whose addresses are
    counted."""
    stats = keys.stats(minute)
    for name, n in counts.fields.items():
        pipe.hincrby(stats, name, n)
    pipe.expire(stats, DDOS_STATS_TTL_SEC)
    ips = keys.stats_ips(minute)
    for ip, n in _top(counts.ips, top_k):
        pipe.zincrby(ips, n, ip)
    pipe.expire(ips, TOP_LISTS_TTL_SEC)
    hll = keys.stats_hll(minute)
    if counts.ips:
        pipe.pfadd(hll, *counts.ips)
        pipe.expire(hll, DDOS_STATS_TTL_SEC)
    fps = keys.stats_fingerprints(minute)
    for fp, n in _top(counts.fingerprints, FINGERPRINT_TOP_K):
        pipe.zincrby(fps, n, fp)
        if fp in heavy:
            fp_ips = keys.stats_fingerprint_ips(minute, fp)
            pipe.pfadd(fp_ips, *counts.fingerprint_ips[fp])
            pipe.expire(fp_ips, TOP_LISTS_TTL_SEC)
    if counts.fingerprints:
        pipe.zremrangebyrank(fps, 0, -(FINGERPRINT_KEEP + 1))
        pipe.expire(fps, TOP_LISTS_TTL_SEC)
    if counts.preauth:
        pre = keys.stats_preauth(minute)
        for ip, n in _top(counts.preauth, top_k):
            reads.append((len(pipe), (minute, ip)))
            pipe.zincrby(pre, n, ip)
        pipe.expire(pre, TOP_LISTS_TTL_SEC)
    for ip, users in counts.ip_users.items():
        per_ip = keys.stats_ip_users(minute, ip)
        for uid, n in _top(users, top_k):
            pipe.zincrby(per_ip, n, uid)
        pipe.expire(per_ip, TOP_LISTS_TTL_SEC)
    for ip, uids in counts.ip_established.items():
        behind = keys.stats_ip_established(minute, ip)
        enf.pfadd(behind, *uids)
        enf.expire(behind, TOP_LISTS_TTL_SEC)
        est_reads.append((len(enf), (minute, ip)))
        queue_pfcount(enf, behind)
    if counts.established:
        users_hll = keys.stats_users_hll(minute)
        pipe.pfadd(users_hll, *counts.established)
        pipe.expire(users_hll, DDOS_STATS_TTL_SEC)
    if counts.overddos_users:
        over = keys.stats_overddos_users(minute)
        pipe.pfadd(over, *counts.overddos_users)
        pipe.expire(over, DDOS_STATS_TTL_SEC)
