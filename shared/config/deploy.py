"""The deploy guard: its backend, the canary services, the fast judge, the probe URLs."""

from __future__ import annotations

from firebase_functions import params

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
