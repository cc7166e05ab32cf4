"""The SLI recorder: every answered call counted per minute, per scope, in Redis.

The edges (:func:`shared.edge.callable_function`, the app's
:func:`shared.ratelimit.middleware.rate_limited` handlers) call :meth:`SliRecorder.record`
once per answered call: whether the system failed it (:func:`is_bad_code`) and how long
it took. The recorder adds one to ``n``, ``bad`` and ``slow`` of each scope the call
belongs to (``platform``, its endpoint class, its callable) in this instance's memory,
and at most every :data:`~shared.thresholds.SLO_RECORDER_FLUSH_SEC` adds what it holds to
Redis in one pipeline (``HINCRBY pack391:sli:{epoch minute} {scope}|n ...``; a key per
minute, kept :data:`~shared.thresholds.SLO_RECENT_MINUTES_TTL_SEC`). The flush runs on
the request that finds it due, never on a background thread: Cloud Run gives an instance
CPU only while it serves a request.

A failed flush keeps the counts for the next one (bounded by minutes held); what an
instance holds when it is shut down (at most one flush interval) is lost. The evaluator
reads a minute two minutes after it ended, so a late flush still counts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import redis

from shared.slo.objectives import PLATFORM, Objective, objective_for
from shared.thresholds import SLO_RECENT_MINUTES_TTL_SEC, SLO_RECORDER_FLUSH_SEC

log = logging.getLogger("pack391.slo")

BAD_CODES = frozenset({"INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN", "DATA_LOSS"})
"""Callable error statuses that are the system's failure (the availability SLI's bad
events). A caller's own error (INVALID_ARGUMENT, PERMISSION_DENIED, RESOURCE_EXHAUSTED,
NOT_FOUND, FAILED_PRECONDITION ...) is the system working: a good event."""

FIELDS = ("n", "bad", "slow")

MAX_MINUTES_HELD = 10
"""Minutes an instance keeps when Redis stays unwritable (older ones are dropped, counted
in :attr:`SliRecorder.dropped`)."""


def is_bad_code(status: str | None) -> bool:
    """Whether a callable's answer status (None: success) is the system's failure."""
    return status is not None and status.upper().replace("-", "_") in BAD_CODES


def minute_key(minute_epoch: int) -> str:
    """The Redis hash of one minute (epoch minute: seconds // 60)."""
    return f"pack391:sli:{minute_epoch}"


def field_name(scope: str, what: str) -> str:
    return f"{scope}|{what}"


def parse_minute(raw: Mapping[Any, Any]) -> dict[str, dict[str, int]]:
    """A minute's hash -> scope -> {n, bad, slow}."""
    out: dict[str, dict[str, int]] = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        scope, _, what = name.rpartition("|")
        if what not in FIELDS or not scope:
            continue
        out.setdefault(scope, {"n": 0, "bad": 0, "slow": 0})[what] = int(value)
    return out


class SliRecorder:
    """One instance's recorder (one per process: :func:`default_recorder`). ``client``
    None: it never flushes itself; its owner takes the counts with :meth:`drain`."""

    def __init__(
        self,
        client: Callable[[], redis.Redis] | None,
        objectives: Callable[[], Mapping[str, Objective]],
        flush_every_sec: float = SLO_RECORDER_FLUSH_SEC,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._objectives = objectives
        self._every = flush_every_sec
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._minutes: dict[int, Counter[str]] = {}
        self._last_flush = monotonic()
        self.dropped = 0
        """Counts dropped because Redis stayed unwritable for :data:`MAX_MINUTES_HELD`."""

    def record(
        self,
        now: datetime,
        scopes: Iterable[str],
        bad: bool,
        latency_ms: float,
    ) -> None:
        """Count one answered call in each of ``scopes`` and :data:`PLATFORM`; flush
        when due. Never raises (a recorder failure must not fail the call)."""
        try:
            overrides = self._objectives()
            minute = int(now.timestamp()) // 60
            with self._lock:
                counts = self._minutes.get(minute)
                if counts is None:
                    counts = self._minutes[minute] = Counter()
                for scope in (PLATFORM, *scopes):
                    counts[field_name(scope, "n")] += 1
                    if bad:
                        counts[field_name(scope, "bad")] += 1
                    if latency_ms > objective_for(scope, overrides).latency_ms:
                        counts[field_name(scope, "slow")] += 1
            if self._monotonic() - self._last_flush >= self._every:
                self.flush()
        except Exception:  # the call's answer matters more than its count
            log.exception("slo: a call was not recorded")

    def flush(self) -> int:
        """Add what this instance holds to Redis; the minutes written (0 when another
        request is flushing, or nothing is held)."""
        if self._client is None or not self._flush_lock.acquire(blocking=False):
            return 0  # no client: the owner drains and writes (:meth:`drain`)
        try:
            drained = self.drain()
            if not drained:
                return 0
            try:
                pipe = self._client().pipeline(transaction=False)
                queue_flush(pipe, drained)
                pipe.execute()
            except redis.RedisError as exc:
                log.warning("slo: recorded calls kept for the next flush: %r", exc)
                self.keep(drained)
                return 0
            return len(drained)
        finally:
            self._flush_lock.release()

    def drain(self) -> dict[int, Counter[str]]:
        """Take what this instance holds (for a caller that writes it itself, such as an
        asyncio server with its own Redis client: :func:`queue_flush`, then :meth:`keep`
        what could not be written)."""
        with self._lock:
            drained, self._minutes = self._minutes, {}
            self._last_flush = self._monotonic()
        return drained

    def keep(self, drained: dict[int, Counter[str]]) -> None:
        """Hold ``drained`` again for the next flush (bounded: the oldest minutes beyond
        :data:`MAX_MINUTES_HELD` are dropped and counted)."""
        with self._lock:
            for minute, counts in drained.items():
                self._minutes.setdefault(minute, Counter()).update(counts)
            for old in sorted(self._minutes)[:-MAX_MINUTES_HELD]:
                self.dropped += self._minutes.pop(old)[field_name(PLATFORM, "n")]


def queue_flush(pipe: Any, drained: Mapping[int, Mapping[str, int]]) -> None:
    """Queue the ``HINCRBY``s and ``EXPIRE``s of drained minutes on a pipeline (sync or
    asyncio, one Redis or a cluster: one key per command)."""
    for minute, counts in drained.items():
        key = minute_key(minute)
        for name, n in counts.items():
            pipe.hincrby(key, name, n)
        pipe.expire(key, SLO_RECENT_MINUTES_TTL_SEC)


def read_minutes(
    client: redis.Redis, minutes: Iterable[int]
) -> dict[int, dict[str, dict[str, int]]]:
    """Several minutes' hashes in one pipeline: epoch minute -> scope -> counts (a
    minute Redis does not hold is absent)."""
    wanted = list(minutes)
    pipe = client.pipeline(transaction=False)
    for minute in wanted:
        pipe.hgetall(minute_key(minute))
    rows = pipe.execute()
    return {m: parse_minute(raw) for m, raw in zip(wanted, rows, strict=True) if raw}


def write_scope_counts(
    client: redis.Redis, minute: int, counts: Mapping[str, Mapping[str, int]]
) -> None:
    """Set (not add: a re-run writes the same values) some scopes' counts of a minute:
    the services' counts, which come from the scale guard's metrics, not from calls."""
    mapping = {
        field_name(scope, what): int(values.get(what, 0))
        for scope, values in counts.items()
        for what in FIELDS
    }
    if not mapping:
        return
    pipe = client.pipeline(transaction=False)
    pipe.hset(minute_key(minute), mapping=mapping)  # type: ignore[arg-type]
    pipe.expire(minute_key(minute), SLO_RECENT_MINUTES_TTL_SEC)
    pipe.execute()


_DEFAULT: SliRecorder | None = None
_DEFAULT_LOCK = threading.Lock()


def configured_objectives() -> Mapping[str, Objective]:
    """``PACK391_SLO_OBJECTIVES``, parsed once per value."""
    from shared.config import SLO_OBJECTIVES
    from shared.slo.objectives import parse_objectives

    raw = SLO_OBJECTIVES.value
    cached = _PARSED.get(raw)
    if cached is None:
        cached = _PARSED[raw] = parse_objectives(raw)
    return cached


_PARSED: dict[str, Mapping[str, Objective]] = {}


def default_recorder() -> SliRecorder:
    """This process's recorder, on the bundle's Redis."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            from shared.redis import get_redis

            _DEFAULT = SliRecorder(get_redis, configured_objectives)
        return _DEFAULT


def reset_default_recorder() -> None:
    """Forget the process's recorder (tests that switch Redis servers)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        _DEFAULT = None
