"""The budgets' actions as the hot paths see them: one JSON snapshot in Redis.

``pack391_evaluateSlos`` writes :class:`~shared.models.slo.ActionsSnapshot` every minute
under :data:`ACTIONS_KEY` with a TTL (:data:`~shared.thresholds.SLO_ACTIONS_TTL_SEC`).
The rate limiter reads it with the other global flags (one pipelined read a second per
instance, :class:`shared.ratelimit.door.BlockedAddresses`); market admissions read it
through :func:`read_actions`. A missing, expired or unreadable snapshot means *no action*:
a stopped evaluator or a lost Redis never leaves deploys frozen or traffic shed.

Shadow mode: where an action would have acted, :func:`count_shadow` adds one to the
minute's counter (``pack391:slo:shadow:{minute}``, a hash by action), which the evaluator
reports beside the decision, so a team sees what enforcing would have done.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

import redis

from shared.models.slo import ActionsSnapshot, SloAction
from shared.thresholds import SLO_ACTIONS_TTL_SEC, SLO_RECENT_MINUTES_TTL_SEC

log = logging.getLogger("pack391.slo")

ACTIONS_KEY = "pack391:{pack391:g}:slo:actions"
"""The snapshot's key, in the global keys' slot (``{pack391:g}``, as
:data:`shared.ratelimit.keys.GLOBAL`: read with them in one pipeline)."""


def shadow_key(minute_epoch: int) -> str:
    """The shadow counters of one minute (epoch minute)."""
    return f"pack391:slo:shadow:{minute_epoch}"


def parse_actions(raw: Any) -> ActionsSnapshot | None:
    """The snapshot from its stored JSON (bytes or str); None when absent or unreadable
    (logged: a snapshot this code cannot read is no action, not an error per request)."""
    if raw is None:
        return None
    try:
        return ActionsSnapshot.model_validate_json(raw)
    except ValueError as exc:
        log.warning("slo actions snapshot unreadable, acting on none: %r", exc)
        return None


def write_actions(client: redis.Redis, snapshot: ActionsSnapshot) -> None:
    """Store the snapshot with its TTL (the evaluator, every minute)."""
    client.set(
        ACTIONS_KEY,
        snapshot.model_dump_json(by_alias=True),
        ex=SLO_ACTIONS_TTL_SEC,
    )


def read_actions(client: redis.Redis) -> ActionsSnapshot | None:
    """The current snapshot, or None (absent, expired, Redis unreadable: no action)."""
    try:
        raw = client.get(ACTIONS_KEY)
    except redis.RedisError as exc:
        log.warning("slo actions not read, acting on none: %r", exc)
        return None
    return parse_actions(raw)


def count_shadow(client: redis.Redis, action: SloAction, now: datetime) -> None:
    """One event a shadowed action would have acted on (best effort: a Redis error is
    logged, never the caller's failure)."""
    key = shadow_key(int(now.timestamp()) // 60)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(key, action.value, 1)
        pipe.expire(key, SLO_RECENT_MINUTES_TTL_SEC)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("slo shadow count lost: %r", exc)


def read_shadow(client: redis.Redis, minute_epoch: int) -> dict[str, int]:
    """One minute's shadow counts by action."""
    raw = client.hgetall(shadow_key(minute_epoch))
    return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in dict(raw).items()}


class ShadowTally:
    """Shadow counts of a hot path, batched per instance: :meth:`add` counts in memory,
    :meth:`flush` adds them to the same minute counters as :func:`count_shadow` in one
    pipelined round trip (the rate limiter flushes with its traffic counters, about once a
    second), so a shadowed action costs a request no round trip of its own. Logs at most
    once a minute what the action would have done."""

    def __init__(self, action: SloAction) -> None:
        self._action = action
        self._lock = threading.Lock()
        self._minutes: dict[int, int] = {}
        self._logged_minute = -1

    def add(self, now: datetime) -> None:
        """One event the shadowed action would have acted on, at ``now``."""
        minute = int(now.timestamp()) // 60
        with self._lock:
            self._minutes[minute] = self._minutes.get(minute, 0) + 1

    def pending(self) -> int:
        """Events counted and not written yet."""
        with self._lock:
            return sum(self._minutes.values())

    def flush(self, client: redis.Redis) -> int:
        """Write the buffered counts; how many were written. A Redis error keeps them for
        the next flush (logged, never the caller's failure)."""
        with self._lock:
            drained, self._minutes = self._minutes, {}
        if not drained:
            return 0
        try:
            pipe = client.pipeline(transaction=False)
            for minute, n in drained.items():
                pipe.hincrby(shadow_key(minute), self._action.value, n)
                pipe.expire(shadow_key(minute), SLO_RECENT_MINUTES_TTL_SEC)
            pipe.execute()
        except redis.RedisError as exc:
            with self._lock:
                for minute, n in drained.items():
                    self._minutes[minute] = self._minutes.get(minute, 0) + n
            log.warning("slo shadow counts kept for the next flush: %r", exc)
            return 0
        newest = max(drained)
        if newest != self._logged_minute:
            self._logged_minute = newest
            log.info(
                "slo shadow: %s would have acted on %d events (minute %d, this instance)",
                self._action.value,
                drained[newest],
                newest,
            )
        return sum(drained.values())
