"""Load testing (``pack391-load``, :mod:`functions.load`): the spec's scenarios and pass
thresholds, the generator's pacing and sharding, the shapes and the histograms.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = [
    "LOAD_TEST_ABORT_POLL_SEC",
    "LOAD_TEST_AVG_LATENCY_MS",
    "LOAD_TEST_BREACH_SUSTAIN_SEC",
    "LOAD_TEST_DROPPED_PCT",
    "LOAD_TEST_DROP_AFTER_MS",
    "LOAD_TEST_ERROR_RATE_PCT",
    "LOAD_TEST_FROM_METRICS_MAX_SCALE",
    "LOAD_TEST_FROM_METRICS_MAX_WINDOW_MIN",
    "LOAD_TEST_FROM_METRICS_MINUTE_SEC",
    "LOAD_TEST_GLOBAL_RPS_CAP",
    "LOAD_TEST_HEATMAP_BUCKETS_MS",
    "LOAD_TEST_HISTOGRAM_MAX_US",
    "LOAD_TEST_HISTOGRAM_SIGNIFICANT_DIGITS",
    "LOAD_TEST_LATE_START_MS",
    "LOAD_TEST_MAX_DURATION_SEC",
    "LOAD_TEST_MAX_IN_FLIGHT_PER_SHARD",
    "LOAD_TEST_MAX_SHARDS",
    "LOAD_TEST_P95_LATENCY_MS",
    "LOAD_TEST_P99_LATENCY_MS",
    "LOAD_TEST_RAMP_SHARE",
    "LOAD_TEST_REAP_GRACE_SEC",
    "LOAD_TEST_REQUEST_TIMEOUT_SEC",
    "LOAD_TEST_RETENTION_DAYS",
    "LOAD_TEST_SCENARIOS",
    "LOAD_TEST_SHARD_MAX_RPS",
    "LOAD_TEST_SHED_PCT",
    "LOAD_TEST_SLICE_SEC",
    "LOAD_TEST_SPIKE_BASE_SHARE",
    "LOAD_TEST_SPIKE_WINDOW",
    "LOAD_TEST_STEP_LEVELS",
]

LOAD_TEST_AVG_LATENCY_MS: Final[float] = 200.0
"""Pass threshold: average latency."""

LOAD_TEST_P95_LATENCY_MS: Final[float] = 400.0
"""Pass threshold: p95 latency."""

LOAD_TEST_P99_LATENCY_MS: Final[float] = 800.0
"""Pass threshold: p99 latency."""

LOAD_TEST_ERROR_RATE_PCT: Final[float] = 1.0
"""Pass threshold: error rate."""

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
"""How often a shard checks for an abort (well inside the spec's 2 s to stop every worker:
``stack.constants.LOAD_TEST_ABORT_WITHIN_SEC``)."""

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

LOAD_TEST_SHED_PCT: Final[float] = 1.0
"""Pass threshold: share of requests shed by the target (503 with ``Retry-After``,
counted apart from errors)."""

LOAD_TEST_FROM_METRICS_MAX_WINDOW_MIN: Final[int] = 1440
"""Longest recorded window ``--from-metrics`` replays (24 hours of minutes). A window
must still play within ``LOAD_TEST_MAX_DURATION_SEC``: past 25 minutes, only
time-compressed (``minuteSec`` under 60)."""

LOAD_TEST_FROM_METRICS_MINUTE_SEC: Final[int] = 60
"""Seconds a recorded minute plays for by default (real time). ``minuteSec`` 1-59
compresses time (a rehearsal or a test): each minute keeps its rate for fewer seconds."""

LOAD_TEST_FROM_METRICS_MAX_SCALE: Final[float] = 100.0
"""Largest factor recorded rates may be multiplied by (the scaled peak must also fit
under ``LOAD_TEST_GLOBAL_RPS_CAP``)."""
