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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.auth import Role
from shared.config import BUDGET_OPS_MS, BUDGET_SCHEDULED_MS, BUDGET_USER_MS

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


def skipped_runs() -> dict[str, dict[str, Any]]:
    """The last skipped run of each scheduled function (tools, the dashboard, tests)."""
    from shared.redis import get_redis

    raw = get_redis().hgetall(SKIPPED_KEY)
    return {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}
