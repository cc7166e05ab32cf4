"""Market admission: who may take a soft-launch slot."""

from __future__ import annotations

from firebase_functions import params

MARKET_SIGNUP_IDENTITY = params.StringParam(
    "PACK391_MARKET_SIGNUP_IDENTITY",
    default="verified",
    label="Market signup identity",
    description=(
        "Who may take a soft-launch slot: verified (not anonymous, and a verified email or a "
        "phone number in the ID token), signed_in (any non-anonymous account), any."
    ),
)
