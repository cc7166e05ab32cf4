"""The SDK's endpoints of our functions, with the options every one of them gets: the
ceiling on its instances (the bill's ceiling), the front door's deploy shape (ingress,
the origin secret), the Redis AUTH secret, and App Check switched per request by a param
(:func:`sdk_callable`)."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from typing import Any, cast

import flask
from firebase_functions import https_fn

from shared.auth import Role
from shared.config import (
    ENFORCE_APP_CHECK,
    MAX_INSTANCES_OPS,
    MAX_INSTANCES_SCHEDULED,
    MAX_INSTANCES_USER,
)
from shared.edge_options import CallableOptions, ScheduledOptions
from shared.options import callable_ingress, callable_secrets, redis_secrets

Endpoint = Callable[[flask.Request], flask.Response]


def callable_options(role: Role, options: CallableOptions) -> dict[str, Any]:
    """The SDK options of a callable: what its decorator gives, plus

    - ``max_instances``: ``PACK391_MAX_INSTANCES_USER`` for user callables,
      ``PACK391_MAX_INSTANCES_OPS`` for ops and admin ones (param expressions the CLI
      resolves at deploy), unless the function sets its own;
    - ``ingress``: internal and Cloud Load Balancing in ``load-balancer`` mode
      (:func:`shared.options.callable_ingress`), unless the function sets its own;
    - ``secrets``: the Cloudflare origin secret in ``cloudflare`` mode, added to the
      function's own (:func:`shared.options.callable_secrets`).

    The last two follow ``PACK391_FRONT_DOOR`` as the deploy's discovery reads it."""
    merged: dict[str, Any] = dict(options)
    # a service's callables take an app backend's traffic (one call per user event)
    ceiling = MAX_INSTANCES_USER if role in (Role.USER, Role.SERVICE) else MAX_INSTANCES_OPS
    merged.setdefault("max_instances", ceiling)
    ingress = callable_ingress()
    if ingress is not None:
        merged.setdefault("ingress", ingress)
    extra = [s for s in callable_secrets() if s not in (merged.get("secrets") or [])]
    if extra:
        merged["secrets"] = [*(merged.get("secrets") or []), *extra]
    return merged


def scheduled_options(options: ScheduledOptions, uses_redis: bool = True) -> dict[str, Any]:
    """The SDK options of a scheduled function: ``max_instances``
    ``PACK391_MAX_INSTANCES_SCHEDULED`` unless the function sets its own; the Redis AUTH
    secret added to its own secrets when it ``uses_redis`` and Redis needs AUTH."""
    merged: dict[str, Any] = {"max_instances": MAX_INSTANCES_SCHEDULED, **options}
    own = list(merged.get("secrets") or [])
    extra = [s for s in redis_secrets() if uses_redis and s not in own]
    if extra:
        merged["secrets"] = [*own, *extra]
    return merged


def sdk_callable(role: Role, options: CallableOptions, body: Callable[..., Any]) -> Endpoint:
    """The SDK's callable endpoint for ``body`` with :func:`callable_options`.

    App Check: the SDK fixes ``enforce_app_check`` when it decorates, and the switch is a
    param read per request (``PACK391_ENFORCE_APP_CHECK``). So a user callable gets both
    SDK endpoints, and each request goes to the enforcing one while the param is true: a
    request without a valid ``X-Firebase-AppCheck`` token then answers ``401
    UNAUTHENTICATED`` from the SDK itself. An app backend (ID token claim ``service:
    true``, see :func:`_claims_as_sent`) is no app and has no App Check token: it goes to
    the other one. Ops and admin callables, and a function that sets
    ``enforce_app_check`` itself, keep one endpoint. The returned function carries the
    SDK's ``__firebase_endpoint__`` (one manifest entry: App Check is not in it)."""
    merged = callable_options(role, options)
    plain = cast(Endpoint, https_fn.on_call(**merged)(cast(Any, body)))
    if role is not Role.USER or "enforce_app_check" in options:
        return plain
    enforcing = cast(
        Endpoint, https_fn.on_call(**{**merged, "enforce_app_check": True})(cast(Any, body))
    )

    @functools.wraps(plain)
    def by_app_check_param(raw: flask.Request) -> flask.Response:
        enforce = ENFORCE_APP_CHECK.value and _claims_as_sent(raw).get("service") is not True
        return (enforcing if enforce else plain)(raw)

    return by_app_check_param


def _claims_as_sent(request: flask.Request) -> dict[str, Any]:
    """The claims of the request's bearer token as sent, *not verified*: enough to route
    it, never to trust it. Only routing depends on them (an app backend's token skips
    App Check), and the SDK verifies the same token before any handler runs: a forged
    ``service: true`` is ``401 UNAUTHENTICATED`` there, whichever endpoint it reached."""
    header = request.headers.get("Authorization") or ""
    if not header.startswith("Bearer "):
        return {}
    parts = header.removeprefix("Bearer ").strip().split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:  # not base64, not UTF-8, not JSON: no claims
        return {}
    return payload if isinstance(payload, dict) else {}
