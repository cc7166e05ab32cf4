"""The six scenarios of the spec: request mixes, payload generators and load shapes.

Everything here is data and pure functions (no I/O): a :class:`Plan` is what one run
executes, built from a scenario id and the caller's overrides. Every request carries
the run id (header ``X-Pack391-Load-Run`` and the payload's ``loadRunId``), so the
sandbox tags what it writes and cleanup removes exactly that.
"""

from __future__ import annotations

import enum
import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from functions.load.profile import RecordedProfile, recorded_starts
from shared import thresholds as t

RUN_HEADER = "X-Pack391-Load-Run"
"""The header naming the run on every generated request."""


class ScenarioType(enum.StrEnum):
    """The spec's test types; each has its load shape."""

    LOAD = "load"
    """Ramp up, hold, ramp down."""
    STRESS = "stress"
    """Equal steps up to the peak (find where it breaks)."""
    ENDURANCE = "endurance"
    """Constant rate for a long time."""
    SPIKE = "spike"
    """A base rate with a sudden jump to the peak in the middle."""
    SCALABILITY = "scalability"
    """Steps up to the peak (watch the scaler follow)."""
    RECORDED = "recorded"
    """Production-shaped: the recorded per-minute rates and mixes of a past window
    (``--from-metrics``, :mod:`functions.load.recorded`)."""


class Shape(enum.StrEnum):
    CONSTANT = "constant"
    RAMP = "ramp"
    STEP = "step"
    SPIKE = "spike"
    RECORDED = "recorded"
    """A :class:`functions.load.profile.RecordedProfile`'s per-minute rates (the plan
    carries the profile)."""


SHAPE_OF_TYPE: dict[ScenarioType, Shape] = {
    ScenarioType.LOAD: Shape.RAMP,
    ScenarioType.STRESS: Shape.STEP,
    ScenarioType.ENDURANCE: Shape.CONSTANT,
    ScenarioType.SPIKE: Shape.SPIKE,
    ScenarioType.SCALABILITY: Shape.STEP,
    ScenarioType.RECORDED: Shape.RECORDED,
}


def rate_share(shape: Shape, offset_sec: float, duration_sec: float) -> float:
    """The share of the peak rate wanted ``offset_sec`` into a run of ``duration_sec``.
    A recorded shape has no formula: its rate is its profile's (:func:`plan_starts`)."""
    if shape is Shape.RECORDED:
        raise ValueError("a recorded plan's rate is its profile's (RecordedProfile.rate_at)")
    if offset_sec < 0 or offset_sec >= duration_sec:
        return 0.0
    x = offset_sec / duration_sec
    if shape is Shape.CONSTANT:
        return 1.0
    if shape is Shape.RAMP:
        ramp = t.LOAD_TEST_RAMP_SHARE
        if x < ramp:
            return max(x / ramp, 0.05)
        if x > 1 - ramp:
            return max((1 - x) / ramp, 0.05)
        return 1.0
    if shape is Shape.STEP:
        levels = t.LOAD_TEST_STEP_LEVELS
        return levels[min(int(x * len(levels)), len(levels) - 1)]
    start, end = t.LOAD_TEST_SPIKE_WINDOW
    return 1.0 if start <= x < end else t.LOAD_TEST_SPIKE_BASE_SHARE


def arrival_offsets(
    shape: Shape,
    peak_rps: float,
    duration_sec: float,
    shard: int = 0,
    shards: int = 1,
    step_sec: float = 0.001,
) -> Iterator[tuple[int, float]]:
    """Scheduled starts as ``(index, offset_sec)``: the ``k``-th start of the whole run
    falls where the integral of the rate reaches ``k``; shard ``s`` of ``n`` takes the
    starts with ``k % n == s``, so shards split the run's schedule exactly."""
    index = 0
    cumulative = 0.0
    steps = math.ceil(duration_sec / step_sec)
    for i in range(steps):
        now = i * step_sec
        rate = peak_rps * rate_share(shape, now, duration_sec)
        after = cumulative + rate * step_sec
        while index < after - 1e-9:
            offset = round(now + (index - cumulative) / rate, 9) if rate > 0 else now
            if offset >= duration_sec:
                return
            if index % shards == shard:
                yield index, offset
            index += 1
        cumulative = after


def expected_requests(shape: Shape, peak_rps: float, duration_sec: float) -> int:
    """How many starts the whole run schedules."""
    return sum(1 for _ in arrival_offsets(shape, peak_rps, duration_sec))


# ----------------------------------------------------------------- requests

Payload = Callable[[random.Random, str, int], dict[str, Any]]
"""``(rng, run_id, index) -> JSON body`` of one request."""


def _uid(rng: random.Random, run_id: str, users: int) -> str:
    return f"load-{run_id}-u{rng.randrange(users)}"


def _swipe(rng: random.Random, run_id: str, index: int) -> dict[str, Any]:
    return {
        "uid": _uid(rng, run_id, 100_000),
        "targetUid": f"load-{run_id}-p{rng.randrange(1_000_000)}",
        "direction": rng.choice(("left", "right", "right", "super")),
    }


def _feed(rng: random.Random, run_id: str, index: int) -> dict[str, Any]:
    return {"uid": _uid(rng, run_id, 100_000), "limit": rng.choice((10, 20, 30))}


def _chat(rng: random.Random, run_id: str, index: int) -> dict[str, Any]:
    words = ("hi", "hello", "how", "are", "you", "today")
    return {
        "uid": _uid(rng, run_id, 25_000),
        "chatId": f"load-{run_id}-c{rng.randrange(25_000)}",
        "text": " ".join(rng.choice(words) for _ in range(rng.randint(3, 40))),
        "tokens": rng.choice((1, 2, 5)),
    }


def _wallet(rng: random.Random, run_id: str, index: int) -> dict[str, Any]:
    return {"uid": _uid(rng, run_id, 25_000)}


def _payout(rng: random.Random, run_id: str, index: int) -> dict[str, Any]:
    return {
        "uid": _uid(rng, run_id, 5_000),
        "amountTokens": rng.randint(100, 50_000),
        "method": rng.choice(("bank", "paypal", "crypto")),
    }


def _call(rng: random.Random, run_id: str, index: int) -> dict[str, Any]:
    return {
        "uid": _uid(rng, run_id, 4_000),
        "callId": f"load-{run_id}-call{rng.randrange(2_000)}",
        "video": rng.random() < 0.4,
    }


def _purchase(rng: random.Random, run_id: str, index: int) -> dict[str, Any]:
    return {
        "uid": _uid(rng, run_id, 50_000),
        "eventId": f"load-{run_id}-e{rng.randrange(20)}",
        "quantity": rng.choice((1, 1, 1, 2, 4)),
    }


def _ai(rng: random.Random, run_id: str, index: int) -> dict[str, Any]:
    return {
        "uid": _uid(rng, run_id, 50_000),
        "companionId": f"companion-{rng.randrange(50)}",
        "text": "tell me something nice " * rng.randint(1, 8),
    }


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of the app a scenario hits: its path under the target base URL."""

    name: str
    method: str
    path: str
    payload: Payload


ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint("swipe", "POST", "/swipe", _swipe),
        Endpoint("discovery_feed", "POST", "/discovery/feed", _feed),
        Endpoint("chat_message", "POST", "/chat/message", _chat),
        Endpoint("wallet_balance", "POST", "/wallet/balance", _wallet),
        Endpoint("payout_request", "POST", "/payout/request", _payout),
        Endpoint("call_start", "POST", "/call/start", _call),
        Endpoint("call_heartbeat", "POST", "/call/heartbeat", _call),
        Endpoint("event_purchase", "POST", "/event/purchase", _purchase),
        Endpoint("ai_message", "POST", "/ai/message", _ai),
    )
}
"""Every endpoint the scenarios use (the sandbox serves each path)."""

MIXES: dict[str, tuple[tuple[str, float], ...]] = {
    "swipe_load": (("swipe", 0.9), ("discovery_feed", 0.1)),
    "chat_monetization": (("chat_message", 0.85), ("wallet_balance", 0.15)),
    "payout_surge": (("payout_request", 0.9), ("wallet_balance", 0.1)),
    "live_calls": (("call_heartbeat", 0.85), ("call_start", 0.15)),
    "event_purchase_spike": (("event_purchase", 1.0),),
    "ai_companion_messages": (("ai_message", 0.95), ("wallet_balance", 0.05)),
}
"""Each scenario's request mix: endpoint -> share of its requests."""


def pick_endpoint(mix: tuple[tuple[str, float], ...], index: int) -> str:
    """The endpoint of start ``index``: a low-discrepancy walk over the mix, so every
    shard and every second gets the mix's shares, not just on average."""
    x = (index * 0.6180339887498949) % 1.0
    total = 0.0
    for name, share in mix:
        total += share
        if x < total:
            return name
    return mix[-1][0]


# ----------------------------------------------------------------- plans


@dataclass(frozen=True)
class Thresholds:
    avg_ms: float = t.LOAD_TEST_AVG_LATENCY_MS
    p95_ms: float = t.LOAD_TEST_P95_LATENCY_MS
    p99_ms: float = t.LOAD_TEST_P99_LATENCY_MS
    error_rate_pct: float = t.LOAD_TEST_ERROR_RATE_PCT
    dropped_pct: float = t.LOAD_TEST_DROPPED_PCT


@dataclass(frozen=True)
class Plan:
    """What one run executes (a scenario with its overrides applied)."""

    scenario_id: str
    type: ScenarioType
    shape: Shape
    rps: float
    duration_sec: int
    target: str
    shards: int
    mix: tuple[tuple[str, float], ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    timeout_sec: float = t.LOAD_TEST_REQUEST_TIMEOUT_SEC
    max_in_flight: int = t.LOAD_TEST_MAX_IN_FLIGHT_PER_SHARD
    abort_on_fail: bool = False
    profile: RecordedProfile | None = None
    """The recorded minutes a ``recorded`` plan plays (None for the other shapes)."""

    def __post_init__(self) -> None:
        if (self.shape is Shape.RECORDED) != (self.profile is not None):
            raise ValueError("a plan has a profile exactly when its shape is recorded")

    def to_json(self) -> dict[str, Any]:
        profile = {} if self.profile is None else {"profile": self.profile.to_json()}
        return profile | {
            "scenarioId": self.scenario_id,
            "type": self.type.value,
            "shape": self.shape.value,
            "rps": self.rps,
            "durationSec": self.duration_sec,
            "target": self.target,
            "shards": self.shards,
            "mix": [{"endpoint": name, "share": share} for name, share in self.mix],
            "thresholds": {
                "avgMs": self.thresholds.avg_ms,
                "p95Ms": self.thresholds.p95_ms,
                "p99Ms": self.thresholds.p99_ms,
                "errorRatePct": self.thresholds.error_rate_pct,
                "droppedPct": self.thresholds.dropped_pct,
            },
            "timeoutSec": self.timeout_sec,
            "maxInFlight": self.max_in_flight,
            "abortOnFail": self.abort_on_fail,
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Plan:
        th = raw["thresholds"]
        return Plan(
            scenario_id=raw["scenarioId"],
            type=ScenarioType(raw["type"]),
            shape=Shape(raw["shape"]),
            rps=float(raw["rps"]),
            duration_sec=int(raw["durationSec"]),
            target=raw["target"],
            shards=int(raw["shards"]),
            mix=tuple((str(m["endpoint"]), float(m["share"])) for m in raw["mix"]),
            thresholds=Thresholds(
                th["avgMs"], th["p95Ms"], th["p99Ms"], th["errorRatePct"], th["droppedPct"]
            ),
            timeout_sec=float(raw["timeoutSec"]),
            max_in_flight=int(raw["maxInFlight"]),
            abort_on_fail=bool(raw["abortOnFail"]),
            profile=RecordedProfile.from_json(raw["profile"]) if raw.get("profile") else None,
        )


def plan_starts(plan: Plan, shard: int = 0) -> Iterator[tuple[int, float, str]]:
    """Shard ``shard``'s starts as ``(index, offset_sec, endpoint)``: the shape's
    arrival schedule and the mix's walk, or a recorded plan's profile."""
    if plan.profile is not None:
        return recorded_starts(plan.profile, shard, plan.shards)
    mix = plan.mix
    return (
        (index, offset, pick_endpoint(mix, index))
        for index, offset in arrival_offsets(
            plan.shape, plan.rps, plan.duration_sec, shard, plan.shards
        )
    )


def shards_for(rps: float) -> int:
    """How many shards a peak rate needs (see ``LOAD_TEST_SHARD_MAX_RPS``)."""
    return max(1, math.ceil(rps / t.LOAD_TEST_SHARD_MAX_RPS))


def build_plan(
    scenario_id: str,
    target: str,
    *,
    rps: float | None = None,
    duration_sec: int | None = None,
    shards: int | None = None,
    thresholds: dict[str, float] | None = None,
    timeout_sec: float | None = None,
    max_in_flight: int | None = None,
    abort_on_fail: bool | None = None,
) -> Plan:
    """The scenario's spec values with any of them overridden."""
    base_rps, base_duration, kind = t.LOAD_TEST_SCENARIOS[scenario_id]
    scenario_type = ScenarioType(kind)
    peak = rps if rps is not None else base_rps
    th = Thresholds()
    if thresholds:
        th = replace(th, **thresholds)
    return Plan(
        scenario_id=scenario_id,
        type=scenario_type,
        shape=SHAPE_OF_TYPE[scenario_type],
        rps=peak,
        duration_sec=duration_sec if duration_sec is not None else base_duration,
        target=target.rstrip("/"),
        shards=shards if shards is not None else shards_for(peak),
        mix=MIXES[scenario_id],
        thresholds=th,
        timeout_sec=timeout_sec if timeout_sec is not None else t.LOAD_TEST_REQUEST_TIMEOUT_SEC,
        max_in_flight=(
            max_in_flight if max_in_flight is not None else t.LOAD_TEST_MAX_IN_FLIGHT_PER_SHARD
        ),
        abort_on_fail=bool(abort_on_fail),
    )


def new_run_id(now: datetime) -> str:
    """A run's id: its start time, then 8 random hex digits (sorts by time)."""
    return f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"
