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
        "staff": 600,
        "service": 1200,
    }
)
"""Requests per minute allowed per user and per client IP, by endpoint class. ``staff``
is the class of ops and admin callers of ops and admin functions: counted per user
only, exempt from IP blocks, IP buckets and DDoS mode (issue 11). ``service`` is the class
of a trusted app backend's own calls (``service: true`` claim), counted per principal the
same way, never by its egress address (issue 21)."""

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

RATE_LIMIT_PERIOD_SEC: Final[int] = 60
"""The period the per-class limits are counted over (they are per minute)."""

RATE_LIMIT_FAIL_CLOSED_CLASSES: Final[frozenset[str]] = frozenset({"auth", "wallet", "payment"})
"""Classes denied (UNAVAILABLE) while Redis is down; the others are allowed (fail open)."""

RATE_LIMIT_UNAVAILABLE_RETRY_SEC: Final[float] = 2.0
"""``retryAfterSec`` of a fail-closed class's UNAVAILABLE answer while Redis is down."""

BRUTE_FORCE_GUARDED_CLASSES: Final[frozenset[str]] = frozenset({"auth", "wallet", "payment"})
"""Classes a brute-force block (of the user or the IP) denies."""

BRUTE_FORCE_OFFENCE_MEMORY_SEC: Final[int] = 30 * 24 * 60 * 60
"""How long earlier offences count towards a longer block."""

GEO_CACHE_TTL_SEC: Final[int] = 30
"""How long an instance trusts its in-process copy of the geo throttle rules: a
change applies everywhere within this time."""

GEO_LOAD_TIMEOUT_SEC: Final[float] = 5.0
"""The background read of the geo rules gives up after this long (and keeps the last
rules); requests never wait for it beyond the Redis budget."""

GEO_MULTIPLIER_MAX: Final[float] = 10.0
"""Largest per-country multiplier an admin may set (0 < multiplier <= this)."""

DDOS_DETECTION_INTERVAL_SEC: Final[int] = 60
"""The detector runs every minute; detection must happen within this time."""

DDOS_BASELINE_WINDOW_MIN: Final[int] = 30
"""Minutes of history the traffic baseline is the median of (a median, so the
minutes of an ongoing attack do not raise it)."""

DDOS_MIN_REQUESTS_PER_MIN: Final[int] = 600
"""Floor of the baseline: below this total nothing is a spike (quiet hours, fresh deploys)."""

DDOS_MIN_DISTINCT_IPS_PER_MIN: Final[int] = 50
"""Floor of the distinct-IP baseline."""

DDOS_PARTIAL_MINUTE_MIN_SEC: Final[int] = 10
"""The detector also judges the current minute once this much of it has passed,
extrapolating its counts, so an attack is seen within a minute of its start."""

DDOS_SPIKE_FACTOR: Final[float] = 5.0
"""Total requests above this multiple of the baseline is a traffic spike (high)."""

DDOS_SPIKE_CRITICAL_FACTOR: Final[float] = 10.0
"""... and above this multiple, critical (auto-mitigated)."""

DDOS_DISTRIBUTED_IPS_FACTOR: Final[float] = 5.0
"""Distinct IPs above this multiple of their baseline, with a spike, is a distributed attack."""

DDOS_DISTRIBUTED_MAX_TOP_IP_SHARE_PCT: Final[float] = 5.0
"""... when no single IP carries more than this share of the traffic (each source modest)."""

DDOS_BOT_SWARM_MIN_IPS: Final[int] = 50
"""One user-agent fingerprint seen from at least this many IPs in a minute ..."""

DDOS_BOT_SWARM_MIN_SHARE_PCT: Final[float] = 30.0
"""... carrying at least this share of the traffic ..."""

DDOS_BOT_SWARM_MAX_USUAL_SHARE_PCT: Final[float] = 10.0
"""... when its usual share (median of the last minutes) is below this, is a bot swarm.
A fingerprint that always carries most traffic is the app itself, not a swarm."""

DDOS_FINGERPRINT_HISTORY_MIN: Final[int] = 4
"""Minutes of fingerprint history kept and compared against (top lists live 5 minutes)."""

DDOS_SINGLE_SOURCE_PER_MIN: Final[int] = 600
"""One IP sending more than this per minute is a single-source flood (critical)."""

DDOS_MODE_DURATION_SEC: Final[int] = 15 * 60
"""How long auto-mitigation keeps DDoS mode on (extended while attacks go on)."""

DDOS_MODE_LIMIT_FACTOR: Final[float] = 0.5
"""Limits are multiplied by this in DDoS mode (panic-pass holders excepted)."""

DDOS_SOURCE_BLOCK_SEC: Final[int] = 60 * 60
"""How long auto-mitigation blocks a flooding source."""

DDOS_BLOCK_TOP_SOURCES_COUNT: Final[int] = 10
"""At most this many sources are blocked per detection."""

DDOS_STATS_TTL_SEC: Final[int] = 2 * 60 * 60
"""Per-minute counters are kept this long (baseline window plus the last hour)."""

DDOS_SHARED_ADDRESS_MIN_USERS: Final[int] = 20
"""An address that carried at least this many distinct signed-in users in the minute is
shared (a NAT, a campus, a front end): it is never blocked automatically; its flooding
users are blocked instead."""

DDOS_SINGLE_USER_PER_MIN: Final[int] = 600
"""One signed-in user sending more than this per minute (from a shared address) is
blocked as a flooding source."""

DDOS_BLAST_RADIUS_MAX_PCT: Final[float] = 5.0
"""An automatic action that would deny more than this share of legitimate traffic
(distinct users behind a blocked address, or baseline requests that halved limits
would deny) is not applied: it is held, and an alert asks a human."""

DDOS_BLOCK_LIST_REFRESH_SEC: Final[float] = 1.0
"""Each instance re-reads the list of blocked addresses at most this often; the front
door checks it before token verification, with no Redis round trip per request."""

DDOS_USERS_PER_ADDRESS_TOP_COUNT: Final[int] = 10
"""Heaviest users looked at behind one shared address."""

BRUTE_FORCE_SUCCESS_RESETS_PER_WINDOW: Final[int] = 3
"""A reported success clears the caller's own failure window at most this many times per
window; later success reports change nothing (and never touch the address's window)."""

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

SCALE_UP_POLICY_PERIOD_SEC: Final[int] = 15
"""The length of one scale-up step, as in Kubernetes' HPA (``periodSeconds: 15`` on its
default +100%/+4 policies). The guard runs once a minute, so one run may compound
four steps: 5 instances may become 80, which covers a 10x spike in one minute."""

# Auto-scaling, added with the scaling engine (issue 4) -------------------

SCALING_SERVICE_INSTANCES: Final[MappingProxyType[str, tuple[int, int, int]]] = MappingProxyType(
    {
        "api-gateway": (3, 2, 50),
        "matching-engine": (5, 3, 40),
        "chat-service": (4, 2, 40),
        "payment-processor": (2, 2, 20),
        "ai-companion": (10, 5, 100),
        "media-processing": (3, 1, 50),
        "notification-service": (2, 1, 30),
    }
)
"""The registry ``pack391_initScaling`` creates: service -> (initial, min, max) instances.
Initial counts are the spec's; the bounds are ours (min keeps the spec's floor for
payments, max leaves room for a 10x spike)."""

SCALE_UP_REQUESTS_PER_INSTANCE_TARGET_RATIO: Final[float] = 0.65
"""Share of a service's per-instance request capacity (``requestsPerInstancePerMin``
in its registry entry) targeted by the request-rate recommendation, like the CPU target."""

SCALE_METRICS_MAX_AGE_SEC: Final[int] = 5 * 60
"""A metrics sample whose minute started longer ago than this is stale: ``no_data``,
never acted on. Cloud Run metrics are sampled every 60 s and may take up to 180 s to
become visible in Cloud Monitoring, so a healthy newest point can be ~4 minutes old."""

SCALE_GUARD_INTERVAL_SEC: Final[int] = 60
"""``pack391_scaleGuard`` runs every minute (unix-cron ``* * * * *``); metrics are
aligned and pushed samples bucketed on the same minute."""

SCALE_GUARD_LOCK_SEC: Final[int] = 55
"""Lifetime of the Redis lock one scale-guard run holds (shorter than the interval)."""

MANUAL_SCALE_HOLD_SEC: Final[int] = 30 * 60
"""After a manual scale, automatic scale-down of the service is held off this long."""

MANUAL_SCALE_LOCK_WAIT_SEC: Final[float] = 5.0
"""A manual scale waits this long for a running scale guard to release its lock
(then answers ``UNAVAILABLE``)."""

INSTANCES_HARD_MAX_COUNT: Final[int] = 1000
"""No instance count (even a forced manual one) may exceed this (Cloud Run's ceiling)."""

ISOLATION_OPEN_SEC: Final[int] = 2 * 60
"""An isolated service fails every caller fast for this long, then turns half-open."""

ISOLATION_HALF_OPEN_ADMIT_PCT: Final[float] = 10.0
"""Share of calls a half-open service lets through, so its error rate can be measured."""

ISOLATION_RECOVERY_SEC: Final[int] = 3 * 60
"""A half-open service recovers once its error rate stayed at or under the threshold
for this long."""

ISOLATION_MIN_REQUESTS_PER_MIN: Final[int] = 20
"""The error-rate trigger needs at least this many requests in the minute (when the
request count is known): 1 failure out of 3 requests is noise, not an outage."""

ISOLATION_FLAG_TTL_SEC: Final[int] = 10 * 60
"""The Redis isolation flag expires unless the scale guard refreshes it (fail open)."""

BURST_BACKLOG_PER_INSTANCE_COUNT: Final[int] = 1000
"""Queue burst: one worker instance per this many jobs of backlog (bounded by max)."""

BURST_DRAINED_BACKLOG_COUNT: Final[int] = 100
"""A burst is over (its extra instances are given back) at or below this backlog."""

PUSHED_METRICS_RETENTION_SEC: Final[int] = 60 * 60
"""Per-minute pushed metric buckets are kept this long in Redis."""

HEALTH_PROBE_TIMEOUT_SEC: Final[float] = 2.0
"""Timeout of the HTTP probe of a service's health URL."""

SCALE_OPERATION_TIMEOUT_SEC: Final[float] = 60.0
"""Deadline of one Cloud Run scaling update, from sending the request to its long-running
operation being done: past it the update is answered as a ``TimeoutError`` (the platform
did not take it; the next guard run decides again from what Cloud Run holds). A
service-level manual instance count creates no revision, so the operation is usually done
in seconds. The scale guard and ``pack391_manualScale`` size their function timeouts
from it (:mod:`functions.scaling.budget`)."""

CLOUD_RUN_READ_TIMEOUT_SEC: Final[float] = 10.0
"""Deadline of one Cloud Run read (``get_service``: the instance count the platform holds)."""

MONITORING_READ_TIMEOUT_SEC: Final[float] = 10.0
"""Deadline of one Cloud Monitoring query (``list_time_series``) of the scaling engine."""

FIRESTORE_STEP_BUDGET_SEC: Final[float] = 10.0
"""Time allowed, in the function-timeout arithmetic, for one Firestore step of a scaling
run (a document read, or one transaction: its reads, commit and contention retries)."""

CLOUD_RUN_MAX_PARALLEL_UPDATES: Final[int] = 8
"""Most Cloud Run updates (and the per-service work around them) one function runs at
once: at least the spec's 7 scaled services, so a scale-guard run is one wave."""

RESIZE_HOOK_TIMEOUT_SEC: Final[float] = 2.0
"""Timeout of the local scaler's call to a service's resize hook."""

SCALING_HISTORY_RETENTION_DAYS: Final[int] = 30
"""Decision and alert documents carry ``expireAt`` this far ahead (a Firestore TTL policy
on that field deletes them)."""

SCALING_REASON_MAX_CHARS: Final[int] = 500
"""Longest ``reason`` of a manual scale."""

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

# Load testing, added with the load engine (issue 5) ----------------------

LOAD_TEST_SCENARIOS: Final[MappingProxyType[str, tuple[float, int, str]]] = MappingProxyType(
    {
        "swipe_load": (1666.0, 300, "load"),
        "chat_monetization": (416.0, 600, "load"),
        "payout_surge": (83.0, 180, "stress"),
        "live_calls": (33.0, 900, "endurance"),
        "event_purchase_spike": (166.0, 120, "spike"),
        "ai_companion_messages": (833.0, 600, "scalability"),
    }
)
"""The spec's scenarios: id -> (target requests per second, duration in seconds, type).
100K concurrent swipes = 1,666 RPS; 25K paid chats = 416; 5K payouts = 83; 2K calls = 33;
10K event purchases/min = 166; 50K AI messages/min = 833."""

LOAD_TEST_DROPPED_PCT: Final[float] = 1.0
"""Pass threshold: share of scheduled starts the generator could not make (a saturated
generator fails the run instead of passing off fewer requests as a fast app)."""

LOAD_TEST_LATE_START_MS: Final[float] = 10.0
"""A start made more than this after its scheduled time is counted as ``late`` (still
sent; its latency counts from the scheduled time)."""

LOAD_TEST_DROP_AFTER_MS: Final[float] = 1000.0
"""A start more than this behind schedule is not sent and counted as ``dropped``."""

LOAD_TEST_REQUEST_TIMEOUT_SEC: Final[float] = 10.0
"""Default per-request timeout (a timeout is an error of kind ``timeout``)."""

LOAD_TEST_MAX_IN_FLIGHT_PER_SHARD: Final[int] = 4000
"""Requests one shard keeps open at most; a start beyond it is ``dropped``. At 1,666 RPS
this covers a 2.4 s stall of the target without dropping."""

LOAD_TEST_SHARD_MAX_RPS: Final[float] = 900.0
"""Peak rate one shard is given at most: one worker process (one core) holds about this
with room to spare (docs/benchmarks.md). Shards = ceil(peak / this) unless overridden."""

LOAD_TEST_GLOBAL_RPS_CAP: Final[float] = 5000.0
"""Sum of the peak rates of all running load tests may not exceed this."""

LOAD_TEST_REAP_GRACE_SEC: Final[int] = 300
"""A run holds its share of the cap until it ends, or at most this long past its
planned end (start + duration): a run whose shards stopped reporting is then reaped."""

LOAD_TEST_MAX_SHARDS: Final[int] = 64
"""Most shards one run may be split into."""

LOAD_TEST_MAX_DURATION_SEC: Final[int] = 1500
"""Longest run allowed (a shard must end inside the task-queue function's 30-minute limit)."""

LOAD_TEST_HISTOGRAM_MAX_US: Final[int] = 120_000_000
"""Highest latency the histograms track (microseconds): two minutes."""

LOAD_TEST_HISTOGRAM_SIGNIFICANT_DIGITS: Final[int] = 3
"""HdrHistogram precision: values within 0.1%."""

LOAD_TEST_ABORT_POLL_SEC: Final[float] = 0.25
"""How often a shard checks for an abort (well inside ``LOAD_TEST_ABORT_WITHIN_SEC``)."""

LOAD_TEST_BREACH_SUSTAIN_SEC: Final[int] = 5
"""With abort-on-fail, a threshold breached over this many consecutive seconds aborts."""

LOAD_TEST_SLICE_SEC: Final[int] = 5
"""A shard writes its per-second results every this many seconds (progress and crash
safety; also the live display's refresh)."""

LOAD_TEST_HEATMAP_BUCKETS_MS: Final[tuple[float, ...]] = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000,
)  # fmt: skip
"""Upper bounds of the heatmap's latency rows (a last row holds everything above)."""

LOAD_TEST_RAMP_SHARE: Final[float] = 0.1
"""``load`` shape: ramp up over this share of the run, and down over the last share."""

LOAD_TEST_STEP_LEVELS: Final[tuple[float, ...]] = (0.25, 0.5, 0.75, 1.0)
"""``stress`` and ``scalability`` shapes: equal-length steps at these shares of the peak."""

LOAD_TEST_SPIKE_BASE_SHARE: Final[float] = 0.2
"""``spike`` shape: the rate before and after the spike, as a share of the peak."""

LOAD_TEST_SPIKE_WINDOW: Final[tuple[float, float]] = (0.4, 0.6)
"""``spike`` shape: the spike at full rate spans this part of the run."""

LOAD_TEST_RETENTION_DAYS: Final[int] = 30
"""Run documents carry ``expireAt`` this far ahead; cleanup defaults to this age."""

LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE: Final[int] = 8
"""Sandbox: requests one simulated instance serves at once (capacity = instances x this)."""

LOAD_SANDBOX_SWIPES_PER_USER_PER_SEC: Final[int] = 10
"""Sandbox: the swipe rate limiter's allowance per user per second."""

LOAD_SANDBOX_AI_DELAY_MS: Final[tuple[float, float]] = (40.0, 120.0)
"""Sandbox: the model-like delay range of an AI companion reply."""

LOAD_SANDBOX_METRICS_INTERVAL_SEC: Final[float] = 10.0
"""Sandbox: how often each simulated service pushes its metrics sample."""

# Local stack under load, added with issue 14 ------------------------------

LOAD_SANDBOX_QUEUE_PER_INSTANCE: Final[int] = 8
"""Sandbox admission: requests one simulated instance holds waiting beyond those it
serves (queue = instances x this). A request past it is shed at once with 503 and
``Retry-After``, as Cloud Run answers when over capacity: shed rather than queue, so an
overload leaves no backlog behind it."""

LOAD_SANDBOX_QUEUE_WAIT_MAX_MS: Final[float] = 500.0
"""Sandbox admission: a queued request still waiting after this long is shed (503)."""

LOAD_SANDBOX_SHED_RETRY_AFTER_SEC: Final[int] = 1
"""Sandbox admission: the ``Retry-After`` of a shed request."""

LOAD_SANDBOX_BACKEND_TIMEOUT_SEC: Final[float] = 5.0
"""Sandbox: the bound on waiting for a pooled Redis connection and on one Firestore
call (past it: 503 with ``Retry-After``, never a pile-up)."""

LOAD_TEST_SHED_PCT: Final[float] = 1.0
"""Pass threshold: share of requests shed by the target (503 with ``Retry-After``,
counted apart from errors)."""

LOAD_TEST_PROGRESS_EVERY_SEC: Final[float] = 5.0
"""``pack391 loadtest`` progress when stderr is not a terminal: one line this often."""

STACK_LOG_MAX_BYTES: Final[int] = 10 * 1024 * 1024
"""Local stack: a child's log file (``.local/logs/NAME.log``) past this size is moved to
``NAME.log.1`` (replacing the previous one) and started afresh."""

STACK_LOG_CHECK_SEC: Final[float] = 2.0
"""Local stack: how often the log files' sizes are checked."""

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

CANARY_ANALYSES_KEPT_COUNT: Final[int] = 20
"""Most recent analyses kept on the deployment document."""

CANARY_MONITOR_LEASE_SEC: Final[int] = 50
"""Two monitor runs within this time of each other never both judge the same minute."""

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
``CANARY_ROLLBACK_WORST_CASE_SEC``). Updates to several services go out in parallel."""

DEPLOY_SNAPSHOT_MAX_AGE_SEC: Final[int] = 6 * 3600
"""A traffic snapshot (``pack391_pinTraffic`` before ``firebase deploy``) older than this is
not used as the stable side of a canary: it belongs to an earlier deploy."""

CANARY_FAST_CHECK_INTERVAL_SEC: Final[int] = 10
"""While a canary is live, a breach check runs this often (a Cloud Tasks chain, one task
per tick, ending with the deployment): detection no longer waits for the minute."""

CANARY_FAST_CHECK_BUDGET_SEC: Final[float] = 15.0
"""What one fast check may spend reading metrics and deciding (its task's deadline is this
plus the traffic write)."""

CANARY_TASK_DELAY_SEC: Final[float] = 5.0
"""How late Cloud Tasks may dispatch a scheduled task, allowed for in the worst case (it
dispatches at ``scheduleTime`` best effort; the chain's next tick is enqueued first)."""

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

CANARY_ROLLBACK_WORST_CASE_SEC: Final[float] = (
    CANARY_FAST_CHECK_INTERVAL_SEC
    + CANARY_TASK_DELAY_SEC
    + CANARY_FAST_CHECK_BUDGET_SEC
    + DEPLOY_TRAFFIC_TIMEOUT_SEC
)
"""From the moment a breach is in the data to 100 % back on stable, at worst: a tick just
missed it (interval), the next one dispatched late, judged slowly, and the traffic write
took its whole deadline: 10 + 5 + 15 + 20 = 50 s, inside the spec's minute. Metrics must be
*in the data*: Cloud Monitoring publishes Cloud Run points up to 3 minutes late, the
business events (payouts, ledger, auth) and pushed metrics are there at once."""

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

LIVE_METRICS_INTERVAL_SEC: Final[int] = 60
"""``pack391_updateLiveMetrics`` runs every minute; one history point per minute."""

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

TX_MAX_ATTEMPTS: Final[int] = 12
"""Attempts of every transaction the bundle runs (the client's default is 5): the client
retries an aborted commit this many times, keeping its place in line. Writers of one hot
document (an alert's dedup key, the load-test admission ledger, a market's slots)
serialise on it; under contention the emulator answers "Transaction lock timeout" for
whole attempts (:func:`shared.firestore.contended`)."""

TX_ROUNDS: Final[int] = 4
"""Rounds of :data:`TX_MAX_ATTEMPTS` attempts, with a jittered, doubling pause between
rounds (0.05-0.25 s, doubling), before a transaction's contention reaches its caller."""

ALERT_NOTIFY_SCAN_DOCS: Final[int] = 100
"""Alerts with an undelivered notification read per delivery run (open and resolve each)."""

DASHBOARD_RECENT_ITEMS: Final[int] = 20
"""Open alerts, detections, decisions shown by ``pack391_getOpsDashboard`` (each)."""

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

BACKUP_EXPORT_DEADLINE_SEC: Final[int] = 45 * 60
"""A managed export (the hourly Firestore ``ExportDocuments`` operation, with its
server-side copies to the other regions) not finished this long after it started is
stuck: the poll raises the backup alert (``backup:promise:exports``) while it stays
so, before the next hour's export starts. Past :data:`BACKUP_INTERRUPTED_AFTER_SEC`
the poll cancels the operation and marks the backup ``failed``."""

BACKUP_POLL_BUDGET_SEC: Final[int] = 240
"""Work one run of ``pack391_pollBackupExports`` does (operation reads, copies,
verification) before it stops and leaves the rest to the next run (every 5 minutes,
timeout 300 s): a copy interrupted here is resumed, never restarted."""

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

# --------------------------------------------------------------------------
# Market slots that cannot be squatted (issue 11, part 5)
# --------------------------------------------------------------------------

MARKET_ADMISSION_PENDING_SEC: Final[int] = 24 * 60 * 60
"""A soft-launch admission stays *pending* this long after signup: activated by the
app's backend when onboarding completes (``pack391_checkMarketAccess {activate: true,
uid}`` from a ``service: true`` caller) it is kept; not activated by then,
``pack391_syncMarkets`` releases the slot."""

MARKET_RELEASE_MAX_UIDS_COUNT: Final[int] = 500
"""Most admissions one ``pack391_releaseMarketAdmissions`` call names or releases (one
Firestore transaction with its audit entry); ``more: true`` asks for another call."""

MARKET_RELEASE_PAGE_COUNT: Final[int] = 400
"""Expired admissions ``pack391_syncMarkets`` releases per page (one transaction each)."""

MARKET_UID_MAX_CHARS: Final[int] = 128
"""Longest Firebase Auth uid (Firebase's own limit); longer ids are not users."""


# --------------------------------------------------------------------------
# Keys that match who is really there (issue 21)
# --------------------------------------------------------------------------

ADDRESS_QUOTA_BASE_USERS: Final[int] = 20
"""An address's own bucket holds this many users' limits even with no established user
seen behind it: signed-in traffic is limited per user; the address bucket only stops one
address from sending more than a crowd would."""

ADDRESS_QUOTA_MAX_USERS: Final[int] = 2000
"""...and at most this many users' limits, however many established users it has (a
carrier NAT puts hundreds of subscribers behind one IPv4 address)."""

PREAUTH_PER_MIN: Final[int] = 60
"""Requests per minute one address may send without a valid ID token (no token, a bad
one, the wrong role) to one function instance: checked in process at the front door,
before the token is verified, with no Redis round trip."""

PREAUTH_FLEET_PER_MIN: Final[int] = 120
"""...and across every instance in a minute: the backstop read back from Redis with the
counters' own flush (about once a second), so a fleet of 100 instances does not give one
address 100 buckets."""

PREAUTH_MAX_TRACKED_COUNT: Final[int] = 50_000
"""Most addresses one instance keeps a pre-auth bucket for; beyond it, full (expired)
buckets are dropped first, then the oldest."""

ANON_REFUSE_SEC: Final[int] = 60 * 60
"""How long an address whose block is held (shared, or over the blast-radius cap) stays
refused for traffic without a valid token: the narrow action that hurts no signed-in
user."""

BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS: Final[int] = 5
"""Distinct accounts with a server-observed failure from one address within the window
that block the address (the credential-stuffing signature); a client's own reports never
feed the address."""

BRUTE_FORCE_ADDRESS_OFFENCE_MEMORY_SEC: Final[int] = 7 * 24 * 60 * 60
"""How long an address's brute-force offences are remembered for escalation: shorter than
a user's, since a /64 or a carrier address changes hands."""

REDIS_MEMORY_ALERT_PCT: Final[float] = 80.0
"""The DDoS detector alerts (every minute) when a Redis of traffic protection is at this
share of its ``maxmemory`` or more."""

ANON_LOCKDOWN_SEC: Final[int] = 15 * 60
"""How long a lockdown lasts (every request without a valid token refused at the front
door): the answer to every global signal, extended while it goes on. No callable of this
bundle serves a caller without a token, and the Firebase SDKs refresh ID tokens before
they expire, so legitimate traffic without one is a rounding error."""

DDOS_TOKENLESS_SHARE_PCT: Final[float] = 50.0
"""A global signal whose minute carried at least this share of requests without a valid
token is a token-less attack: the lockdown alone answers it, and the limits of signed-in
users stay as they are (no DDoS mode)."""

DDOS_SHARED_PER_USER_PER_MIN: Final[float] = 60.0
"""A shared address whose rate is at most this per established user behind it is
explained by its users (a busy carrier NAT): no action, no alert."""

DDOS_MIN_BASELINE_MINUTES: Final[int] = 3
"""Minutes of history the detector needs before DDoS mode may come on by itself: before
that, the usual traffic (and so the mode's blast radius) is unknown, and a launch's
first busy minutes look like a spike; the mode is held for a human (the lockdown of
token-less traffic, which costs no signed-in user anything, still applies)."""

DDOS_BOT_SCORE_LOW_SHARE_PCT: Final[float] = 50.0
"""A minute where at least this share of requests carried a proven Cloudflare bot score
under 30 is a bot swarm (critical in a traffic spike): Cloudflare's verdict, counted only
through your own zone (``PACK391_CLOUDFLARE_ORIGIN_SECRET``)."""
