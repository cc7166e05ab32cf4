"""Every number of the PACK 391 spec, named with its unit and documented.

Nothing else in the bundle writes a spec number as a literal: policies import
them from here, so a change of policy is a one-line, reviewable diff.

Units are in the names: ``_pct`` (0-100), ``_ratio`` (0-1), ``_ms``, ``_sec``,
``_min``, ``_per_min``, ``_rps`` (requests per second), ``_count``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

# --------------------------------------------------------------------------
# Markets (soft-launch controls)
# --------------------------------------------------------------------------

MARKET_REASON_MAX_CHARS: Final[int] = 500
"""Longest free-text ``reason`` an admin may attach to a market change."""

# --------------------------------------------------------------------------
# Traffic protection (pack391-ddos)
# --------------------------------------------------------------------------

RATE_LIMIT_PER_MIN: Final[MappingProxyType[str, int]] = MappingProxyType(
    {
        "auth": 5,
        "wallet": 10,
        "payment": 3,
        "ai": 50,
        "swipe": 100,
        "general": 200,
    }
)
"""Requests per minute allowed per user and per client IP, by endpoint class."""

RATE_LIMIT_NEAR_LIMIT_PCT: Final[float] = 80.0
"""Share of a limit above which a request is counted as near-limit."""

BRUTE_FORCE_MAX_FAILURES_COUNT: Final[int] = 5
"""Failed wallet/auth attempts within the window that trigger a block."""

BRUTE_FORCE_WINDOW_SEC: Final[int] = 15 * 60
"""Window over which failed attempts are counted."""

BRUTE_FORCE_BLOCK_SEC: Final[tuple[int, ...]] = (60 * 60, 24 * 60 * 60)
"""Block lengths for the first, second (and later) offences: 1 h, then 24 h."""

PANIC_PASS_DURATION_SEC: Final[int] = 5 * 60
"""How long one emergency (priority-lane) pass lasts."""

PANIC_PASSES_PER_DAY_COUNT: Final[int] = 3
"""Passes one user may take per UTC day."""

DDOS_DETECTION_INTERVAL_SEC: Final[int] = 60
"""The detector runs every minute; detection must happen within this time."""

# --------------------------------------------------------------------------
# Auto-scaling (pack391-scaling)
# --------------------------------------------------------------------------

SCALE_UP_CPU_PCT: Final[float] = 65.0
"""CPU utilisation above which a service scales up (the HPA target)."""

SCALE_UP_P95_LATENCY_MS: Final[float] = 400.0
"""p95 request latency above which a service scales up."""

ISOLATE_ERROR_RATE_PCT: Final[float] = 1.5
"""Error rate above which a service is isolated."""

BURST_QUEUE_BACKLOG_COUNT: Final[int] = 5000
"""Queue backlog (jobs) above which worker services burst."""

SCALE_TOLERANCE_RATIO: Final[float] = 0.10
"""HPA tolerance band: no change while |value/target - 1| <= this."""

SCALE_DOWN_STABILISATION_SEC: Final[int] = 5 * 60
"""Scale-down uses the highest recommendation over this window."""

SCALE_COOLDOWN_SEC: Final[int] = 60
"""Minimum time between two actions on one service."""

SCALE_UP_MAX_STEP_PCT: Final[float] = 100.0
"""Scale-up limit per step, as a share of current instances (HPA default)."""

SCALE_UP_MAX_STEP_INSTANCES_COUNT: Final[int] = 4
"""Scale-up limit per step in instances; the larger of the two limits applies."""

# --------------------------------------------------------------------------
# Load testing (pack391-load)
# --------------------------------------------------------------------------

LOAD_TEST_AVG_LATENCY_MS: Final[float] = 200.0
"""Pass threshold: average latency."""

LOAD_TEST_P95_LATENCY_MS: Final[float] = 400.0
"""Pass threshold: p95 latency."""

LOAD_TEST_P99_LATENCY_MS: Final[float] = 800.0
"""Pass threshold: p99 latency."""

LOAD_TEST_ERROR_RATE_PCT: Final[float] = 1.0
"""Pass threshold: error rate."""

LOAD_TEST_ABORT_WITHIN_SEC: Final[float] = 2.0
"""Every worker stops within this time of an abort."""

# --------------------------------------------------------------------------
# Deploy guard (pack391-deploy-guard)
# --------------------------------------------------------------------------

CANARY_STEPS_PCT: Final[tuple[int, ...]] = (5, 25, 100)
"""Traffic share of the new revision at each canary step."""

CANARY_ROLLBACK_PAYOUT_ANOMALY_RATE_PCT: Final[float] = 5.0
"""Rollback when the canary's payout anomaly rate exceeds this."""

CANARY_ROLLBACK_TOKEN_MISMATCH_RATE_PCT: Final[float] = 2.0
"""Rollback when the canary's token mismatch rate exceeds this."""

CANARY_ROLLBACK_AUTH_FAILURE_RATE_PCT: Final[float] = 3.0
"""Rollback when the canary's auth failure rate exceeds this."""

CANARY_ROLLBACK_ERROR_RATE_PCT: Final[float] = 5.0
"""Rollback when the canary's error rate exceeds this."""

CANARY_ROLLBACK_LATENCY_INCREASE_PCT: Final[float] = 50.0
"""Rollback when canary p95 exceeds stable p95 by more than this share."""

ROLLBACK_WITHIN_SEC: Final[int] = 60
"""Detect-and-rollback budget from the first minute of data showing a fault."""

# --------------------------------------------------------------------------
# Ops dashboard (pack391-ops)
# --------------------------------------------------------------------------

ALERT_CRITICAL_FRAUD_COUNT: Final[int] = 5
"""Critical fraud alerts above which ops are notified."""

ALERT_FAILED_PAYOUTS_COUNT: Final[int] = 10
"""Failed payouts above which an immediate review opens."""

ALERT_URGENT_SUPPORT_TICKETS_COUNT: Final[int] = 50
"""Urgent support tickets above which the team is escalated."""

METRICS_HISTORY_RETENTION_DAYS: Final[int] = 30
"""History points older than this are removed."""

# --------------------------------------------------------------------------
# Disaster recovery
# --------------------------------------------------------------------------

BACKUP_INTERVAL_SEC: Final[int] = 60 * 60
"""Hourly snapshots."""

BACKUP_REGIONS: Final[tuple[str, ...]] = ("us-central1", "europe-west1", "asia-northeast1")
"""Every backup is kept in each of these regions."""

RTO_SEC: Final[int] = 15 * 60
"""Recovery time objective."""

RPO_SEC: Final[int] = 60
"""Recovery point objective (point-in-time recovery)."""

BACKUP_FRESHNESS_SLACK_SEC: Final[int] = 15 * 60
"""A region's latest complete backup may be this much older than the hourly interval
before verification calls the hourly promise broken (a late or slow run)."""

BACKUP_RETENTION_DAYS: Final[int] = 30
"""Complete backups older than this are deleted (the spec names no figure: 30 days of
hourly snapshots, cold storage)."""

BACKUP_RETENTION_MIN_KEEP_COUNT: Final[int] = 3
"""Never delete below this many complete backups, whatever their age."""

BACKUP_INTERRUPTED_AFTER_SEC: Final[int] = 2 * 60 * 60
"""A backup still ``running`` this long after it started was interrupted: it is
marked ``failed`` and its partial files are removed."""

BACKUP_PART_MAX_DOCS_COUNT: Final[int] = 5000
"""Documents per encrypted part (and per page read from Firestore)."""

BACKUP_RESTORE_BATCH_DOCS_COUNT: Final[int] = 500
"""Documents per commit when restoring (Firestore's limit per commit)."""

BACKUP_SNAPSHOT_ALIGN_SEC: Final[int] = 60
"""Managed exports and PITR clones take a snapshot time aligned to the whole minute."""

BACKUP_STATUS_RECENT_COUNT: Final[int] = 10
"""How many recent backups ``pack391_getBackupStatus`` lists."""

BACKUP_REASON_MAX_CHARS: Final[int] = 500
"""Longest free-text ``reason`` an admin may attach to a restore drill."""
