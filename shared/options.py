"""Deploy-time options every ``pack391_*`` function shares: its region and VPC access,
and what the front door asks of the callables: their ingress and secrets.

:func:`apply_global_options` runs in ``main.py`` right after firebase-admin starts and
before any function module is imported: the SDK writes each function's manifest entry
when its decorator runs, merging these global options in at that moment.

Why the environment and not param expressions: ``options.set_global_options`` takes the
region and the VPC connector as plain strings only (firebase-functions 0.6.0:
``region: str | list[str]``, ``vpc_connector: str``; a manifest ``vpc`` entry is written
only when the connector ``isinstance(str)``). So the values are read from the environment
of the discovery process, which ``firebase deploy`` starts with the project's ``.env``,
``.env.<project>`` and ``.env.<alias>`` values merged over its own environment
(firebase-tools 15 ``deploy/functions/prepare.js`` passes ``loadUserEnvs(...)`` to
``runtimeDelegate.discoverBuild``; ``runtimes/python`` spawns ``serving.py`` with
``{...process.env, ...envs}``). The running functions get the same ``.env`` values, so
``PACK391_REGION`` is one value for where the functions are deployed and for what the
code uses at run time (task-queue paths, local URLs, registry defaults).
"""

from __future__ import annotations

import re

from firebase_functions import options, params

from shared.config import (
    CLOUDFLARE_ORIGIN_SECRET,
    FRONT_DOOR,
    FRONT_DOORS,
    FUNCTIONS_REGION,
    OPS_WEBHOOK_ENABLED,
    OPS_WEBHOOK_URL,
    REDIS_AUTH,
    REDIS_AUTH_ENABLED,
    VPC_CONNECTOR,
    VPC_EGRESS,
)

_REGION = re.compile(r"^[a-z]+(?:-[a-z]+)+[0-9]+$")
"""A Cloud region id: ``us-central1``, ``europe-west1``, ``northamerica-northeast1``."""

_CONNECTOR_NAME = r"[a-z](?:[-a-z0-9]{0,23}[a-z0-9])?"
"""A Serverless VPC Access connector name: lower case, digits, hyphens, at most 25."""

_CONNECTOR = re.compile(
    rf"^(?:projects/[^/\s]+/locations/(?P<region>[^/\s]+)/connectors/)?"
    rf"{_CONNECTOR_NAME}$"
)


def deploy_region() -> str:
    """``PACK391_REGION`` (default ``us-central1``); a malformed value fails the deploy."""
    region = FUNCTIONS_REGION.value.strip()
    if not _REGION.match(region):
        raise ValueError(f"PACK391_REGION={region!r} is not a Cloud region such as us-central1")
    return region


def vpc_connector(region: str) -> str | None:
    """``PACK391_VPC_CONNECTOR``, or None when empty (no ``vpc`` entry in the manifest).

    A bare name is completed by the CLI to the connector of that name in the function's
    region; a full path must name that region (a connector serves its own region only)."""
    connector = VPC_CONNECTOR.value.strip()
    if not connector:
        return None
    match = _CONNECTOR.match(connector)
    if match is None:
        raise ValueError(
            f"PACK391_VPC_CONNECTOR={connector!r}: give a connector name or "
            "projects/PROJECT/locations/REGION/connectors/NAME"
        )
    if match["region"] is not None and match["region"] != region:
        raise ValueError(
            f"PACK391_VPC_CONNECTOR is in {match['region']}, the functions in {region} "
            "(PACK391_REGION): a connector serves only its own region"
        )
    return connector


def vpc_egress() -> options.VpcEgressSetting:
    """``PACK391_VPC_EGRESS``: ``PRIVATE_RANGES_ONLY`` (default) or ``ALL_TRAFFIC``; the
    lower-case, hyphenated spelling (``private-ranges-only``) is accepted too."""
    raw = VPC_EGRESS.value.strip()
    name = raw.upper().replace("-", "_") or options.VpcEgressSetting.PRIVATE_RANGES_ONLY.value
    try:
        return options.VpcEgressSetting(name)
    except ValueError:
        allowed = ", ".join(s.value for s in options.VpcEgressSetting)
        raise ValueError(f"PACK391_VPC_EGRESS={raw!r}: use one of {allowed}") from None


_SERVICE_ACCOUNT = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[-a-z0-9.]+\.gserviceaccount\.com$")
"""A service account email: a 6-30 character account id at a ``gserviceaccount.com`` domain."""


def runtime_service_account(project: str | None = None) -> str:
    """``PACK391_RUNTIME_SERVICE_ACCOUNT`` with ``{project}`` filled in (default
    ``pack391-runtime@{project}.iam.gserviceaccount.com``, the account ``pack391 bootstrap``
    creates); a malformed value fails the deploy naming the param."""
    from shared.config import RUNTIME_SERVICE_ACCOUNT, project_id

    raw = RUNTIME_SERVICE_ACCOUNT.value.strip()
    email = raw.replace("{project}", project or project_id())
    if not _SERVICE_ACCOUNT.match(email):
        raise ValueError(
            f"PACK391_RUNTIME_SERVICE_ACCOUNT={raw!r} is not a service account email such as "
            "pack391-runtime@{project}.iam.gserviceaccount.com"
        )
    return email


def apply_global_options() -> None:
    """Set the options every function shares. Call before importing any function module.

    - ``region``: :func:`deploy_region`, the one source of the functions' region.
    - ``vpc_connector`` and its egress: only when ``PACK391_VPC_CONNECTOR`` is set, so an
      empty one writes no ``vpc`` entry at all (an empty connector string would reach the
      CLI as a connector named ``""``).
    - ``cpu``: left unset (``null``), as before. ``set_global_options`` would otherwise
      write its own default ``"gcf_gen1"`` into every function, which the CLI turns into
      a fraction of a vCPU and a concurrency of 1.
    - ``service_account``: :func:`runtime_service_account`. Unset, a function
      runs as the default compute account, which new organisations leave without roles;
      this account has exactly the roles ``pack391 bootstrap`` grants
      (stack/release/permissions.py).
    """
    region = deploy_region()
    connector = vpc_connector(region)
    egress = vpc_egress()  # checked even without a connector: a typo fails early
    options.set_global_options(
        region=region,
        vpc_connector=connector,
        vpc_connector_egress_settings=egress if connector is not None else None,
        cpu=options.RESET_VALUE,
        service_account=runtime_service_account(),
    )


# Bill ceiling: the front door's deploy shape -------------------------------------------


def deploy_front_door() -> str | None:
    """``PACK391_FRONT_DOOR`` as the deploy's discovery reads it (normalised), or None when
    it is not a known mode: the functions then answer every call ``FAILED_PRECONDITION``
    naming it, and ``pack391 deploy env`` refuses it before the deploy."""
    mode = FRONT_DOOR.value.strip().lower()
    return mode if mode in FRONT_DOORS else None


def callable_ingress() -> options.IngressSetting | None:
    """The Cloud Run ingress of every callable: internal and Cloud Load Balancing in
    ``load-balancer`` mode, so no client reaches the function around the balancer (and
    writes the ``X-Forwarded-For`` entries the balancer would); otherwise None (the
    platform's default, all traffic). Scheduled and task-queue functions keep theirs:
    only their invokers' IAM identities may call them."""
    if deploy_front_door() == "load-balancer":
        return options.IngressSetting.ALLOW_INTERNAL_AND_GCLB
    return None


def callable_secrets() -> list[params.SecretParam]:
    """Secrets every callable binds: the Cloudflare origin secret in ``cloudflare`` mode
    (checked on every request), and the Redis AUTH string when Redis needs it (every
    callable's front door counts the call in Redis: :func:`redis_secrets`)."""
    found = [CLOUDFLARE_ORIGIN_SECRET] if deploy_front_door() == "cloudflare" else []
    return [*found, *redis_secrets()]


# Secrets of optional features ---------------------------------------------------------
# A SecretParam must exist in Secret Manager before `firebase deploy`, and Secret Manager
# refuses an empty payload, so "empty means off" cannot be a secret's value: a BoolParam,
# read at discovery like the front door, decides whether the functions bind the secret.


def redis_secrets() -> list[params.SecretParam]:
    """What a function that uses Redis binds: ``PACK391_REDIS_AUTH`` when
    ``PACK391_REDIS_AUTH_ENABLED`` is true at discovery, else nothing (the client then
    sends no password: :func:`shared.redis.connection_options`)."""
    return [REDIS_AUTH] if REDIS_AUTH_ENABLED.value else []


def webhook_secrets() -> list[params.SecretParam]:
    """What the function that sends ops alerts binds: ``PACK391_OPS_WEBHOOK_URL`` when
    ``PACK391_OPS_WEBHOOK_ENABLED`` is true at discovery, else nothing."""
    return [OPS_WEBHOOK_URL] if OPS_WEBHOOK_ENABLED.value else []
