"""The rate-limit middleware for every callable: ``@rate_limited("wallet")``.

Any callable of this bundle (through ``callable_function(rate_limit=...)``) or of
the app's other bundles (``@https_fn.on_call()`` over ``@rate_limited(...)``)
counts each request against its endpoint class, per user and per client IP, and
is denied with ``RESOURCE_EXHAUSTED`` (details ``retryAfterSec``, ``limit``,
``endpointClass``, ``reason``) when over the limit. One Redis round trip per
request; see ``shared/lua/rate_decide.lua``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import flask
from firebase_functions import https_fn

from shared.clock import utc_now
from shared.config import RATE_LIMIT_SHADOW_CLASSES, TRUSTED_PROXIES
from shared.errors import RateLimited, to_https_error
from shared.firestore import get_db
from shared.ratelimit.client import Network, client_info, parse_networks
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.limiter import RateDecision, RateLimiter, Subject
from shared.ratelimit.policy import EndpointClass
from shared.redis import get_redis

__all__ = [
    "EndpointClass",
    "RateDecision",
    "RateLimiter",
    "Subject",
    "default_limiter",
    "enforce",
    "rate_limited",
    "subject_of",
]

R = TypeVar("R")


@functools.cache
def _geo_rules() -> GeoRules:
    return GeoRules(get_db)


@functools.cache
def _limiter(redis_id: int, shadow: frozenset[str]) -> RateLimiter:
    del redis_id  # cache key only
    return RateLimiter(get_redis(), _geo_rules(), shadow)


def default_limiter() -> RateLimiter:
    """The limiter wired to the configured Redis, geo rules and shadow classes."""
    return _limiter(id(get_redis()), frozenset(RATE_LIMIT_SHADOW_CLASSES.value))


def reset() -> None:
    """Forget this instance's limiters, their buffered counters and the cached geo rules."""
    _limiter.cache_clear()
    _geo_rules.cache_clear()


def geo_rules() -> GeoRules:
    """This instance's cached geo throttle rules."""
    return _geo_rules()


@functools.cache
def _proxies(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(cidrs)


def subject_of(request: flask.Request, uid: str | None) -> Subject:
    """The subject of a request: the caller's uid and the client behind trusted proxies."""
    proxies = _proxies(tuple(TRUSTED_PROXIES.value))
    return Subject(
        uid or None, client_info(request.remote_addr, dict(request.headers.items()), proxies)
    )


def enforce(
    endpoint_class: EndpointClass, request: flask.Request, uid: str | None, now: datetime
) -> RateDecision:
    """Count this request; raise :class:`RateLimited` when it is over the limit."""
    decision = default_limiter().decide(endpoint_class, subject_of(request, uid), now)
    if not decision.allowed:
        raise RateLimited(
            f"too many {endpoint_class.value} requests; retry in {decision.retry_after_sec:g}s",
            retry_after_sec=decision.retry_after_sec,
            limit=decision.limit,
            endpointClass=endpoint_class.value,
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
                enforce(cls, req.raw_request, req.auth.uid if req.auth else None, utc_now())
            except Exception as exc:
                raise to_https_error(exc, uuid.uuid4().hex) from exc
            return handler(req)

        return wrapper

    return decorator
