"""The chaos run's settings: which faults, in which order, each in a market of its own,
and the load and budgets of one scenario."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stack.chaos.faults import CLUSTER_FAULTS, FAULTS

SOURCE_DIR = Path(__file__).resolve().parents[2]
DEFAULT_OUT = SOURCE_DIR / ".local" / "chaos"

ALL_FAULTS = tuple(f for f in FAULTS if f not in CLUSTER_FAULTS)
"""The faults of :data:`stack.chaos.faults.FAULT_TABLE`, in the order ``make chaos`` runs them,
but the cluster-only ones (:data:`stack.chaos.faults.CLUSTER_FAULTS`: ``make chaos`` runs
against one Redis behind its latency proxy)."""

COUNTRIES = {
    "redis-kill": "PL",
    "redis-pause": "DE",
    "redis-slow": "FR",
    "firestore-pause": "ES",
    "functions-kill": "IT",
    "sandbox-errors": "PT",
    "cloudrun-slow": "NL",
}
"""One soft-launch market per fault, so each scenario's admissions are its own."""

CLOUD_RUN_FAULTS = ("cloudrun-slow",)
"""Faults of the Cloud Run stand-in: their scenario also calls ``pack391_manualScale``
(once while the fault is on, once after), whose instance change goes through it."""
SCALED_SERVICE = "notification-service"
"""The service those manual scales scale up by 0 (no change of capacity, and the load does
not reach it: what is tested is the call's answer time)."""

RATE_CLASSES = ("auth", "wallet", "payment", "swipe", "general")
JOBS = ("pack391_scaleGuard", "pack391_monitorDeployment", "pack391_updateLiveMetrics")
SYNC_JOB = "pack391_syncMarkets"

RECOVERY_BUDGET_SEC = {"functions-kill": 30.0}
"""Seconds after the undo within which rate-limit decisions must be normal again; the
default (:attr:`ChaosConfig.recovery_budget_sec`) for the Redis faults. A killed
functions server is restarted by the supervisor and re-imports every function."""


@dataclass(frozen=True)
class ChaosConfig:
    faults: tuple[str, ...] = ALL_FAULTS
    before_sec: float = 3.0
    during_sec: float = 8.0
    after_sec: float = 12.0
    swipe_rps: float = 100.0
    """Open-model swipe_load rate against the sandbox (what this 2-core box holds with
    every child running: docs/chaos.md)."""
    ratelimit_rps: float = 5.0
    """checkRateLimit calls per second, round-robin over :data:`RATE_CLASSES` (kept
    under the single-source flood threshold, 600/min from one address, with the rest)."""
    wallet_rps: float = 1.0
    signup_rps: float = 2.0
    traffic_limit: int = 10
    """Places of each fault's market beyond those it already had."""
    request_timeout_sec: float = 20.0
    swipe_timeout_sec: float = 10.0
    swipe_max_in_flight: int = 256
    recovery_budget_sec: float = 10.0
    latency_budget_ms: float = 500.0
    """p99 of checkRateLimit while Firestore is stalled: a decision is one Redis round
    trip, geo rules are cached in memory (30 s) and refreshed without blocking past
    ``PACK391_REDIS_TIMEOUT_MS``, so Firestore is not on its path."""
    fault_options: dict[str, dict[str, float]] = field(default_factory=dict)
    out_dir: Path = DEFAULT_OUT
