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


# --------------------------------------------------------------------------
# Disaster recovery
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


FRONT_DOORS = ("google", "load-balancer", "cloudflare", "direct")
"""The front-door modes (see :mod:`shared.ratelimit.client` and the README)."""

FRONT_DOOR = params.StringParam(
    "PACK391_FRONT_DOOR",
    default="google",
    label="Front door",
    description=(
        "What sits in front of the functions, which decides where the client address comes "
        "from: google (a plain firebase deploy: Google's front end appends the client to "
        "X-Forwarded-For), load-balancer (an external Application Load Balancer), cloudflare "
        "(Cloudflare in front; its headers believed only from its published ranges), direct "
        "(the TCP peer is the client: the local stack)."
    ),
)

TRUSTED_HOPS = params.IntParam(
    "PACK391_TRUSTED_HOPS",
    default=-1,
    label="Trusted X-Forwarded-For hops",
    description=(
        "Entries at the right of X-Forwarded-For added by your own trusted proxies, skipped "
        "before the client's (Envoy's xff_num_trusted_hops). -1: the mode's own (google 0, "
        "load-balancer 1 for the forwarding rule's address, cloudflare 0)."
    ),
)

COUNTRY_HEADER = params.StringParam(
    "PACK391_COUNTRY_HEADER",
    default="X-Client-Region",
    label="Country header (load balancer)",
    description=(
        "load-balancer mode: the custom request header the load balancer sets to "
        "{client_region}; its right-most value is believed."
    ),
)

CLOUDFLARE_RANGES = params.ListParam(
    "PACK391_CLOUDFLARE_RANGES",
    default=[
        "173.245.48.0/20",
        "103.21.244.0/22",
        "103.22.200.0/22",
        "103.31.4.0/22",
        "141.101.64.0/18",
        "108.162.192.0/18",
        "190.93.240.0/20",
        "188.114.96.0/20",
        "197.234.240.0/22",
        "198.41.128.0/17",
        "162.158.0.0/15",
        "104.16.0.0/13",
        "104.24.0.0/14",
        "172.64.0.0/13",
        "131.0.72.0/22",
        "2400:cb00::/32",
        "2606:4700::/32",
        "2803:f800::/32",
        "2405:b500::/32",
        "2405:8100::/32",
        "2a06:98c0::/29",
        "2c0f:f248::/32",
    ],
    label="Cloudflare ranges",
    description=(
        "cloudflare mode: Cloudflare's published egress ranges (ips-v4 and ips-v6); "
        "CF-Connecting-IP and CF-IPCountry are believed only from these."
    ),
)

LB_ADDRESSES = params.ListParam(
    "PACK391_LB_ADDRESSES",
    default=[],
    label="Load balancer: forwarding rule addresses",
    description=(
        "load-balancer mode: the external address(es) of the forwarding rule (the right-most "
        "X-Forwarded-For entry the load balancer writes). A request without one of them on "
        "the right did not come through the load balancer and is keyed by its real address. "
        "Required on a deployed function in that mode."
    ),
)

IPV6_PREFIX = params.IntParam(
    "PACK391_IPV6_PREFIX",
    default=64,
    label="IPv6 prefix of one client",
    description=(
        "IPv6 clients are counted, limited and blocked by this many leading bits (64: one "
        "subscriber's or one server's network, as Cloudflare counts them); 32..128."
    ),
)

ESTABLISHED_MIN_AGE_MIN = params.IntParam(
    "PACK391_ESTABLISHED_MIN_AGE_MIN",
    default=60,
    label="Established user: minutes since sign-in",
    description=(
        "A signed-in user counts as established (shields a shared address, sizes its quota, "
        "may take panic passes and soft-launch places) once this many minutes have passed "
        "since its sign-in (the ID token's auth_time); anonymous, staff and service "
        "accounts never do."
    ),
)

DDOS_SHADOW_ACTIONS = params.ListParam(
    "PACK391_DDOS_SHADOW_ACTIONS",
    default=[],
    label="DDoS actions in shadow mode",
    description=(
        "Automatic mitigation actions that only record what they would do (in the detection "
        "and its alert) without enforcing it, as Cloud Armor's preview mode does: any of "
        "ddos_mode, block_address, block_user, refuse_anonymous."
    ),
)

RATE_LIMIT_SHADOW_CLASSES = params.ListParam(
    "PACK391_RATE_LIMIT_SHADOW_CLASSES",
    default=[],
    label="Shadow-mode classes",
    description="Endpoint classes whose limits count and report but never deny (for tuning).",
)


# Auto-scaling -------------------------------------------------------------

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


# Deploy guard -------------------------------------------------------------

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

CANARY_FAST_JUDGE = params.BoolParam(
    "PACK391_CANARY_FAST_JUDGE",
    default=True,
    label="Fast canary judge",
    description=(
        "While a canary is live, check it for a conclusive breach every 10 s (a Cloud Tasks "
        "chain to pack391JudgeDeployment; timers on the local stack), so a bad canary is "
        "rolled back within the spec's minute; false: only the minute monitor judges."
    ),
)

DEPLOY_PROBE_URLS = params.ListParam(
    "PACK391_DEPLOY_PROBE_URLS",
    default=[],
    label="Pre-deploy probe URLs",
    description="URLs the api_endpoints gate GETs (2xx within 5 s passes).",
)


# Ops dashboard ------------------------------------------------------------

OPS_WEBHOOK_URL = params.SecretParam(
    "PACK391_OPS_WEBHOOK_URL",
    label="Ops alert webhook",
    description=(
        "URL that ops alerts are POSTed to as JSON ({text, alert}; a Slack incoming webhook "
        "works): a secret, since the URL is the credential. Bound only when "
        "PACK391_OPS_WEBHOOK_ENABLED is true, to the function that sends alerts; otherwise "
        "any value (pack391 deploy secrets --create stores a placeholder)."
    ),
)

OPS_WEBHOOK_ENABLED = params.BoolParam(
    "PACK391_OPS_WEBHOOK_ENABLED",
    default=False,
    label="Send ops alerts to the webhook",
    description=(
        "true: alerts are sent to PACK391_OPS_WEBHOOK_URL (bound to the sending function); "
        "false: alerts are recorded but not sent. Read at deploy discovery too: set it in "
        ".env.<project>."
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


# Load testing -------------------------------------------------------------

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


# Market admission ---------------------------------------------------------

MARKET_SIGNUP_IDENTITY = params.StringParam(
    "PACK391_MARKET_SIGNUP_IDENTITY",
    default="verified",
    label="Market signup identity",
    description=(
        "Who may take a soft-launch slot: verified (not anonymous, and a verified email or a "
        "phone number in the ID token), signed_in (any non-anonymous account), any."
    ),
)


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

CLOUDFLARE_ORIGIN_HEADER = params.StringParam(
    "PACK391_CLOUDFLARE_ORIGIN_HEADER",
    default="X-Pack391-Origin-Secret",
    label="Cloudflare origin secret header",
    description=(
        "cloudflare mode: the request header your zone's Transform Rule sets to "
        "PACK391_CLOUDFLARE_ORIGIN_SECRET; Cloudflare's headers are believed only when it "
        "carries the secret."
    ),
)

CLOUDFLARE_ORIGIN_SECRET = params.SecretParam(
    "PACK391_CLOUDFLARE_ORIGIN_SECRET",
    label="Cloudflare origin secret",
    description=(
        "cloudflare mode: the value your zone's Transform Rule sets in "
        "PACK391_CLOUDFLARE_ORIGIN_HEADER, proof that a request came through your own zone "
        "(16+ characters: openssl rand -hex 32). Required deployed in cloudflare mode; bound "
        "only to the callables of a cloudflare-mode deploy. Other modes: any value."
    ),
)

ORIGIN_SECRET_MIN_CHARS = 16
"""Shortest origin secret accepted: a shorter one is guessable by the clients it must keep
out (``openssl rand -hex 32`` gives 64)."""


def is_deployed_instance() -> bool:
    """True on a deployed function: ``K_SERVICE`` is set (Cloud Run and Cloud Functions 2nd
    gen set it on every instance) and no emulator is (the Firebase CLI's emulator sets
    ``K_SERVICE`` too, with ``FUNCTIONS_EMULATOR``)."""
    return bool(os.environ.get("K_SERVICE")) and not is_emulated()
