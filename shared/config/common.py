"""The settings every area shares: the project, Redis, the region and the runtime service
account, the production shape of the deploy, and the bill's ceiling (the instances' maxima,
App Check)."""

from __future__ import annotations

import os

from firebase_functions import params

DEFAULT_PROJECT = "demo-avalo"
"""Project id used when none is configured (a ``demo-`` project never reaches Google)."""

REDIS_URL = params.StringParam(
    "REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    label="Redis URL",
    description=(
        "Memorystore/Redis for rate limits, counters and flags: redis:// or rediss:// for one "
        "Redis (Memorystore for Redis), redis+cluster:// or rediss+cluster:// for a Redis "
        "Cluster (Memorystore for Redis Cluster's discovery endpoint; docs/scaling-out.md)."
    ),
)

REDIS_AUTH = params.SecretParam(
    "PACK391_REDIS_AUTH",
    label="Redis AUTH string",
    description=(
        "Memorystore's AUTH string (Secret Manager), sent as the password of REDIS_URL and "
        "PACK391_REDIS_TELEMETRY_URL, which carry none. Bound only when "
        "PACK391_REDIS_AUTH_ENABLED is true, to every function that uses Redis; otherwise "
        "any value (pack391 deploy secrets --create stores a placeholder)."
    ),
)

REDIS_AUTH_ENABLED = params.BoolParam(
    "PACK391_REDIS_AUTH_ENABLED",
    default=False,
    label="Redis needs AUTH",
    description=(
        "true: Memorystore has AUTH on, and every function that uses Redis binds the secret "
        "PACK391_REDIS_AUTH. Read at deploy discovery: set it in .env.<project>."
    ),
)

REDIS_CA_CERT = params.StringParam(
    "PACK391_REDIS_CA_CERT",
    default="",
    label="Redis server CA (PEM)",
    description=(
        "rediss:// only: the PEM text of the CA that signs the Redis server's certificate "
        "(Memorystore's in-transit encryption uses a per-instance CA no system trusts: "
        "gcloud redis instances describe ... --format='value(serverCaCerts[0].cert)'); a "
        "literal \\n stands for a line break. Empty: the system's CAs."
    ),
)

REDIS_TELEMETRY_URL = params.StringParam(
    "PACK391_REDIS_TELEMETRY_URL",
    default="",
    label="Redis URL for traffic telemetry",
    description=(
        "Optional second Redis (or database) for the per-minute traffic counters the DDoS "
        "detector reads, configured with an eviction policy (allkeys-lru), so telemetry can "
        "never take the memory enforcement needs (blocks, buckets, passes: noeviction). "
        "Empty: the counters share REDIS_URL."
    ),
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

RUNTIME_SERVICE_ACCOUNT = params.StringParam(
    "PACK391_RUNTIME_SERVICE_ACCOUNT",
    default="pack391-runtime@{project}.iam.gserviceaccount.com",
    label="Runtime service account",
    description=(
        "The service account every pack391 function runs as ({project}: the project id), "
        "created by `pack391 bootstrap` with exactly the roles the bundle's API calls need "
        "(docs/bootstrap.md); without one, functions run as the default compute account, "
        "which organisations created since 2024 leave without roles. Read at deploy "
        "discovery: set it in .env.<project>."
    ),
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


# Production shape ---------------------------------------------------------
# PACK391_REGION (above), PACK391_VPC_CONNECTOR and PACK391_VPC_EGRESS shape the deploy
# itself: shared/options.py reads them from the environment of `firebase deploy`'s
# discovery process (the CLI loads .env, .env.<project> into it), because the SDK takes
# only plain strings for the region and the connector. Put them in .env.<project>: a value
# typed at the CLI's prompt is saved there but reaches discovery only on the next deploy.

VPC_CONNECTOR = params.StringParam(
    "PACK391_VPC_CONNECTOR",
    default="",
    label="VPC connector",
    description=(
        "Serverless VPC Access connector every function uses to reach Memorystore at its "
        "private address: a name in the functions' region, or "
        "projects/P/locations/R/connectors/NAME; empty: none (Redis on a public address). "
        "Read at deploy discovery: set it in .env.<project>."
    ),
)

VPC_EGRESS = params.StringParam(
    "PACK391_VPC_EGRESS",
    default="PRIVATE_RANGES_ONLY",
    label="VPC egress",
    description=(
        "With a connector: PRIVATE_RANGES_ONLY (only private addresses such as Memorystore "
        "go through it; Google APIs and webhooks do not) or ALL_TRAFFIC. Read at deploy "
        "discovery: set it in .env.<project>."
    ),
)

HOT_MIN_INSTANCES = params.IntParam(
    "PACK391_HOT_MIN_INSTANCES",
    default=0,
    label="Hot callables: minimum instances",
    description=(
        "Instances kept warm for each of pack391_checkRateLimit and pack391_checkMarketAccess, "
        "called on every app request and signup (billed while idle); 0: scale to zero."
    ),
)


# Bill ceiling -------------------------------------------------------------
# The ceilings and the App Check switch are params resolved by the CLI at deploy (max
# instances) or read per request (App Check). The front door's deploy shape (ingress in
# load-balancer mode, the origin secret's binding in cloudflare mode) is read from
# PACK391_FRONT_DOOR in the environment of `firebase deploy`'s discovery, like the region
# (shared/options.py): put it in .env.<project>.

MAX_INSTANCES_USER = params.IntParam(
    "PACK391_MAX_INSTANCES_USER",
    default=100,
    label="User callables: maximum instances",
    description=(
        "Most instances each user callable (role user: what the app and its backends call, "
        "such as checkRateLimit) may scale to: the ceiling on what traffic, token-less floods "
        "included, can cost. Size: peak RPS x CPU seconds per request / 0.6, with headroom "
        "(docs/traffic-protection.md, A ceiling on the bill)."
    ),
)

MAX_INSTANCES_OPS = params.IntParam(
    "PACK391_MAX_INSTANCES_OPS",
    default=3,
    label="Ops and admin callables: maximum instances",
    description=(
        "Most instances each ops or admin callable may scale to: operators and services "
        "reporting metrics, never the public."
    ),
)

MAX_INSTANCES_SCHEDULED = params.IntParam(
    "PACK391_MAX_INSTANCES_SCHEDULED",
    default=2,
    label="Scheduled functions: maximum instances",
    description=(
        "Most instances each scheduled function may scale to (one run a minute at most, "
        "plus a retry or an overlapping slow run)."
    ),
)

ENFORCE_APP_CHECK = params.BoolParam(
    "PACK391_ENFORCE_APP_CHECK",
    default=False,
    label="Enforce App Check on user callables",
    description=(
        "true: a user callable answers UNAUTHENTICATED to a request without a valid Firebase "
        "App Check token (X-Firebase-AppCheck); ops and admin callables, and app backends "
        "(service: true), are unaffected. Turn it on once every app build in use sends App "
        "Check tokens. Read on every request."
    ),
)


def is_deployed_instance() -> bool:
    """True on a deployed function: ``K_SERVICE`` is set (Cloud Run and Cloud Functions 2nd
    gen set it on every instance) and no emulator is (the Firebase CLI's emulator sets
    ``K_SERVICE`` too, with ``FUNCTIONS_EMULATOR``)."""
    return bool(os.environ.get("K_SERVICE")) and not is_emulated()


# Budgets per call (shared.deadline) ----------------------------------------------------
# Read on every call. A function that declares its own timeout_sec (long admin work: a
# deploy step, a manual scale, a restore drill) has that timeout, less a margin, as its
# budget instead.

BUDGET_USER_MS = params.IntParam(
    "PACK391_BUDGET_USER_MS",
    default=3000,
    label="Budget of a user call (ms)",
    description=(
        "How long a user or app-backend callable may wait on Firestore and Google APIs in "
        "all before it answers UNAVAILABLE (naming the dependency, with retryAfterSec), or "
        "a safe read answers its last known value marked stale (docs/reliability.md)."
    ),
)

BUDGET_OPS_MS = params.IntParam(
    "PACK391_BUDGET_OPS_MS",
    default=10000,
    label="Budget of an ops or admin call (ms)",
    description=(
        "The same for ops and admin callables without a timeout of their own: the "
        "dashboard, alerts, blocks, markets."
    ),
)

BUDGET_SCHEDULED_MS = params.IntParam(
    "PACK391_BUDGET_SCHEDULED_MS",
    default=45000,
    label="Budget of a scheduled run (ms)",
    description=(
        "The same for a scheduled run without a timeout of its own (the every-minute jobs: "
        "it ends within its interval). A run whose dependency does not answer in time "
        "records 'skipped' and decides nothing."
    ),
)

STALE_MAX_SEC = params.IntParam(
    "PACK391_STALE_MAX_SEC",
    default=300,
    label="Maximum staleness of a stale answer (s)",
    description=(
        "How old an instance's last-known copy of a read that is safe to answer stale "
        "(market controls, the service registry, the ops dashboard and its charts) may be "
        "when Firestore does not answer within 1 s: the answer is marked stale with its age "
        "(staleAgeSec). Past it, or with no copy, the call answers UNAVAILABLE. 0: never "
        "answer stale. Read on every call (docs/reliability.md)."
    ),
)

FIRESTORE_STEP_MAX_MS = params.IntParam(
    "PACK391_FIRESTORE_STEP_MAX_MS",
    default=10000,
    label="Longest wait for one Firestore step (ms)",
    description=(
        "One Firestore step on a call's path (a read, a query, a count, or one transaction "
        "with its retries) waits at most this long, and never past the call's budget: a "
        "Firestore that does not answer in that time is treated as stalled, so a long admin "
        "call or a scheduled run with a long timeout learns it in seconds, not at its end."
    ),
)
