"""The local world of the spec: what ``make run`` sets up once its functions are ready.

:func:`bootstrap_world` (idempotent; the supervisor calls it after the functions server
answers, and again after nothing else):

1. registers the spec's seven services in the scaling registry (``pack391_initScaling``,
   the admin path, audited), each with the sandbox as its health URL
   (``<sandbox>/__health?service=<id>``), so ``pack391_serviceHealthCheck`` probes
   something real;
2. gives every service that serves nothing its first revision, ``<service>-00001``, at
   100 % on the local platform (:class:`stack.revisions.LocalRevisions`), pinned as
   ``pack391 deploy pin-traffic`` leaves it: the next ``pack391 deploy revision`` lands
   at 0 % and the deploy guard finds it as the new revision;
3. registers the sandbox's resize hook (``<sandbox>/__resize``) for every service, so a
   ``pack391_manualScale`` or a scaling decision right after start changes what the
   sandbox serves (the sandbox also re-registers it with each metrics push).

The functions server of the local stack gets ``PACK391_DEPLOY_SERVICES`` = these seven
services (:data:`DEPLOY_SERVICES_ENV`), so ``pack391_startDeployment`` without
``services`` moves all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from functions.scaling.api import PushedMetricsStore
from shared.redis import client_for_url
from stack.revisions import SERVICES, LocalRevisions

Call = Callable[[str, dict[str, Any]], Any]
"""Calls a function of the stack as admin: (name, data) -> result; raises on an error."""

DEPLOY_SERVICES_ENV = ",".join(SERVICES)
"""``PACK391_DEPLOY_SERVICES`` for the local stack's functions server (a ListParam:
comma-separated, as the Firebase CLI writes it into ``.env`` files)."""


@dataclass(frozen=True)
class World:
    services: tuple[str, ...]
    """The services registered (all of :data:`stack.revisions.SERVICES`)."""
    serving: dict[str, dict[str, int]]
    """Service -> its split after the bootstrap."""
    created: dict[str, str]
    """Service -> the first revision this call created (empty on a re-run)."""


def health_url(sandbox_url: str, service: str) -> str:
    return f"{sandbox_url.rstrip('/')}/__health?service={service}"


def resize_hook_url(sandbox_url: str) -> str:
    """The sandbox's resize hook (the local scaler POSTs ``{serviceId, instances}``)."""
    return f"{sandbox_url.rstrip('/')}/__resize"


def bootstrap_world(call: Call, redis_url: str, sandbox_url: str) -> World:
    """Register the seven services and give each a serving revision (see module doc)."""
    overrides = {sid: {"healthUrl": health_url(sandbox_url, sid)} for sid in SERVICES}
    call("pack391_initScaling", {"overrides": overrides})
    client = client_for_url(redis_url, timeout_ms=5000)  # one Redis or a cluster
    try:
        revisions = LocalRevisions(client)
        hooks = PushedMetricsStore(client)
        for service in SERVICES:
            # the sandbox's resize hook, known before its first metrics push: a
            # pack391_manualScale right after `make run` changes what the sandbox serves
            hooks.register_hook(service, resize_hook_url(sandbox_url))
        created = {}
        for service in SERVICES:
            rev = revisions.ensure_serving(service)
            if rev is not None:
                created[service] = rev
        serving = {s: revisions.traffic.observe(s, "").shares for s in SERVICES}
    finally:
        client.close()
    return World(services=SERVICES, serving=serving, created=created)
