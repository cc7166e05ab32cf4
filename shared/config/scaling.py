"""Auto-scaling: its backend, dry run, and the default health URL of a service."""

from __future__ import annotations

from firebase_functions import params

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
