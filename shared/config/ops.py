"""The ops dashboard: the alert webhook and how long a threshold must hold."""

from __future__ import annotations

from firebase_functions import params

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
