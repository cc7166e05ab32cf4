"""The rate-limit middleware for every callable: ``@rate_limited("wallet")``.

Any callable of this bundle (through ``callable_function(rate_limit=...)``) or of
the app's other bundles (``@https_fn.on_call()`` over ``@rate_limited(...)``)
counts each request against its endpoint class, per user and per client IP, and
is denied with ``RESOURCE_EXHAUSTED`` (details ``retryAfterSec``, ``limit``,
``endpointClass``, ``reason``) when over the limit. One pipelined Redis round trip
per request; see :mod:`shared.ratelimit.limiter` and ``shared/lua/rate_slot.lua``.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import flask
from firebase_functions import https_fn

from shared.auth import is_established
from shared.clock import utc_now
from shared.config import (
    CLOUDFLARE_RANGES,
    COUNTRY_HEADER,
    ESTABLISHED_MIN_AGE_MIN,
    FRONT_DOOR,
    IPV6_PREFIX,
    LB_ADDRESSES,
    RATE_LIMIT_SHADOW_CLASSES,
    REDIS_TIMEOUT_MS,
    TRUSTED_HOPS,
)
from shared.edge_errors import to_https_error
from shared.errors import FailedPrecondition, RateLimited
from shared.firestore import get_db
from shared.ratelimit.client import ClientInfo, FrontDoorConfig, client_info, front_door_config
from shared.ratelimit.door import Credential, DoorVerdict
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.limiter import RateDecision, RateLimiter, Subject
from shared.ratelimit.policy import EndpointClass, Reason
from shared.redis import get_redis, get_telemetry_redis
from shared.slo.objectives import callable_scope, class_scope
from shared.slo.recorder import default_recorder, is_bad_code

__all__ = [
    "EndpointClass",
    "RateDecision",
    "RateLimiter",
    "Subject",
    "client_of",
    "default_limiter",
    "door",
    "enforce",
    "established_min_age_sec",
    "front_door",
    "rate_limited",
    "subject_of",
]

R = TypeVar("R")


_wiring_lock = threading.Lock()
"""Built once per instance, under a lock: ``functools.cache`` lets two threads build the
same value at once, and a cold instance's first concurrent requests would each build a
limiter, the counts buffered in the one not kept being lost (seen: 7 of 8 first counts)."""
_geo: list[GeoRules] = []
_limiters: dict[tuple[int, int, frozenset[str]], RateLimiter] = {}


def _geo_rules() -> GeoRules:
    if _geo:
        return _geo[0]
    with _wiring_lock:
        if not _geo:
            # a cold instance waits for its first copy of the rules at most the Redis budget
            _geo.append(GeoRules(get_db, first_wait_sec=REDIS_TIMEOUT_MS.value / 1000))
        return _geo[0]


def default_limiter() -> RateLimiter:
    """The limiter wired to the configured Redis (and telemetry Redis), geo rules and
    shadow classes: one per instance (per configuration)."""
    key = (
        id(get_redis()),
        id(get_telemetry_redis()),
        frozenset(RATE_LIMIT_SHADOW_CLASSES.value),
    )
    limiter = _limiters.get(key)
    if limiter is not None:
        return limiter
    geo = _geo_rules()
    with _wiring_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = RateLimiter(
                get_redis(), geo, key[2], telemetry=get_telemetry_redis()
            )
        return limiter


def reset() -> None:
    """Forget this instance's limiters, their buffered counters and the cached geo rules."""
    with _wiring_lock:
        _limiters.clear()
        _geo.clear()
    _front_door.cache_clear()


def geo_rules() -> GeoRules:
    """This instance's cached geo throttle rules."""
    return _geo_rules()


@functools.cache
def _front_door(
    mode: str,
    hops: int,
    country_header: str,
    cloudflare: tuple[str, ...],
    ipv6_prefix: int,
    lb_addresses: tuple[str, ...],
) -> FrontDoorConfig:
    return front_door_config(
        mode, hops, country_header, cloudflare, ipv6_prefix, lb_addresses=lb_addresses
    )


def front_door() -> FrontDoorConfig:
    """The configured front door (``PACK391_FRONT_DOOR`` and its settings); a bad setting is
    FAILED_PRECONDITION naming it, so a misconfigured deploy says so on every call."""
    try:
        try:
            hops = TRUSTED_HOPS.value
        except ValueError:
            raise ValueError("PACK391_TRUSTED_HOPS: not an integer") from None
        try:
            prefix = IPV6_PREFIX.value
        except ValueError:
            raise ValueError("PACK391_IPV6_PREFIX: not an integer") from None
        return _front_door(
            FRONT_DOOR.value,
            hops,
            COUNTRY_HEADER.value,
            tuple(CLOUDFLARE_RANGES.value),
            prefix,
            tuple(LB_ADDRESSES.value),
        )
    except (ValueError, TypeError) as exc:
        raise FailedPrecondition(f"traffic protection is misconfigured: {exc}") from exc


_CLIENT = "pack391.client"
_DOOR_COUNTED = "pack391.door_counted"


def client_of(request: flask.Request) -> ClientInfo:
    """Who sent ``request``, as the front door says (computed once per request)."""
    cached = request.environ.get(_CLIENT)
    if isinstance(cached, ClientInfo):
        return cached
    headers = dict(request.headers.items())
    forwarded = request.headers.getlist("X-Forwarded-For")
    if len(forwarded) > 1:  # several header lines are one comma-separated list (RFC 9110)
        headers["X-Forwarded-For"] = ", ".join(forwarded)
    client = client_info(request.remote_addr, headers, front_door())
    request.environ[_CLIENT] = client
    return client


def door(
    request: flask.Request, now: datetime, credential: Credential = Credential.USER
) -> DoorVerdict:
    """Count ``request`` at the front door, before the SDK verifies its token again; say
    whether it may go on. See :meth:`RateLimiter.door`."""
    verdict = default_limiter().door(client_of(request), now, credential)
    if credential is not Credential.SERVICE:
        request.environ[_DOOR_COUNTED] = True
    return verdict


def established_min_age_sec() -> float:
    return float(ESTABLISHED_MIN_AGE_MIN.value) * 60


def subject_of(
    request: flask.Request,
    uid: str | None,
    claims: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Subject:
    """The subject of a request: the caller's uid and the client behind the front door;
    ``claims`` (the verified token's) say whether the user counts as established."""
    established = bool(uid) and is_established(
        claims or {}, (now or utc_now()).timestamp(), established_min_age_sec()
    )
    return Subject(
        uid or None,
        client_of(request),
        door_counted=bool(request.environ.get(_DOOR_COUNTED)),
        established=established,
    )


def enforce(
    endpoint_class: EndpointClass,
    request: flask.Request,
    uid: str | None,
    now: datetime,
    *,
    staff: bool = False,
    service: bool = False,
    claims: dict[str, Any] | None = None,
) -> RateDecision:
    """Count this request; raise :class:`RateLimited` when it is over the limit.
    ``staff``: the caller holds the ops or admin role a function requires (its own bucket);
    ``service``: a trusted service's own call (its principal's bucket); ``claims``: the
    verified token's, for whether the user counts as established."""
    decision = default_limiter().decide(
        endpoint_class, subject_of(request, uid, claims, now), now, staff=staff, service=service
    )
    if not decision.allowed:
        retry = f"retry in {decision.retry_after_sec:g}s"
        message = (
            f"{endpoint_class.value} requests are shed while the platform recovers its error "
            f"budget; {retry}"
            if decision.reason is Reason.SHED
            else f"too many {endpoint_class.value} requests; {retry}"
        )
        raise RateLimited(
            message,
            retry_after_sec=decision.retry_after_sec,
            limit=decision.limit,
            endpointClass=decision.endpoint_class.value,
            reason=decision.reason.value,
        )
    return decision


def rate_limited(
    endpoint_class: EndpointClass | str,
) -> Callable[
    [Callable[[https_fn.CallableRequest[Any]], R]], Callable[[https_fn.CallableRequest[Any]], R]
]:
    """Wrap a callable handler (``CallableRequest -> result``) in the rate limiter.

    Use under ``@https_fn.on_call()``::

        @https_fn.on_call()
        @rate_limited("wallet")
        def transfer(req: https_fn.CallableRequest) -> dict: ...
    """
    cls = EndpointClass(endpoint_class)

    def decorator(
        handler: Callable[[https_fn.CallableRequest[Any]], R],
    ) -> Callable[[https_fn.CallableRequest[Any]], R]:
        @functools.wraps(handler)
        def wrapper(req: https_fn.CallableRequest[Any]) -> R:
            try:
                auth = req.auth
                enforce(
                    cls,
                    req.raw_request,
                    auth.uid if auth else None,
                    utc_now(),
                    service=bool(auth and auth.token.get("service") is True),
                    claims=dict(auth.token) if auth else None,
                )
            except Exception as exc:
                raise to_https_error(exc, uuid.uuid4().hex) from exc
            started, status = time.perf_counter(), None
            try:
                return handler(req)
            except https_fn.HttpsError as exc:
                status = exc.code.value
                raise
            except Exception:
                status = "internal"  # what the SDK answers for any other exception
                raise
            finally:
                default_recorder().record(
                    utc_now(), scopes, is_bad_code(status), (time.perf_counter() - started) * 1000
                )

        scopes = (callable_scope(handler.__name__), class_scope(cls.value))
        return wrapper

    return decorator
