"""The deploy guard (``pack391-deploy-guard``, :mod:`functions.deploy_guard`): canary steps and
rollback thresholds, the judge's statistics, the pre-deploy gates and the deadlines.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CANARY_ANALYSES_KEPT_COUNT",
    "CANARY_BAKE_SEC",
    "CANARY_CHECK_INTERVAL_SEC",
    "CANARY_CONFIDENCE_Z",
    "CANARY_FAILURE_LIMIT",
    "CANARY_FAIL_CONFIDENCE_Z",
    "CANARY_FAST_CHECK_BUDGET_SEC",
    "CANARY_FAST_CHECK_INTERVAL_SEC",
    "CANARY_INCONCLUSIVE_LIMIT",
    "CANARY_LATENCY_FLOOR_MS",
    "CANARY_MIN_BAD_EVENTS_COUNT",
    "CANARY_MIN_REQUESTS_PER_CHECK",
    "CANARY_MIN_REQUESTS_PER_STEP",
    "CANARY_MWU_FAIL_P",
    "CANARY_MWU_MIN_POINTS_COUNT",
    "CANARY_PLATFORM_HOLD_MINUTES_KEPT_COUNT",
    "CANARY_PLATFORM_SETTLE_SEC",
    "CANARY_ROLLBACK_AUTH_FAILURE_RATE_PCT",
    "CANARY_ROLLBACK_ERROR_RATE_PCT",
    "CANARY_ROLLBACK_LATENCY_INCREASE_PCT",
    "CANARY_ROLLBACK_PAYOUT_ANOMALY_RATE_PCT",
    "CANARY_ROLLBACK_TOKEN_MISMATCH_RATE_PCT",
    "CANARY_STEPS_PCT",
    "DEPENDENCY_STALL_MARK_TTL_SEC",
    "DEPLOY_AUTH_FAILURE_RATE_PCT",
    "DEPLOY_AUTH_WINDOW_SEC",
    "DEPLOY_CALL_TIMEOUT_SEC",
    "DEPLOY_MONITOR_TIMEOUT_SEC",
    "DEPLOY_PROBE_TIMEOUT_SEC",
    "DEPLOY_REASON_MAX_CHARS",
    "DEPLOY_REPORT_MAX_AGE_SEC",
    "DEPLOY_SNAPSHOT_MAX_AGE_SEC",
    "DEPLOY_STUCK_PAYOUT_AGE_SEC",
    "DEPLOY_STUCK_PAYOUT_MAX_COUNT",
    "DEPLOY_TRAFFIC_TIMEOUT_SEC",
    "DEPLOY_WALLET_SAMPLE_COUNT",
]

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

CANARY_CHECK_INTERVAL_SEC: Final[int] = 60
"""The monitor judges every active deployment once a minute, on the last complete minute."""

CANARY_BAKE_SEC: Final[int] = 300
"""Default hold of each canary step before it may advance (a start may set its own)."""

CANARY_MIN_REQUESTS_PER_CHECK: Final[int] = 50
"""A check with fewer canary requests in its minute is ``inconclusive``, never a pass."""

CANARY_MIN_REQUESTS_PER_STEP: Final[int] = 500
"""Default requests the canary must have served during a step before it advances."""

CANARY_FAILURE_LIMIT: Final[int] = 2
"""Failed (over-threshold but not yet conclusive) checks before rollback, like Argo's
``failureLimit``; a conclusive breach rolls back at once."""

CANARY_INCONCLUSIVE_LIMIT: Final[int] = 10
"""Inconclusive checks in a row after which the deployment pauses for a human."""

CANARY_CONFIDENCE_Z: Final[float] = 2.576
"""z of the one-sided bound on a rate (99.5 %): a breach is conclusive when the lower
Wilson bound of the canary's rate is over the threshold."""

CANARY_FAIL_CONFIDENCE_Z: Final[float] = 1.0
"""z of the bound for a failed (not yet conclusive) check (84 %, one-sided): one unlucky
event among a handful is not a failure."""

CANARY_MIN_BAD_EVENTS_COUNT: Final[int] = 3
"""A rate fails or breaches only with at least this many bad events in the minute: one
anomalous payout out of one is a ratio of 100 % but no evidence."""

CANARY_LATENCY_FLOOR_MS: Final[float] = 25.0
"""Latency breaches smaller than this in absolute terms are noise, not a regression."""

CANARY_MWU_MIN_POINTS_COUNT: Final[int] = 5
"""Minutes of the step (each with both revisions measured) before the judge tests canary
against stable with a one-sided Mann-Whitney U test, as Kayenta does; fewer: the Wilson
bounds of the judged minute, relative to stable. Three per side can never reach
:data:`CANARY_MWU_FAIL_P` (smallest p 0.040), four only when every canary minute is worse
(0.015); five can with one or two minutes that are not (0.011, 0.018), and are what a
step of the default bake (300 s) has."""

CANARY_MWU_FAIL_P: Final[float] = 0.025
"""A Mann-Whitney p-value under this (canary worse than stable by more than the rule's
threshold over the step's minutes) fails the check (counts toward the failure limit):
Kayenta's 95 % confidence, one side."""

CANARY_PLATFORM_SETTLE_SEC: Final[int] = 120
"""A scale or isolation change explains the minutes up to this long after it (instances
starting, callers failing over), besides the minute it happened in."""

CANARY_PLATFORM_HOLD_MINUTES_KEPT_COUNT: Final[int] = 30
"""Judged minutes a platform pause records on the deployment (the most recent)."""

DEPENDENCY_STALL_MARK_TTL_SEC: Final[int] = 2 * 3600
"""How long the per-minute mark of calls that a dependency did not answer within their
budget is kept in Redis (the canary judge reads the minutes it judges)."""

CANARY_ANALYSES_KEPT_COUNT: Final[int] = 20
"""Most recent analyses kept on the deployment document."""

DEPLOY_REPORT_MAX_AGE_SEC: Final[int] = 30 * 60
"""A pre-deploy report older than this no longer lets a deployment start."""

DEPLOY_REASON_MAX_CHARS: Final[int] = 500
"""Longest reason accepted for a forced start, a rollback or a manual action."""

DEPLOY_STUCK_PAYOUT_AGE_SEC: Final[int] = 60 * 60
"""A payout still ``pending`` after this long is stuck."""

DEPLOY_STUCK_PAYOUT_MAX_COUNT: Final[int] = 0
"""Stuck payouts allowed by the payment gate."""

DEPLOY_WALLET_SAMPLE_COUNT: Final[int] = 50
"""Wallets whose balance is checked against their transactions by the token gate."""

DEPLOY_AUTH_WINDOW_SEC: Final[int] = 15 * 60
"""Window of auth events the auth gate looks at."""

DEPLOY_AUTH_FAILURE_RATE_PCT: Final[float] = 3.0
"""The auth gate fails above this failure rate (the canary's own limit)."""

DEPLOY_PROBE_TIMEOUT_SEC: Final[float] = 5.0
"""Timeout of each API endpoint probe of the pre-deploy validator."""

DEPLOY_TRAFFIC_TIMEOUT_SEC: Final[float] = 20.0
"""Longest wait for a Cloud Run traffic update operation (a traffic-only update creates no
revision and completes in seconds; a longer wait would not fit the spec's minute: see
``stack.constants.CANARY_ROLLBACK_WORST_CASE_SEC``). Updates to several services go out in
parallel."""

DEPLOY_SNAPSHOT_MAX_AGE_SEC: Final[int] = 6 * 3600
"""A traffic snapshot (``pack391_pinTraffic`` before ``firebase deploy``) older than this is
not used as the stable side of a canary: it belongs to an earlier deploy."""

CANARY_FAST_CHECK_INTERVAL_SEC: Final[int] = 10
"""While a canary is live, a breach check runs this often (a Cloud Tasks chain, one task
per tick, ending with the deployment): detection no longer waits for the minute."""

CANARY_FAST_CHECK_BUDGET_SEC: Final[float] = 15.0
"""What one fast check may spend reading metrics and deciding (its task's deadline is this
plus the traffic write)."""

DEPLOY_CALL_TIMEOUT_SEC: Final[int] = 180
"""Function timeout of the deploy guard's callables that move traffic (start, rollback,
control, pin): up to ``TRAFFIC_WRITE_ATTEMPTS`` (3) rounds of parallel reads (10 s) and
parallel conditional writes (``DEPLOY_TRAFFIC_TIMEOUT_SEC``, 20 s), each after a Firestore
generation check (10 s budget): 3 x 40 = 120 s, plus the decision's and confirmation's
transactions and the reconciling read and write (parallel, 30 s): 170 s, under 180."""

DEPLOY_MONITOR_TIMEOUT_SEC: Final[int] = 540
"""Function timeout of the minute monitor: one :data:`DEPLOY_CALL_TIMEOUT_SEC` step per
active deployment, one after another (one deployment per environment; three environments
at their worst: 510 s). Cloud Scheduler starts the next minute's run meanwhile; both
decide inside the same per-minute transactions, so an overlap never double-steps."""
