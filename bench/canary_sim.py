"""Canary simulation: deployments replayed minute by minute through the deploy guard's
state machine (:func:`functions.deploy_guard.policy.phases.on_check`), once with its judge
(:func:`~functions.deploy_guard.policy.judge.judge`) and once, in the same run on the same
traffic, with the spec's literal rule (roll back on one sample over a threshold).

    ./venv/bin/python -m bench.canary_sim            # the table in docs/benchmarks.md
    ./venv/bin/python -m bench.canary_sim --json     # the same figures as JSON

Traffic model, per minute, for a service at ``TOTAL_RPM`` requests a minute split between
stable and canary by the current step: request counts are Poisson; errors are Poisson
around 0.5 % (binomial draws); the observed p95 is the true p95 times a log-normal jitter
whose spread grows as the revision's requests shrink (``0.03 + 0.6/sqrt(n)``); business
events (payouts 20/min, token writes 100/min, auth attempts 60/min at 100 %) are Poisson
with base bad rates of 0.2 %, 0.1 % and 0.5 %. Steps 5 → 25 → 100 %, 5 min bake, 500
canary requests per step (the defaults).

Scenarios: ``healthy`` (1,000 runs), ``error_spike_at_25`` (15 % errors from the first
minute at 25 %), ``latency_creep`` (canary p95 +6 % a minute from the start),
``low_traffic`` (150 rpm: 7 canary requests a minute at 5 %; healthy and with 15 % errors).

Detection time is measured from the end of the first minute whose data shows the
anomaly (a canary rate over its threshold, or observed canary p95 over 1.5x stable) to
the rollback decision, taken by the monitor at the end of a minute: 0 s means the
rollback came from the very minute that first showed it.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from functions.deploy_guard.policy import judge as judge_policy
from functions.deploy_guard.policy.phases import on_check
from shared import thresholds as t
from shared.models.deploy import (
    Analysis,
    DeploymentDoc,
    MetricCheck,
    Phase,
    RevisionWindow,
    ServiceTarget,
    Verdict,
)

START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TOTAL_RPM = 2000
BASE_P95_MS = 200.0
MAX_MINUTES = 60
HEALTHY_RUNS = 1000
FAULT_RUNS = 200

Judge = Callable[[RevisionWindow, RevisionWindow, float | None], tuple[Verdict, list[MetricCheck]]]


def literal_judge(
    canary: RevisionWindow, stable: RevisionWindow, baseline: float | None
) -> tuple[Verdict, list[MetricCheck]]:
    """The spec read literally: roll back when one minute's canary number is over a
    threshold (rates over their limit, p95 over 1.5x stable); never inconclusive."""
    over = [
        rule.metric for rule in judge_policy.RATE_RULES if _pct(canary, rule) > rule.threshold_pct
    ]
    reference = stable.p95_latency_ms or baseline
    if canary.p95_latency_ms and reference and canary.p95_latency_ms > 1.5 * reference:
        over.append("p95_latency_ms")
    checks = [
        MetricCheck(metric=m, canary=None, stable=None, threshold=0.0, verdict=Verdict.BREACH)
        for m in over
    ]
    return (Verdict.BREACH if over else Verdict.PASS), checks


def guard_judge(
    canary: RevisionWindow, stable: RevisionWindow, baseline: float | None
) -> tuple[Verdict, list[MetricCheck]]:
    return judge_policy.judge(canary, stable, baseline)


def _pct(w: RevisionWindow, rule: judge_policy.RateRule) -> float:
    total = int(getattr(w, rule.total))
    return 100.0 * int(getattr(w, rule.bad)) / total if total else 0.0


@dataclass(frozen=True)
class Fault:
    error_pct: float = 0.5
    p95_factor: float = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    runs: int
    total_rpm: int = TOTAL_RPM
    fault: Callable[[int, int], Fault] = lambda _minute, _pct: Fault()
    """(minute since start, canary percent) -> the canary's true behaviour."""
    shows: Callable[[RevisionWindow, RevisionWindow, float | None], bool] | None = None
    """When the injected fault shows in a minute's data (None: a healthy scenario)."""

    @property
    def bad(self) -> bool:
        return self.shows is not None


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _binomial(rng: random.Random, n: int, pct: float) -> int:
    return _poisson(rng, n * pct / 100) if n else 0


def _window(rng: random.Random, share: float, total: int, fault: Fault) -> RevisionWindow:
    n = _poisson(rng, total * share)
    jitter = rng.lognormvariate(0, 0.03 + 0.6 / math.sqrt(max(n, 1)))
    payouts = _poisson(rng, 20 * share)
    writes = _poisson(rng, 100 * share)
    auths = _poisson(rng, 60 * share)
    return RevisionWindow(
        requests=n,
        errors=min(n, _binomial(rng, n, fault.error_pct)),
        p95_latency_ms=BASE_P95_MS * fault.p95_factor * jitter if n else None,
        payouts=payouts,
        payout_anomalies=min(payouts, _binomial(rng, payouts, 0.2)),
        token_writes=writes,
        token_mismatches=min(writes, _binomial(rng, writes, 0.1)),
        auth_attempts=auths,
        auth_failures=min(auths, _binomial(rng, auths, 0.5)),
    )


def errors_show(canary: RevisionWindow, _stable: RevisionWindow, _baseline: float | None) -> bool:
    """The injected error fault shows: the canary's error rate is over its threshold."""
    return (
        canary.requests > 0
        and 100 * canary.errors / canary.requests > t.CANARY_ROLLBACK_ERROR_RATE_PCT
    )


def latency_shows(canary: RevisionWindow, stable: RevisionWindow, baseline: float | None) -> bool:
    """The injected latency fault shows: observed canary p95 over 1.5x stable's."""
    reference = stable.p95_latency_ms or baseline
    ratio = 1 + t.CANARY_ROLLBACK_LATENCY_INCREASE_PCT / 100
    return bool(canary.p95_latency_ms and reference and canary.p95_latency_ms > ratio * reference)


@dataclass
class Outcome:
    phase: Phase
    minutes: int
    detection_sec: float | None = None
    """Seconds from the end of the first minute showing the fault to the rollback."""


def _deployment() -> DeploymentDoc:
    return DeploymentDoc(
        deployment_id="sim",
        version="v2",
        environment="sim",
        phase=Phase.PROGRESSING,
        step=0,
        steps_pct=list(t.CANARY_STEPS_PCT),
        traffic_percent=t.CANARY_STEPS_PCT[0],
        applied_percent=t.CANARY_STEPS_PCT[0],
        services=[
            ServiceTarget(service="api", region="r", stable_revision="a", canary_revision="b")
        ],
        bake_sec=t.CANARY_BAKE_SEC,
        min_requests_per_step=t.CANARY_MIN_REQUESTS_PER_STEP,
        step_started_at=START,
        created_by="sim",
        created_at=START,
        updated_at=START,
    )


def simulate(scenario: Scenario, judge: Judge, seed: int) -> Outcome:
    rng = random.Random(seed)
    dep = _deployment()
    first_shown: datetime | None = None
    for minute in range(MAX_MINUTES):
        window_start = START + timedelta(minutes=minute)
        now = window_start + timedelta(seconds=t.CANARY_CHECK_INTERVAL_SEC)
        pct = dep.traffic_percent
        fault = scenario.fault(minute, pct)
        canary = _window(rng, pct / 100, scenario.total_rpm, fault)
        stable = _window(rng, 1 - pct / 100, scenario.total_rpm, Fault())
        shown = scenario.shows and scenario.shows(canary, stable, dep.baseline_p95_ms)
        if shown and first_shown is None:
            first_shown = now
        verdict, checks = judge(canary, stable, dep.baseline_p95_ms)
        analysis = Analysis(
            at=now,
            window_start=window_start,
            step=dep.step,
            traffic_percent=pct,
            verdict=verdict,
            checks=checks,
            canary=canary,
            stable=stable,
        )
        dep = on_check(dep, analysis, now)
        if dep.phase == Phase.ROLLING_BACK:
            detection = (now - first_shown).total_seconds() if first_shown else None
            return Outcome(Phase.ROLLED_BACK, minute + 1, detection)
        if dep.phase in (Phase.SUCCEEDED, Phase.PAUSED):
            return Outcome(dep.phase, minute + 1)
    return Outcome(dep.phase, MAX_MINUTES)


def _spike_at_25(_minute: int, pct: int) -> Fault:
    return Fault(error_pct=15.0) if pct == 25 else Fault()


def _creep(minute: int, _pct: int) -> Fault:
    return Fault(p95_factor=1.06**minute)


def _always_bad(_minute: int, _pct: int) -> Fault:
    return Fault(error_pct=15.0)


SCENARIOS = (
    Scenario("healthy", HEALTHY_RUNS),
    Scenario("error_spike_at_25", FAULT_RUNS, fault=_spike_at_25, shows=errors_show),
    Scenario("latency_creep", FAULT_RUNS, fault=_creep, shows=latency_shows),
    Scenario("low_traffic", FAULT_RUNS, total_rpm=150),
    Scenario("low_traffic_bad", FAULT_RUNS, total_rpm=150, fault=_always_bad, shows=errors_show),
)

JUDGES: dict[str, Judge] = {"pack391": guard_judge, "literal": literal_judge}


@dataclass
class Figures:
    runs: int
    rolled_back: int
    promoted: int
    paused: int
    other: int
    detection_sec_max: float | None
    detection_sec_mean: float | None
    minutes_mean: float
    undetected_shown: int = 0
    """Rollbacks of a bad canary that came before the data showed the fault (None)."""
    outcomes: list[str] = field(default_factory=list, repr=False)

    @property
    def rollback_pct(self) -> float:
        return 100.0 * self.rolled_back / self.runs


def run(
    healthy_runs: int = HEALTHY_RUNS, fault_runs: int = FAULT_RUNS
) -> dict[str, dict[str, Figures]]:
    results: dict[str, dict[str, Figures]] = {}
    for judge_name, judge in JUDGES.items():
        results[judge_name] = {}
        for scenario in SCENARIOS:
            n = healthy_runs if scenario.runs == HEALTHY_RUNS else fault_runs
            outcomes = [simulate(scenario, judge, seed) for seed in range(n)]
            detections = [o.detection_sec for o in outcomes if o.detection_sec is not None]
            count = {p: sum(o.phase == p for o in outcomes) for p in Phase}
            results[judge_name][scenario.name] = Figures(
                runs=n,
                rolled_back=count[Phase.ROLLED_BACK],
                promoted=count[Phase.SUCCEEDED],
                paused=count[Phase.PAUSED],
                other=n - count[Phase.ROLLED_BACK] - count[Phase.SUCCEEDED] - count[Phase.PAUSED],
                detection_sec_max=max(detections) if detections else None,
                detection_sec_mean=sum(detections) / len(detections) if detections else None,
                minutes_mean=sum(o.minutes for o in outcomes) / n,
                undetected_shown=sum(
                    o.phase == Phase.ROLLED_BACK and o.detection_sec is None for o in outcomes
                )
                if scenario.bad
                else 0,
            )
    return results


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    results = run()
    if args.json:
        print(json.dumps({j: {s: asdict(f) for s, f in r.items()} for j, r in results.items()}))
        return
    print(
        f"{'scenario':<20} {'judge':<8} {'runs':>5} {'rolled back':>12} {'promoted':>9} "
        f"{'paused':>7} {'detect max s':>13} {'detect mean s':>14} {'minutes':>8}"
    )
    for scenario in SCENARIOS:
        for judge_name in JUDGES:
            f = results[judge_name][scenario.name]
            print(
                f"{scenario.name:<20} {judge_name:<8} {f.runs:>5} "
                f"{f.rolled_back:>5} ({f.rollback_pct:4.1f}%) {f.promoted:>9} {f.paused:>7} "
                f"{_fmt(f.detection_sec_max):>13} {_fmt(f.detection_sec_mean):>14} "
                f"{f.minutes_mean:>8.1f}"
            )
    ours, literal = results["pack391"]["healthy"], results["literal"]["healthy"]
    print(
        f"\nfalse rollbacks over {ours.runs} healthy runs: pack391 {ours.rollback_pct:.1f}%, "
        f"literal {literal.rollback_pct:.1f}%"
    )
    bad = [s.name for s in SCENARIOS if s.bad]
    promotions = {j: sum(results[j][s].promoted for s in bad) for j in JUDGES}
    print(f"bad canaries promoted: {promotions}")


if __name__ == "__main__":
    main()
