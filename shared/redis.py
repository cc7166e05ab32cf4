"""One Redis client factory and the Lua scripts, loaded once per client.

Clients are pooled per URL, with short socket timeouts (``PACK391_REDIS_TIMEOUT_MS``)
so that a slow or dead Redis is an error in tens of milliseconds, never a hang.
Scripts live in ``shared/lua/*.lua`` (and ``functions/<area>/lua``) and run
through redis-py's ``Script``: EVALSHA, reloaded by itself on NOSCRIPT.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from shared.config import (
    REDIS_AUTH,
    REDIS_CA_CERT,
    REDIS_TELEMETRY_URL,
    REDIS_TIMEOUT_MS,
    REDIS_URL,
)

LUA_DIR = Path(__file__).with_name("lua")


def ca_pem(raw: str) -> str:
    """``PACK391_REDIS_CA_CERT`` as PEM text: a literal ``\\n`` (how one line of a dotenv
    file carries it) stands for a line break."""
    return raw.strip().replace("\\n", "\n")


def connection_options(url: str, password: str, ca_cert: str) -> dict[str, Any]:
    """What the client adds to ``url``: the AUTH string (``PACK391_REDIS_AUTH``, bound as a
    secret; empty: none, or the URL's own) and, for ``rediss://``, TLS that verifies the
    server: its certificate must chain to ``ca_cert`` (PEM; Memorystore's per-instance CA,
    which no system trusts) or, without one, to the system's CAs.

    With a CA given the host name is not checked: the CA is the instance's own (Memorystore
    creates one per instance), so a certificate it signed can only be that instance's, and
    the instance is reached by its private address, which its certificate need not name."""
    options: dict[str, Any] = {}
    if password:
        options["password"] = password
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        pem = ca_pem(ca_cert)
        if pem:
            options["ssl_ca_data"] = pem
            options["ssl_check_hostname"] = False
    return options


@functools.cache
def _client(url: str, timeout_ms: int, password: str = "", ca_cert: str = "") -> redis.Redis:
    timeout = timeout_ms / 1000
    return redis.Redis.from_url(
        url,
        **connection_options(url, password, ca_cert),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        health_check_interval=30,
        max_connections=64,
        # No retries: a decision that waits for Redis to come back is worse than
        # the caller's declared failure policy (fail open or closed) applied now.
        retry=Retry(NoBackoff(), 0),
    )


def _secure() -> tuple[str, str]:
    """The AUTH string (empty where the secret is not bound) and the server CA."""
    return REDIS_AUTH.value, REDIS_CA_CERT.value


def get_redis() -> redis.Redis:
    """The pooled client for ``REDIS_URL`` (with the AUTH secret and the CA, when set)."""
    return _client(REDIS_URL.value, REDIS_TIMEOUT_MS.value, *_secure())


def get_telemetry_redis() -> redis.Redis:
    """The client for the traffic counters: ``PACK391_REDIS_TELEMETRY_URL`` when set (a
    Redis with an eviction policy of its own), else the same client as :func:`get_redis`."""
    url = REDIS_TELEMETRY_URL.value.strip()
    if not url or url == REDIS_URL.value:
        return get_redis()
    return _client(url, REDIS_TIMEOUT_MS.value, *_secure())


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
