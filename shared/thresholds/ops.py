"""The ops dashboard (``pack391-ops``, :mod:`functions.ops`) and the alerts every area raises
(:mod:`shared.alerts`): alert thresholds, metric windows and history, webhook delivery.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACTIVE_USER_WINDOW_MIN",
    "ALERT_CRITICAL_FRAUD_COUNT",
    "ALERT_FAILED_PAYOUTS_COUNT",
    "ALERT_FOR_MINUTES_DEFAULT",
    "ALERT_NOTIFY_SCAN_DOCS",
    "ALERT_RETENTION_DAYS",
    "ALERT_URGENT_SUPPORT_TICKETS_COUNT",
    "DASHBOARD_RECENT_ITEMS",
    "HISTORY_BUCKET_SEC",
    "HISTORY_RANGE_SEC",
    "LIVE_ACTIVITY_ITEMS",
    "LIVE_ACTIVITY_VERSION_WINDOW_MIN",
    "LIVE_ALLOWLIST_ITEMS",
    "LIVE_BLOCKS_ITEMS",
    "LIVE_DEPLOYMENTS_ITEMS",
    "LIVE_ETAG_HEX_CHARS",
    "METRICS_CLEANUP_BATCH_DOCS",
    "METRICS_HISTORY_RETENTION_DAYS",
    "PAYING_USER_WINDOW_DAYS",
    "SUPPORT_RESPONSE_WINDOW_HOURS",
    "TIMELINE_MINUTES_DEFAULT",
    "TIMELINE_MINUTES_MAX",
    "TIMELINE_MINUTES_MIN",
    "TIMELINE_SOURCE_ITEMS",
    "TOKEN_VELOCITY_WINDOW_MIN",
    "WEBHOOK_ATTEMPTS_PER_RUN",
    "WEBHOOK_BACKOFF_SEC",
    "WEBHOOK_CLAIM_SEC",
    "WEBHOOK_MAX_ATTEMPTS",
    "WEBHOOK_TIMEOUT_SEC",
]

ALERT_CRITICAL_FRAUD_COUNT: Final[int] = 5
"""Critical fraud alerts above which ops are notified."""

ALERT_FAILED_PAYOUTS_COUNT: Final[int] = 10
"""Failed payouts above which an immediate review opens."""

ALERT_URGENT_SUPPORT_TICKETS_COUNT: Final[int] = 50
"""Urgent support tickets above which the team is escalated."""

METRICS_HISTORY_RETENTION_DAYS: Final[int] = 30
"""History points older than this are removed."""

ALERT_FOR_MINUTES_DEFAULT: Final[int] = 1
"""Consecutive minutes a threshold condition must hold before its alert fires (the
``PACK391_OPS_ALERT_FOR_MINUTES`` param overrides it). "Service down" has no ``for``."""

ACTIVE_USER_WINDOW_MIN: Final[int] = 15
"""A user is active when their ``lastActiveAt`` is within this many minutes."""

PAYING_USER_WINDOW_DAYS: Final[int] = 30
"""A user is paying when their ``lastPurchaseAt`` is within this many days."""

TOKEN_VELOCITY_WINDOW_MIN: Final[int] = 60
"""Token velocity (earned, spent, transactions per minute) is measured over this window."""

SUPPORT_RESPONSE_WINDOW_HOURS: Final[int] = 24
"""``avgResponseTime`` averages the tickets first answered within this many hours."""

HISTORY_BUCKET_SEC: Final[dict[str, int]] = {"1h": 60, "24h": 5 * 60, "7d": 60 * 60}
"""Bucket width of ``pack391_getHistoricalMetrics`` per range (min/avg/max per bucket)."""

HISTORY_RANGE_SEC: Final[dict[str, int]] = {"1h": 60 * 60, "24h": 24 * 3600, "7d": 7 * 86400}
"""Length of each range of ``pack391_getHistoricalMetrics``."""

METRICS_CLEANUP_BATCH_DOCS: Final[int] = 500
"""History documents deleted per batch by ``pack391_cleanupMetrics``."""

WEBHOOK_ATTEMPTS_PER_RUN: Final[int] = 3
"""POST attempts per notification within one run (backoff between them)."""

WEBHOOK_MAX_ATTEMPTS: Final[int] = 9
"""Attempts per notification over all runs; after this it stays ``failed``."""

WEBHOOK_BACKOFF_SEC: Final[float] = 0.5
"""First backoff between attempts within a run; doubles each attempt."""

WEBHOOK_TIMEOUT_SEC: Final[float] = 5.0
"""Timeout of one webhook POST."""

WEBHOOK_CLAIM_SEC: Final[int] = 120
"""A notification claimed by a run that died is claimable again after this long."""

ALERT_RETENTION_DAYS: Final[int] = 90
"""A resolved alert (``pack391_alerts``) is kept this long after it resolved, then its
``expireAt`` TTL deletes it. Open and acknowledged alerts never expire."""

ALERT_NOTIFY_SCAN_DOCS: Final[int] = 100
"""Alerts with an undelivered notification read per delivery run (open and resolve each)."""

DASHBOARD_RECENT_ITEMS: Final[int] = 20
"""Open alerts, detections, decisions shown by ``pack391_getOpsDashboard`` (each)."""

LIVE_ACTIVITY_ITEMS: Final[int] = 25
"""Audit-log entries ``pack391_getOpsLive`` lists (newest first)."""

LIVE_ACTIVITY_VERSION_WINDOW_MIN: Final[int] = 60
"""The audit entries counted for the live console's activity version: an entry whose
commit lands after a later-dated one is still seen (its count changes the version)."""

LIVE_DEPLOYMENTS_ITEMS: Final[int] = 10
"""Deployments ``pack391_getOpsLive`` lists (newest first)."""

LIVE_BLOCKS_ITEMS: Final[int] = 100
"""Active block mirrors ``pack391_getOpsLive`` reads (latest expiry first)."""

LIVE_ALLOWLIST_ITEMS: Final[int] = 100
"""Allowlist entries ``pack391_getOpsLive`` lists (by entry)."""

LIVE_ETAG_HEX_CHARS: Final[int] = 32
"""Hex digits of the sha256 that ``pack391_getOpsLive``'s ``etag`` keeps (128 bits)."""

TIMELINE_MINUTES_MIN: Final[int] = 5
"""Shortest window ``pack391_getOpsTimeline`` shows, in minutes."""

TIMELINE_MINUTES_MAX: Final[int] = 180
"""Longest window ``pack391_getOpsTimeline`` shows, in minutes."""

TIMELINE_MINUTES_DEFAULT: Final[int] = 60
"""The window ``pack391_getOpsTimeline`` shows when none is asked for, in minutes."""

TIMELINE_SOURCE_ITEMS: Final[int] = 100
"""Records ``pack391_getOpsTimeline`` reads per source (alerts opened, alerts resolved,
detections, blocks, scale decisions, isolation events, audit entries: newest first),
and deployments updated in the window (their history entries inside it)."""
