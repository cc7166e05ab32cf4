"""Load testing: the targets a test may hit, and how its shards are dispatched."""

from __future__ import annotations

from firebase_functions import params

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
