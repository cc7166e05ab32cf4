"""Is a service isolated? The one check every area calls before calling a service.

The scaling engine (``functions/scaling``) isolates a service whose error rate is over
the threshold: it writes a flag to Redis that this module reads. While the circuit is
``open`` every caller fails fast with ``UNAVAILABLE`` instead of piling onto a failing
service; while it is ``half_open`` a small share of calls
(:data:`shared.thresholds.ISOLATION_HALF_OPEN_ADMIT_PCT`) goes through so the engine can
see whether the service recovered. The flag expires on its own
(:data:`shared.thresholds.ISOLATION_FLAG_TTL_SEC`) unless the engine refreshes it.

If Redis cannot be reached the check fails open (the call goes through, logged):
isolation protects a service, it must not become a second outage.

    from shared.isolation import ensure_available
    ensure_available("payment-processor")   # raises ServiceIsolated -> UNAVAILABLE
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import redis

from shared.errors import BackendUnavailable
from shared.models.scaling import IsolationState
from shared.redis import get_redis
from shared.thresholds import ISOLATION_FLAG_TTL_SEC, ISOLATION_HALF_OPEN_ADMIT_PCT

log = logging.getLogger("pack391.isolation")

PREFIX = "{pack391:scaling}"
"""Hash tag shared with the scaling engine's keys."""


class ServiceIsolated(BackendUnavailable):
    """The service is isolated by the scaling engine: answered as ``UNAVAILABLE``."""


def isolation_key(service_id: str) -> str:
    return f"{PREFIX}:isolated:{service_id}"


def set_isolation(client: redis.Redis, service_id: str, state: IsolationState) -> None:
    """Write (or clear) the flag; only the scaling engine calls this."""
    if state is IsolationState.NONE:
        client.delete(isolation_key(service_id))
    else:
        client.set(isolation_key(service_id), state.value, ex=ISOLATION_FLAG_TTL_SEC)


def isolation_state(service_id: str, client: redis.Redis | None = None) -> IsolationState:
    """The service's circuit as callers see it; ``none`` when Redis is unreachable."""
    try:
        raw = (client or get_redis()).get(isolation_key(service_id))
    except redis.RedisError:
        log.warning("isolation flag of %s unreadable: failing open", service_id, exc_info=True)
        return IsolationState.NONE
    if not raw:
        return IsolationState.NONE
    try:
        return IsolationState(str(raw))
    except ValueError:
        log.error("isolation flag of %s holds %r: ignored", service_id, raw)
        return IsolationState.NONE


def ensure_available(
    service_id: str,
    client: redis.Redis | None = None,
    draw: Callable[[], float] = random.random,
) -> None:
    """Raise :class:`ServiceIsolated` when calls to ``service_id`` must fail fast now.

    ``draw`` returns a number in [0, 1) deciding whether a half-open call is let through.
    """
    state = isolation_state(service_id, client)
    if state is IsolationState.NONE:
        return
    if state is IsolationState.HALF_OPEN and draw() * 100 < ISOLATION_HALF_OPEN_ADMIT_PCT:
        return
    raise ServiceIsolated(
        f"{service_id} is isolated (error rate over the threshold): try again later",
        serviceId=service_id,
        isolation=state.value,
    )
