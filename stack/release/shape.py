"""The deploy's shape: checks of the manifest and the env file that refuse a deploy
which would go through and leave the functions open."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# ------------------------------------------------------------------ the deploy's shape

INGRESS_BEHIND_LOAD_BALANCER = "ALLOW_INTERNAL_AND_GCLB"
"""The manifest's ``ingressSettings`` that keeps clients from going around a load balancer."""

ORIGIN_SECRET = "PACK391_CLOUDFLARE_ORIGIN_SECRET"
"""The secret every callable binds in cloudflare mode (shared/options.py)."""

DEPLOYED_FRONT_DOORS = ("google", "load-balancer", "cloudflare")
"""``PACK391_FRONT_DOOR`` values a deployed function accepts (``direct`` is refused there)."""


LOOPBACK_HOSTS = ("localhost", "127.", "[::1]", "::1", "0.0.0.0")
"""Hosts of a Redis URL that on a deployed function are the function's own container."""


def _url_password(url: str) -> str:
    """The password a Redis URL carries (``redis://:PASS@host``, ``redis://user:PASS@host``)."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url.strip()).password or ""
    except ValueError:
        return ""


def redis_problems(values: Mapping[str, str], project: str) -> list[str]:
    """A real (non-``demo-``) project must reach a real Redis: ``REDIS_URL`` is not a
    loopback address (on Cloud Run that is the container itself: every rate-limit call
    would fail, auth, wallet and payment closed for everyone) and a Serverless VPC Access
    connector is set (Memorystore has only a private address). A ``demo-`` project never
    reaches Google (the emulators), so it may."""
    if project.startswith("demo-"):
        return []
    problems: list[str] = []
    url = (values.get("REDIS_URL") or "").strip()
    host = url.split("://", 1)[-1].split("@")[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if not url or host.startswith(LOOPBACK_HOSTS):
        problems.append(
            f"REDIS_URL={url or '(unset)'}: on a deployed function that is the function's own "
            "container; set your Memorystore instance's address (redis://10.x.y.z:6379/0)"
        )
    if _url_password(url) or _url_password(values.get("PACK391_REDIS_TELEMETRY_URL") or ""):
        problems.append(
            "REDIS_URL (or PACK391_REDIS_TELEMETRY_URL) carries a password: an env file is "
            "not a secret; remove it from the URL, store it as the secret PACK391_REDIS_AUTH "
            "(pack391 deploy secrets --create) and set PACK391_REDIS_AUTH_ENABLED=true"
        )
    if not (values.get("PACK391_VPC_CONNECTOR") or "").strip():
        problems.append(
            "PACK391_VPC_CONNECTOR is empty: Memorystore has only a private address, which a "
            "function reaches through a Serverless VPC Access connector"
        )
    return problems


def derived_deploy_services(manifest: Mapping[str, Any]) -> list[str]:
    """The Cloud Run services the manifest's callables run as (lower case, ``_`` as ``-``:
    how the Cloud Functions API names a 2nd-gen function's service): the default canary
    set when ``PACK391_DEPLOY_SERVICES`` names none of the spec's separate APIs."""
    from shared.gcp.cloudrun import function_service_id

    endpoints: Mapping[str, Any] = manifest.get("endpoints") or {}
    return sorted(
        function_service_id(name)
        for name, endpoint in endpoints.items()
        if "callableTrigger" in endpoint or "httpsTrigger" in endpoint
    )


def deploy_services_problems(
    manifest: Mapping[str, Any], values: Mapping[str, str], project: str, bootstrap: bool
) -> list[str]:
    """A real project's deploy needs canary services (``PACK391_DEPLOY_SERVICES``): with
    none, ``deploy pin-traffic`` and ``deploy start`` have nothing to snapshot or move, and
    the new code goes live at 100 % unguarded. A first deploy (``--bootstrap``: no revision
    to compare with) may have none."""
    if bootstrap or project.startswith("demo-"):
        return []
    if (values.get("PACK391_DEPLOY_SERVICES") or "").strip():
        return []
    derived = ",".join(derived_deploy_services(manifest))
    return [
        "PACK391_DEPLOY_SERVICES is empty: the canary would move nothing and firebase deploy "
        "puts every function's new revision at 100 %; set it to the Cloud Run services to "
        f"guard, e.g. the bundle's callables: {derived} (or --bootstrap for a first deploy)"
    ]


def shape_problems(
    manifest: Mapping[str, Any], values: Mapping[str, str], project: str = ""
) -> list[str]:
    """What would leave the deployed functions open, or refuse every call, read from the
    manifest that discovery produced with the env file's ``values``: one line per problem.

    - every function has a ``maxInstances`` (the ceiling on the bill);
    - ``PACK391_FRONT_DOOR`` is one a deployed function accepts (``direct`` answers every
      call ``FAILED_PRECONDITION`` there);
    - ``load-balancer``: every callable's ingress is internal and Cloud Load Balancing,
      or a client goes around the balancer and writes its ``X-Forwarded-For`` entries;
    - ``cloudflare``: every callable binds ``PACK391_CLOUDFLARE_ORIGIN_SECRET``, the proof
      that a request came through your own zone;
    - a real ``project`` has a Redis that is not loopback and a VPC connector
      (:func:`redis_problems`)."""
    problems: list[str] = redis_problems(values, project) if project else []
    door = (values.get("PACK391_FRONT_DOOR") or "google").strip().lower()
    if door == "direct":
        problems.append(
            "PACK391_FRONT_DOOR=direct: a deployed function refuses every call in direct mode "
            "(its TCP peer is Google's front end); choose google, load-balancer or cloudflare"
        )
    elif door not in DEPLOYED_FRONT_DOORS:
        problems.append(
            f"PACK391_FRONT_DOOR={door!r}: not one of {', '.join(DEPLOYED_FRONT_DOORS)}"
        )
    endpoints: Mapping[str, Any] = manifest.get("endpoints") or {}
    for name, endpoint in sorted(endpoints.items()):
        if endpoint.get("maxInstances") is None:
            problems.append(f"{name}: no maxInstances: nothing caps what its traffic costs")
        if "callableTrigger" not in endpoint and "httpsTrigger" not in endpoint:
            continue
        ingress = endpoint.get("ingressSettings")
        if door == "load-balancer" and ingress != INGRESS_BEHIND_LOAD_BALANCER:
            problems.append(
                f"{name}: ingress {ingress or 'ALLOW_ALL (unset)'} in load-balancer mode: a "
                f"client can call it around the load balancer; it must be "
                f"{INGRESS_BEHIND_LOAD_BALANCER} (PACK391_FRONT_DOOR at discovery)"
            )
        secrets = [s.get("key") for s in endpoint.get("secretEnvironmentVariables") or []]
        if door == "cloudflare" and ORIGIN_SECRET not in secrets:
            problems.append(
                f"{name}: does not bind {ORIGIN_SECRET} in cloudflare mode: it could not tell "
                "your zone's requests from anyone else's Cloudflare Worker"
            )
        if secret_in_use("PACK391_REDIS_AUTH", values) and "PACK391_REDIS_AUTH" not in secrets:
            problems.append(
                f"{name}: does not bind PACK391_REDIS_AUTH with PACK391_REDIS_AUTH_ENABLED=true: "
                "its front door could not reach Redis"
            )
    return problems


OPTIONAL_SECRETS = {
    "PACK391_REDIS_AUTH": "PACK391_REDIS_AUTH_ENABLED",
    "PACK391_OPS_WEBHOOK_URL": "PACK391_OPS_WEBHOOK_ENABLED",
}
"""Secrets of a feature a BoolParam turns on (read at discovery): bound only while it is on.
Off, the secret must still exist (the CLI resolves every declared secret param) but its
value is never read."""


def secret_in_use(name: str, values: Mapping[str, str]) -> bool:
    """Whether the deploy described by ``values`` binds secret ``name``."""
    flag = OPTIONAL_SECRETS.get(name)
    if flag is not None:
        return (values.get(flag) or "").strip().lower() == "true"
    if name == ORIGIN_SECRET:
        return (values.get("PACK391_FRONT_DOOR") or "").strip().lower() == "cloudflare"
    return True
