"""One Redis client factory and the Lua scripts, loaded once per client.

Clients are pooled per URL, with short socket timeouts (``PACK391_REDIS_TIMEOUT_MS``)
so that a slow or dead Redis is an error in tens of milliseconds, never a hang.

One Redis (``redis://``, ``rediss://``: Memorystore for Redis, a standalone server) or a
Redis Cluster (``redis+cluster://HOST:PORT``, ``rediss+cluster://``: Memorystore for Redis
Cluster's discovery endpoint, or any node of a cluster), chosen by the URL alone: the
cluster client (redis-py's ``RedisCluster``) discovers the shards from that one address and
routes each command by its key's hash slot. Every multi-key command, script and
transaction of the bundle touches keys of one hash slot (``{...}`` hash tags,
:mod:`shared.ratelimit.keys`), so the same code runs on both.
Scripts live in ``shared/lua/*.lua`` (and ``functions/<area>/lua``) and run
through redis-py's ``Script``: EVALSHA, reloaded by itself on NOSCRIPT.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError
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


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""URL schemes that select the cluster client, and the scheme it connects with."""


def cluster_url(url: str) -> str | None:
    """The plain ``redis://``/``rediss://`` URL of a cluster URL (None: not a cluster URL).
    A cluster has one database: a ``/0`` path is dropped, any other is refused."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    if plain is None or not sep:
        return None
    address, _, path = rest.partition("/")
    if path.strip("/") not in ("", "0"):
        raise ValueError(f"REDIS_URL: a Redis Cluster has only database 0, not /{path}")
    return f"{plain}://{address}"


def is_cluster(client: object) -> bool:
    """Whether ``client`` is the cluster client."""
    return isinstance(client, RedisCluster)


_clients: dict[tuple[str, int, str, str], redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(url: str, timeout_ms: int, password: str = "", ca_cert: str = "") -> redis.Redis:
    """The one client per configuration of this instance, built under a lock: a cold
    instance's first concurrent requests would otherwise each build a client (and a pool),
    and each a limiter keyed by it (``functools.cache`` does not lock)."""
    key = (url, timeout_ms, password, ca_cert)
    client = _clients.get(key)
    if client is not None:
        return client
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _new_client(*key)
        return client


def _new_client(url: str, timeout_ms: int, password: str, ca_cert: str) -> redis.Redis:
    timeout = timeout_ms / 1000
    plain = cluster_url(url)
    settings: dict[str, Any] = {
        **connection_options(plain or url, password, ca_cert),
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": True,
        "health_check_interval": 30,
        "max_connections": 64,
        # No retries: a decision that waits for Redis to come back is worse than the
        # caller's declared failure policy (fail open or closed) applied now.
        "retry": Retry(NoBackoff(), 0),
    }
    if plain is None:
        return redis.Redis.from_url(url, **settings)
    # The cluster client has most of the single client's commands (what the bundle uses:
    # single-key commands, pipelines, scripts and single-slot transactions), routed by
    # slot; the callers are typed against the single client.
    return cast(redis.Redis, RedisCluster.from_url(plain, **settings))


def client_for_url(url: str, timeout_ms: int = 5000, **options: Any) -> redis.Redis:
    """A new (not pooled, not cached) client for ``url``, for tooling and tests that are
    handed a URL: the cluster client for a ``redis+cluster://`` URL, else the single one;
    replies decoded unless ``decode_responses=False`` is given. The caller closes it."""
    timeout = timeout_ms / 1000
    settings: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": True,
        **options,
    }
    plain = cluster_url(url)
    if plain is not None:
        return cast(redis.Redis, RedisCluster.from_url(plain, **settings))
    return redis.Redis.from_url(url, **settings)


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
    with _clients_lock:
        _clients.clear()
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


@dataclass(frozen=True)
class ScriptCall:
    """One script to run, on keys of one hash slot."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Any]


def run_scripts(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Run every call in one pipeline (one round trip on one Redis; on a cluster, one per
    shard the calls' slots live on, sent before any answer is read) and return their
    results in order. A script a server does not know yet (NOSCRIPT: a new or restarted
    node) is loaded and that call sent again (it did not run); any other error raises.

    EVALSHA is sent with ``execute_command``: redis-py's cluster pipeline refuses its
    ``evalsha`` method (it cannot know the slot of a script in general), but routes the
    command by its first key, which is right here, since each call's keys share a slot."""
    if len(calls) == 1:
        only = calls[0]
        return [only.script(keys=list(only.keys), args=list(only.args), client=client)]
    pipe = client.pipeline(transaction=False)
    cluster = is_cluster(client)
    for call in calls:
        # On a cluster, the node is named here from the first key's slot: redis-py's
        # cluster pipeline otherwise asks a server for the keys of every EVALSHA
        # (COMMAND GETKEYS, one more round trip each: measured 2 of 13 commands and
        # most of the client's time per decision).
        options = (
            {"target_nodes": cast(RedisCluster, client).get_node_from_key(call.keys[0])}  # type: ignore[no-untyped-call]
            if cluster
            else {}
        )
        pipe.execute_command(  # type: ignore[no-untyped-call]
            "EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args, **options
        )
    results: list[Any] = pipe.execute(raise_on_error=False)
    for i, result in enumerate(results):
        if isinstance(result, NoScriptError):
            call = calls[i]
            results[i] = call.script(keys=list(call.keys), args=list(call.args), client=client)
        elif isinstance(result, Exception):
            raise result
    return results


def queue_pfcount(pipe: Any, key: str) -> None:
    """Queue ``PFCOUNT key`` (one key) on a pipeline of either client: redis-py's cluster
    pipeline refuses its ``pfcount`` method (a PFCOUNT of several keys may span slots), so
    the command is queued as it is sent."""
    pipe.execute_command("PFCOUNT", key)
