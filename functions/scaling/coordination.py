"""Redis coordination of the scaling area, in both modes (local and Google Cloud).

- The isolation flag: is a service isolated? The one check every area calls before
  calling a service (published through :mod:`functions.scaling.api`).

  The scaling engine isolates a service whose error rate is over the threshold: it writes
  a flag to Redis that :func:`isolation_state` reads. While the circuit is ``open`` every
  caller fails fast with ``UNAVAILABLE`` instead of piling onto a failing service; while it
  is ``half_open`` a small share of calls
  (:data:`shared.thresholds.ISOLATION_HALF_OPEN_ADMIT_PCT`) goes through so the engine can
  see whether the service recovered. The flag expires on its own
  (:data:`shared.thresholds.ISOLATION_FLAG_TTL_SEC`) unless the engine refreshes it.

  If Redis cannot be reached the check fails open (the call goes through, logged):
  isolation protects a service, it must not become a second outage::

      from functions.scaling.api import ensure_available
      ensure_available("payment-processor")   # raises ServiceIsolated -> UNAVAILABLE

- :class:`GuardLock` (:class:`RedisLocks`): the Redis lock that keeps two scale-guard runs,
  or two changes of one service, from acting twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from functions.scaling.ports import Lease
from shared.errors import BackendUnavailable
from shared.models.scaling import IsolationState
from shared.redis import get_redis, lua_script
from shared.thresholds import ISOLATION_FLAG_TTL_SEC, ISOLATION_HALF_OPEN_ADMIT_PCT

log = logging.getLogger("pack391.isolation")

PREFIX = "{pack391:scaling}"
"""Hash tag of the scaling area's Redis keys (and of the deploy guard's local split)."""

LUA = Path(__file__).with_name("lua")
_RELEASE = LUA / "release_lock.lua"
_RENEW = LUA / "renew_lock.lua"
_ACQUIRE = LUA / "acquire_lock.lua"

# ------------------------------------------------------------- isolation flag


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


class RedisIsolationFlags:
    """The engine's side of the flag (:class:`functions.scaling.ports.IsolationFlags`)."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def set(self, service_id: str, state: IsolationState) -> None:
        set_isolation(self._redis, service_id, state)


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


# ---------------------------------------------------------------------- locks


HEARTBEATS_PER_TTL = 3
"""A held lock is renewed this many times per time-to-live: two renewals can be late
before it expires."""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class GuardLock:
    """``SET NX PX`` with a random token and a fencing number, released only by its
    holder; :meth:`held` keeps it renewed while the holder works."""

    def __init__(self, client: redis.Redis, name: str = "guard") -> None:
        self._redis = client
        self._key = f"{PREFIX}:lock:{name}"
        self._fence_key = f"{PREFIX}:fence:{name}"

    def take(self, ttl_sec: float, wait_sec: float = 0.0) -> Lease | None:
        """The lock (waiting up to ``wait_sec`` for its holder to let go), or None."""
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait_sec
        script = lua_script(_ACQUIRE, self._redis)
        while True:
            fence = int(script(keys=[self._key, self._fence_key], args=[token, _ms(ttl_sec)]))
            if fence > 0:
                return Lease(token, fence)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def acquire(self, ttl_sec: float, wait_sec: float = 0.0) -> str | None:
        lease = self.take(ttl_sec, wait_sec)
        return None if lease is None else lease.token

    def renew(self, token: str, ttl_sec: float) -> bool:
        """Extend the lock if ``token`` still holds it; False means another run may act."""
        renewed = lua_script(_RENEW, self._redis)(keys=[self._key], args=[token, _ms(ttl_sec)])
        return bool(renewed)

    @contextmanager
    def held(self, ttl_sec: float, wait_sec: float = 0.0) -> Iterator[Lease | None]:
        """The lock for the block (None: another holder has it), renewed by a heartbeat
        thread :data:`HEARTBEATS_PER_TTL` times per TTL, so a platform call slower than the
        TTL never outlives it while this process runs. Released at the end."""
        lease = self.take(ttl_sec, wait_sec)
        if lease is None:
            yield None
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(ttl_sec / HEARTBEATS_PER_TTL):
                try:
                    if not self.renew(lease.token, ttl_sec):
                        log.error("lock %s lost: its TTL passed before a renewal", self._key)
                        lease.lost.set()
                        return
                except redis.RedisError:
                    log.warning("lock %s: renewal failed, retrying", self._key, exc_info=True)

        heartbeat = threading.Thread(target=beat, name=f"heartbeat {self._key}", daemon=True)
        heartbeat.start()
        try:
            yield lease
        finally:
            stop.set()
            heartbeat.join()
            self.release(lease.token)

    def release(self, token: str) -> bool:
        return bool(lua_script(_RELEASE, self._redis)(keys=[self._key], args=[token]))


class RedisLocks:
    """Named :class:`GuardLock` s on one Redis (:class:`functions.scaling.ports.Locks`)."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def lock(self, name: str) -> GuardLock:
        return GuardLock(self._redis, name)
