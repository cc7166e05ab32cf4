"""Each call's budget at the edge (:mod:`shared.deadline`), and the record of a scheduled
run skipped because a dependency did not answer within it.

- A callable's budget: the function's own ``timeout_sec`` less :data:`TIMEOUT_MARGIN_SEC`
  when it declares one (long admin work: a deploy step, a manual scale, a restore drill),
  else by its role: ``PACK391_BUDGET_USER_MS`` (3 s) for user and service callables,
  ``PACK391_BUDGET_OPS_MS`` (10 s) for ops and admin ones.
- A scheduled run's budget: its ``timeout_sec`` less the margin when it declares one,
  else ``PACK391_BUDGET_SCHEDULED_MS`` (45 s: an every-minute job ends within its minute).

A scheduled run whose dependency did not answer in time stops where it was, decides
nothing more, and is recorded as skipped: in the log (``skipped: firestore unavailable``)
and in Redis (:func:`record_skipped`, the hash ``pack391:jobs:skipped``, which the ops
dashboard and ``pack391 chaos`` read); the run answers 200, so Cloud Scheduler does not
retry it into the same stall (the next run comes within its interval).

Every stall the edge answers, a callable's ``UNAVAILABLE`` or a skipped run, is also
counted per minute and dependency (:func:`record_stall`: the hash
``pack391:{stalls}:{epochMinute}``, kept ``DEPENDENCY_STALL_MARK_TTL_SEC``), which the
deploy guard's canary judge reads as a platform signal (:func:`stalls_of`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.auth import Role
from shared.config import BUDGET_OPS_MS, BUDGET_SCHEDULED_MS, BUDGET_USER_MS
from shared.thresholds import DEPENDENCY_STALL_MARK_TTL_SEC

log = logging.getLogger("pack391")

TIMEOUT_MARGIN_SEC = 5.0
"""What a function with its own timeout keeps back from it: time to answer after its
dependencies' deadline (the platform stops the function at its timeout without an answer)."""

SKIPPED_KEY = "pack391:jobs:skipped"
"""Redis hash: scheduled function -> JSON of its last skipped run
(``{"at", "dependency", "requestId", "message"}``)."""


def _timeout_of(options: Mapping[str, Any]) -> float | None:
    timeout = options.get("timeout_sec")
    if timeout is None:
        return None
    value = timeout if isinstance(timeout, int | float) else getattr(timeout, "value", None)
    return float(value) if isinstance(value, int | float) else None


def call_budget_sec(role: Role, options: Mapping[str, Any]) -> float:
    """The budget of one call of a callable declared with ``role`` and ``options``."""
    timeout = _timeout_of(options)
    if timeout is not None:
        return max(1.0, timeout - TIMEOUT_MARGIN_SEC)
    staff = role in (Role.OPS, Role.ADMIN)
    return (BUDGET_OPS_MS.value if staff else BUDGET_USER_MS.value) / 1000


def scheduled_budget_sec(options: Mapping[str, Any]) -> float:
    """The budget of one run of a scheduled function declared with ``options``."""
    timeout = _timeout_of(options)
    if timeout is not None:
        return max(1.0, timeout - TIMEOUT_MARGIN_SEC)
    return BUDGET_SCHEDULED_MS.value / 1000


def record_skipped(job: str, dependency: str, request_id: str, message: str, now: datetime) -> None:
    """Log a run skipped for ``dependency`` and keep it in Redis (best effort: Redis may be
    the dependency that is down)."""
    log.warning("%s: skipped: %s unavailable (run %s): %s", job, dependency, request_id, message)
    import redis

    from shared.redis import get_redis

    record = {"at": now.isoformat(), "dependency": dependency, "requestId": request_id,
              "message": message}  # fmt: skip
    try:
        get_redis().hset(SKIPPED_KEY, job, json.dumps(record))
    except redis.RedisError as exc:
        log.warning("%s: the skipped run could not be recorded in Redis: %s", job, exc)
    record_stall(dependency, now)


def stall_key(minute: int) -> str:
    """The per-minute hash of stalled calls (``minute``: minutes since the epoch); one
    hash tag for every minute, so a read of several minutes is one slot on a cluster."""
    return f"pack391:{{stalls}}:{minute}"


def record_stall(dependency: str, now: datetime) -> None:
    """Count one call or run that ``dependency`` did not answer within its budget, in
    ``now``'s minute (best effort: a Redis that is down or stalled records nothing)."""
    import redis

    from shared.redis import get_redis

    if dependency == "redis":
        return  # Redis cannot record its own stall
    key = stall_key(int(now.timestamp()) // 60)
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hincrby(key, dependency, 1)
        pipe.expire(key, DEPENDENCY_STALL_MARK_TTL_SEC)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("a %s stall could not be recorded in Redis: %s", dependency, exc)


def stalls_of(client: Any, minutes: list[datetime]) -> dict[datetime, dict[str, int]]:
    """Minute -> dependency -> stalled calls, for the ``minutes`` that had any."""
    if not minutes:
        return {}
    pipe = client.pipeline(transaction=False)
    for minute in minutes:
        pipe.hgetall(stall_key(int(minute.timestamp()) // 60))
    out: dict[datetime, dict[str, int]] = {}
    for minute, raw in zip(minutes, pipe.execute(), strict=True):
        counts = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
        if counts:
            out[minute] = counts
    return out


def skipped_runs() -> dict[str, dict[str, Any]]:
    """The last skipped run of each scheduled function (tools, the dashboard, tests)."""
    from shared.redis import get_redis

    raw = get_redis().hgetall(SKIPPED_KEY)
    return {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}
