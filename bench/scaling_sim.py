"""Scaling simulation: synthetic traffic traces through the scaling policy and a capacity
model of one service, minute by minute, compared in the same run with the spec's literal
rules applied naively.

    ./venv/bin/python -m bench.scaling_sim            # the table in docs/benchmarks.md
    ./venv/bin/python -m bench.scaling_sim --json     # the same figures as JSON

The capacity model: an instance serves ``CAPACITY_RPM`` requests a minute at 100% CPU;
utilisation ``rho = load / (instances * CAPACITY_RPM)``; CPU is ``100 * min(rho, 1)``
(with noise on the noisy trace); p95 latency is ``BASE_MS / (1 - min(rho, 0.95))`` (an
M/M/1-like curve: 343 ms at 65%, 2.4 s saturated). A decision taken with minute k's
metrics sets the instances of minute k+1. The ideal is ``ceil(load / (0.65 *
CAPACITY_RPM))`` instances (the CPU target); capacity covers the load when
``instances * CAPACITY_RPM >= load``.

Policies:
- ``naive``: the spec's rules literally, +1 instance in every minute a trigger (CPU > 65%
  or p95 > 400 ms) fires, -1 otherwise; a missing metric counts as not firing.
- ``pack391``: :func:`functions.scaling.policy.decide` on CPU and latency only (the
  registry's default).
- ``pack391+rps``: the same with the request-rate metric (``requestsPerInstancePerMin``
  set in the registry), which sees demand beyond a saturated CPU.
- ``pack391, one step per minute``: the default with the +100%/+4 limit applied once
  per one-minute run instead of once per 15 s HPA period (the spec's rule read per run).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from functions.scaling.policy import DEFAULT_POLICY, PolicyConfig, decide, state_after
from shared.models.scaling import MetricsSnapshot, ServiceConfig, ServiceState

CAPACITY_RPM = 600.0
BASE_MS = 120.0
MINUTES = 120
MIN_INSTANCES, MAX_INSTANCES = 2, 100
SPIKE_AT = 20
OUTAGE = range(40, 60)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------ traces


def _noise(seed: int, pct: float) -> Callable[[], float]:
    rng = random.Random(seed)
    return lambda: 1.0 + rng.uniform(-pct, pct) / 100


def steady() -> list[float]:
    n = _noise(1, 3)
    return [1800.0 * n() for _ in range(MINUTES)]


def spike() -> list[float]:
    return [1800.0 if k < SPIKE_AT or k >= SPIKE_AT + 40 else 18000.0 for k in range(MINUTES)]


def ramp() -> list[float]:
    return [1800.0 + (9000.0 - 1800.0) * min(k, 90) / 90 for k in range(MINUTES)]


def oscillation() -> list[float]:
    n = _noise(2, 5)
    return [(4000.0 + 1500.0 * math.sin(2 * math.pi * k / 6)) * n() for k in range(MINUTES)]


def outage() -> list[float]:
    return [1800.0 + 4200.0 * min(k, 30) / 30 for k in range(MINUTES)]


TRACES: dict[str, Callable[[], list[float]]] = {
    "steady": steady,
    "spike_10x": spike,
    "slow_ramp": ramp,
    "noisy_oscillation": oscillation,
    "metrics_outage": outage,
}


# ----------------------------------------------------------- capacity model


def ideal(load: float) -> int:
    return max(MIN_INSTANCES, math.ceil(load / (CAPACITY_RPM * 0.65)))


def observe(
    trace: str, k: int, load: float, instances: int, jitter: float
) -> MetricsSnapshot | None:
    if trace == "metrics_outage" and k in OUTAGE:
        return None
    rho = load / (max(instances, 1) * CAPACITY_RPM)
    cpu = min(100.0, 100.0 * min(rho, 1.0) * jitter)
    return MetricsSnapshot(
        at=T0 + timedelta(minutes=k),
        source="sim",
        cpu_pct=cpu,
        p95_latency_ms=BASE_MS / (1 - min(rho, 0.95)),
        error_rate_pct=0.0,
        requests_per_min=load,
    )


# -------------------------------------------------------------- policies

Step = Callable[[int, MetricsSnapshot | None, datetime], int]


def naive_policy(service: ServiceConfig) -> Callable[[], Step]:
    def make() -> Step:
        def step(current: int, snap: MetricsSnapshot | None, _now: datetime) -> int:
            fired = snap is not None and (
                (snap.cpu_pct or 0) > DEFAULT_POLICY.cpu_target_pct
                or (snap.p95_latency_ms or 0) > DEFAULT_POLICY.latency_target_ms
            )
            target = current + 1 if fired else current - 1
            return max(service.min_instances, min(service.max_instances, target))

        return step

    return make


def pack391_policy(service: ServiceConfig, pc: PolicyConfig) -> Callable[[], Step]:
    def make() -> Step:
        state: list[ServiceState] = []

        def step(current: int, snap: MetricsSnapshot | None, now: datetime) -> int:
            st = (state[0] if state else ServiceState(current_instances=current)).model_copy(
                update={"current_instances": current}
            )
            d = decide(service, st, snap, now, pc)
            applied = d.desired_instances if d.changes_instances else None
            state[:] = [state_after(st, d, now, applied)]
            return d.desired_instances

        return step

    return make


def policies() -> dict[str, Callable[[], Step]]:
    base = ServiceConfig(
        service_id="sim",
        initial_instances=5,
        min_instances=MIN_INSTANCES,
        max_instances=MAX_INSTANCES,
        cloud_run_service="sim",
        region="sim",
    )
    rps = base.model_copy(update={"requests_per_instance_per_min": CAPACITY_RPM})
    per_minute = replace(DEFAULT_POLICY, up_steps_per_run=1)
    return {
        "naive": naive_policy(base),
        "pack391": pack391_policy(base, DEFAULT_POLICY),
        "pack391+rps": pack391_policy(rps, DEFAULT_POLICY),
        "pack391, one step per minute": pack391_policy(base, per_minute),
    }


# ----------------------------------------------------------------- run


@dataclass
class Figures:
    instance_minutes: int = 0
    ideal_minutes: int = 0
    over_minutes: int = 0
    under_capacity_minutes: int = 0
    direction_changes: int = 0
    scale_downs_in_outage: int = 0
    minutes_to_cover_spike: int | None = None

    @property
    def over_pct(self) -> float:
        return 100.0 * self.over_minutes / self.ideal_minutes

    @property
    def changes_per_hour(self) -> float:
        return self.direction_changes * 60 / MINUTES


def simulate(trace: str, make_step: Callable[[], Step]) -> Figures:
    loads = TRACES[trace]()
    jitter = _noise(3, 8 if trace == "noisy_oscillation" else 0)
    step = make_step()
    n = ideal(loads[0])
    fig = Figures()
    last_direction = 0
    detected: int | None = None
    for k, load in enumerate(loads):
        fig.instance_minutes += n
        fig.ideal_minutes += ideal(load)
        fig.over_minutes += max(0, n - ideal(load))
        covered = n * CAPACITY_RPM >= load
        fig.under_capacity_minutes += 0 if covered else 1
        if trace == "spike_10x" and k >= SPIKE_AT:
            if detected is None and not covered:
                detected = k
            if detected is not None and covered and fig.minutes_to_cover_spike is None:
                fig.minutes_to_cover_spike = k - detected
        snap = observe(trace, k, load, n, jitter())
        nxt = step(n, snap, T0 + timedelta(minutes=k + 1))
        direction = (nxt > n) - (nxt < n)
        if direction:
            if last_direction and direction != last_direction:
                fig.direction_changes += 1
            last_direction = direction
            if trace == "metrics_outage" and k in OUTAGE and direction < 0:
                fig.scale_downs_in_outage += 1
        n = nxt
    return fig


def run() -> dict[str, dict[str, Figures]]:
    return {
        name: {trace: simulate(trace, make) for trace in TRACES}
        for name, make in policies().items()
    }


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "never"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def report(results: dict[str, dict[str, Figures]]) -> str:
    lines = [
        "| policy | minutes to cover 10x spike | over-provisioning (all traces) | "
        "over-prov. oscillation | direction changes/h (oscillation) | max changes/h any trace "
        "| scale-downs in outage | minutes under capacity |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, by_trace in results.items():
        over = sum(f.over_minutes for f in by_trace.values())
        ideal_total = sum(f.ideal_minutes for f in by_trace.values())
        lines.append(
            f"| {name} | {_fmt(by_trace['spike_10x'].minutes_to_cover_spike)} "
            f"| {100 * over / ideal_total:.1f}% "
            f"| {by_trace['noisy_oscillation'].over_pct:.1f}% "
            f"| {by_trace['noisy_oscillation'].changes_per_hour:.1f} "
            f"| {max(f.changes_per_hour for f in by_trace.values()):.1f} "
            f"| {by_trace['metrics_outage'].scale_downs_in_outage} "
            f"| {sum(f.under_capacity_minutes for f in by_trace.values())} |"
        )
    lines.append("")
    lines.append("Per trace (over-provisioning %, direction changes/h, minutes under capacity):")
    lines.append("")
    lines.append("| policy | " + " | ".join(TRACES) + " |")
    lines.append("|---|" + "---|" * len(TRACES))
    for name, by_trace in results.items():
        cells = [
            f"{f.over_pct:.1f}% / {f.changes_per_hour:.1f} / {f.under_capacity_minutes}"
            for f in by_trace.values()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    naive = results["naive"]
    lines.append("")
    for name, by_trace in results.items():
        if name == "naive":
            continue
        flap = by_trace["noisy_oscillation"].direction_changes
        naive_flap = naive["noisy_oscillation"].direction_changes
        lines.append(
            f"- {name} vs naive: direction changes on the oscillation "
            f"{flap}/{naive_flap} = {flap / naive_flap:.2f}x; minutes under capacity "
            f"{sum(f.under_capacity_minutes for f in by_trace.values())}/"
            f"{sum(f.under_capacity_minutes for f in naive.values())}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    results = run()
    if args.json:
        print(
            json.dumps(
                {
                    p: {
                        t: {
                            **f.__dict__,
                            "over_pct": round(f.over_pct, 2),
                            "changes_per_hour": f.changes_per_hour,
                        }
                        for t, f in r.items()
                    }
                    for p, r in results.items()
                },
                indent=2,
            )
        )
    else:
        print(report(results))


if __name__ == "__main__":
    main()
