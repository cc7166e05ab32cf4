"""One Redis client factory and the Lua scripts, loaded once per client.

Clients are pooled per URL, with short socket timeouts (``PACK391_REDIS_TIMEOUT_MS``)
so that a slow or dead Redis is an error in tens of milliseconds, never a hang.
Scripts live in ``shared/lua/*.lua`` (and ``functions/<area>/lua``) and run
through redis-py's ``Script``: EVALSHA, reloaded by itself on NOSCRIPT.
"""

from __future__ import annotations

import functools
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from shared.config import REDIS_TELEMETRY_URL, REDIS_TIMEOUT_MS, REDIS_URL

LUA_DIR = Path(__file__).with_name("lua")


@functools.cache
def _client(url: str, timeout_ms: int) -> redis.Redis:
    timeout = timeout_ms / 1000
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        health_check_interval=30,
        max_connections=64,
        # No retries: a decision that waits for Redis to come back is worse than
        # the caller's declared failure policy (fail open or closed) applied now.
        retry=Retry(NoBackoff(), 0),
    )


def get_redis() -> redis.Redis:
    """The pooled client for ``REDIS_URL``."""
    return _client(REDIS_URL.value, REDIS_TIMEOUT_MS.value)


def get_telemetry_redis() -> redis.Redis:
    """The client for the traffic counters: ``PACK391_REDIS_TELEMETRY_URL`` when set (a
    Redis with an eviction policy of its own), else the same client as :func:`get_redis`."""
    url = REDIS_TELEMETRY_URL.value.strip()
    if not url or url == REDIS_URL.value:
        return get_redis()
    return _client(url, REDIS_TIMEOUT_MS.value)


def reset_clients() -> None:
    """Forget cached clients and scripts (tests that change the environment)."""
    _client.cache_clear()
    _scripts.clear()


_scripts: dict[tuple[int, str], Script] = {}


def lua_script(path: Path, client: redis.Redis) -> Script:
    """The script at ``path`` registered on ``client`` (the file is read once per client)."""
    key = (id(client), str(path))
    script = _scripts.get(key)
    if script is None:
        script = client.register_script(path.read_text(encoding="utf-8"))
        _scripts[key] = script
    return script
