"""Ops' Redis reads: whether Redis answers (the :data:`functions.ops.ports.RedisUp`
port) and DDoS mode as the ddos area publishes it (:mod:`functions.ddos.api`; the
:data:`functions.ops.ports.DDoSModeReader` port)."""

from __future__ import annotations

from datetime import datetime

import redis

from functions.ddos import api as ddos
from shared.clock import from_ms


def redis_up(client: redis.Redis) -> bool:
    """Whether Redis answers a PING (a service of the system-health list)."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def ddos_mode(client: redis.Redis) -> tuple[bool, datetime | None, str | None]:
    """(active, until, reason) of DDoS mode; when Redis does not answer, off with the
    reason "unknown" (the dashboard still loads; Redis shows as down)."""
    try:
        mode = ddos.ddos_mode(client)
    except redis.RedisError:
        return False, None, "unknown: Redis is unavailable"
    if mode is None:
        return False, None, None
    return True, from_ms(mode.until_ms), mode.reason
