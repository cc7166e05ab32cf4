"""Deploy-time settings: Firebase params read from the environment.

Each setting is a ``firebase_functions.params`` object, so ``firebase deploy``
lists it in the manifest and asks for a value (or takes it from ``.env``); at run
time ``.value`` reads the environment and falls back to the local default.
Spec numbers are not settings: they live in :mod:`shared.thresholds`.
"""

from __future__ import annotations

import os

from firebase_functions import params

DEFAULT_PROJECT = "demo-avalo"
"""Project id used when none is configured (a ``demo-`` project never reaches Google)."""

REDIS_URL = params.StringParam(
    "REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    label="Redis URL",
    description=("Memorystore/Redis for rate limits, counters and flags (redis:// or rediss://)."),
)

REDIS_TIMEOUT_MS = params.IntParam(
    "PACK391_REDIS_TIMEOUT_MS",
    default=50,
    label="Redis timeout (ms)",
    description="Socket connect and read timeout for Redis calls; a slower Redis counts as down.",
)

FUNCTIONS_REGION = params.StringParam(
    "PACK391_REGION",
    default="us-central1",
    label="Functions region",
    description="Region the pack391 functions are deployed to.",
)


# --------------------------------------------------------------------------
# Disaster recovery (issue 8)
# --------------------------------------------------------------------------

BACKUP_BACKEND = params.StringParam(
    "PACK391_BACKUP_BACKEND",
    default="auto",
    label="Backup backend",
    description=(
        "managed (Firestore managed export + PITR clones), logical (encrypted NDJSON), "
        "or auto: managed when deployed, logical under the emulator."
    ),
)

BACKUP_KEY = params.SecretParam(
    "PACK391_BACKUP_KEY",
    label="Backup encryption key",
    description="Logical backups: AES-256-GCM key, 32 bytes in base64 (Secret Manager).",
)

BACKUP_LOCAL_ROOT = params.StringParam(
    "PACK391_BACKUP_LOCAL_ROOT",
    default=".local/backups",
    label="Logical backup root",
    description="Logical backups: one directory per region under this root.",
)

BACKUP_DESTINATIONS = params.StringParam(
    "PACK391_BACKUP_DESTINATIONS",
    default="",
    label="Logical backup destinations",
    description=(
        "Logical backups: region=directory or region=gs://bucket/prefix, comma-separated, "
        "overriding <root>/<region> per region."
    ),
)

BACKUP_BUCKETS = params.StringParam(
    "PACK391_BACKUP_BUCKETS",
    default="",
    label="Managed export buckets",
    description="Managed backups: region=gs://bucket,... one Coldline bucket per region.",
)

BACKUP_KMS_KEY = params.StringParam(
    "PACK391_BACKUP_KMS_KEY",
    default="",
    label="Backup CMEK key",
    description="Managed backups: the Cloud KMS key the buckets encrypt with (recorded).",
)

BACKUP_DRILL_DATABASE = params.StringParam(
    "PACK391_BACKUP_DRILL_DATABASE",
    default="pack391-drill",
    label="Restore drill database",
    description="Logical drills restore into this (empty) database id, then empty it.",
)


def project_id() -> str:
    """The project: ``GCLOUD_PROJECT``, else ``GOOGLE_CLOUD_PROJECT``, else the demo project."""
    return (
        os.environ.get("GCLOUD_PROJECT")
        or os.environ.get("GOOGLE_CLOUD_PROJECT")
        or DEFAULT_PROJECT
    )


def is_emulated() -> bool:
    """True under the local stack, the Firebase emulators or the tests."""
    return bool(os.environ.get("FUNCTIONS_EMULATOR") or os.environ.get("FIRESTORE_EMULATOR_HOST"))


TRUSTED_PROXIES = params.ListParam(
    "PACK391_TRUSTED_PROXIES",
    default=[],
    label="Trusted proxies",
    description=(
        "CIDRs of the proxies in front of the functions (Google's front end, Cloudflare). "
        "Client IP/country headers are believed only from these peers."
    ),
)

RATE_LIMIT_SHADOW_CLASSES = params.ListParam(
    "PACK391_RATE_LIMIT_SHADOW_CLASSES",
    default=[],
    label="Shadow-mode classes",
    description="Endpoint classes whose limits count and report but never deny (for tuning).",
)


# Auto-scaling (issue 4) ---------------------------------------------------

SCALING_BACKEND = params.StringParam(
    "PACK391_SCALING_BACKEND",
    default="auto",
    label="Scaling backend",
    description=(
        "auto: Cloud Monitoring + Cloud Run when deployed, pushed metrics + the local scaler "
        "under the emulator; gcp or local to force one."
    ),
)

SCALING_DRY_RUN = params.BoolParam(
    "PACK391_SCALING_DRY_RUN",
    default=False,
    label="Scaling dry run",
    description="Record every scaling decision without acting on it.",
)

SCALING_HEALTH_URL_TEMPLATE = params.StringParam(
    "PACK391_SCALING_HEALTH_URL_TEMPLATE",
    default="",
    label="Health URL template",
    description=(
        "Default health URL of a registered service, with {service}, {region} and {project} "
        "placeholders (e.g. https://{service}-abc123-uc.a.run.app/health); empty: none."
    ),
)


# Deploy guard (issue 6) ---------------------------------------------------

DEPLOY_BACKEND = params.StringParam(
    "PACK391_DEPLOY_BACKEND",
    default="auto",
    label="Deploy guard backend",
    description=(
        "auto: Cloud Run traffic + Cloud Monitoring + Firestore Admin when deployed, the local "
        "split and pushed metrics under the emulator; gcp or local to force one."
    ),
)

DEPLOY_SERVICES = params.ListParam(
    "PACK391_DEPLOY_SERVICES",
    default=[],
    label="Canary services",
    description="Cloud Run services a deployment moves when a start names none.",
)

DEPLOY_PROBE_URLS = params.ListParam(
    "PACK391_DEPLOY_PROBE_URLS",
    default=[],
    label="Pre-deploy probe URLs",
    description="URLs the api_endpoints gate GETs (2xx within 5 s passes).",
)


# Ops dashboard (issue 7) ---------------------------------------------------

OPS_WEBHOOK_URL = params.StringParam(
    "PACK391_OPS_WEBHOOK_URL",
    default="",
    label="Ops alert webhook",
    description=(
        "URL that ops alerts are POSTed to as JSON ({text, alert}; a Slack incoming webhook "
        "works); empty: alerts are recorded but not sent."
    ),
)

OPS_ALERT_FOR_MINUTES = params.IntParam(
    "PACK391_OPS_ALERT_FOR_MINUTES",
    default=1,
    label="Ops alert for (minutes)",
    description=(
        "Consecutive minutes a threshold (fraud, payouts, support) must be exceeded before its "
        "alert fires; 'service down' always fires at once."
    ),
)


# Load testing (issue 5) ---------------------------------------------------

LOAD_TARGET_ALLOWLIST = params.StringParam(
    "PACK391_LOAD_TARGET_ALLOWLIST",
    default="",
    label="Load test target allowlist",
    description=(
        "Comma-separated host names a load test may target (exact, or '.suffix' for a "
        "domain and its subdomains). Loopback (127.0.0.1, ::1, localhost) is always "
        "allowed under the emulator, never when deployed."
    ),
)

LOAD_DISPATCHER = params.StringParam(
    "PACK391_LOAD_DISPATCHER",
    default="auto",
    label="Load test shard dispatcher",
    description=(
        "auto: Cloud Tasks (task-queue function pack391_executeLoadTest) when deployed, "
        "local worker processes under the emulator; tasks or local to force one."
    ),
)
