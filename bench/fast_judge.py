"""Rollback time with and without the fast judge, in the same run on the same
traffic: the minute monitor alone against the minute monitor plus the 10 s chain of
``pack391JudgeDeployment``, for a bad revision that starts serving its 5 % at a random
second of the minute (a deploy's canary is bad from its first request).

    ./venv/bin/python -m bench.fast_judge            # the table in docs/benchmarks.md
    ./venv/bin/python -m bench.fast_judge --json

Traffic, per 10 s slice, for a service at ``TOTAL_RPM`` requests a minute with the canary
at 5 % (the first step, where a bad deploy lands): canary and stable requests Poisson,
errors binomial (0.5 % healthy, ``BAD_ERROR_PCT`` for a bad canary), business events
Poisson as in :mod:`bench.canary_sim` (auth failures 0.5 %, mismatches 0.1 %, anomalies
0.2 %). The canary starts at a uniformly random second of the minute (the phase the
rehearsals saw decide 10 s or 58 s). Each run records, from its first request:

- **minute only**: the first top-of-minute monitor run whose judged minute (the one that
  just ended) the judge (:func:`~functions.deploy_guard.policy.judge.judge`) calls a
  breach or a second failure;
- **with the fast judge**: the same, or earlier the first 10 s tick whose window (from
  the start of the previous minute to the tick) has a rate breach
  (:func:`~functions.deploy_guard.policy.judge.fast_breaches`).

Both then add the same traffic write (``DEPLOY_TRAFFIC_TIMEOUT_SEC`` at its worst is
*not* added: the figures are decision times). Healthy canaries measure the cost: the
share of 1,000 healthy runs (30 minutes each) that either path rolls back.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass

from bench.canary_sim import _binomial, _poisson
from functions.deploy_guard.policy.judge import fast_breaches, judge
from shared import thresholds as t
from shared.models.deploy import RevisionWindow, Verdict

TOTAL_RPM = 2000
SHARE = 0.05
BAD_ERROR_PCT = 15.0
SLICE_SEC = 10
RUNS = 1000
HEALTHY_MINUTES = 30


def _slice(rng: random.Random, share: float, error_pct: float) -> RevisionWindow:
    """One 10 s slice of a revision's traffic at ``share``."""
    scale = SLICE_SEC / 60
    n = _poisson(rng, TOTAL_RPM * share * scale)
    payouts = _poisson(rng, 20 * share * scale)
    writes = _poisson(rng, 100 * share * scale)
    auths = _poisson(rng, 60 * share * scale)
    return RevisionWindow(
        requests=n,
        errors=min(n, _binomial(rng, n, error_pct)),
        p95_latency_ms=200.0 if n else None,
        payouts=payouts,
        payout_anomalies=min(payouts, _binomial(rng, payouts, 0.2)),
        token_writes=writes,
        token_mismatches=min(writes, _binomial(rng, writes, 0.1)),
        auth_attempts=auths,
        auth_failures=min(auths, _binomial(rng, auths, 0.5)),
    )


def _sum(slices: list[RevisionWindow]) -> RevisionWindow:
    fields = [f for f in RevisionWindow.model_fields if f != "p95_latency_ms"]
    total = {f: sum(int(getattr(w, f)) for w in slices) for f in fields}
    return RevisionWindow(**total, p95_latency_ms=200.0 if total["requests"] else None)


@dataclass
class Run:
    minute_only_sec: float | None
    fast_sec: float | None


def simulate(
    rng: random.Random, bad_from_sec: float | None, minutes: int, bad_pct: float = BAD_ERROR_PCT
) -> Run:
    """One deployment at 5 % for ``minutes``; bad from ``bad_from_sec`` (None: healthy)."""
    per_minute = 60 // SLICE_SEC
    canary: list[RevisionWindow] = []
    stable: list[RevisionWindow] = []
    minute_at = fast_at = None
    failures = 0
    for k in range(minutes * per_minute):
        start = k * SLICE_SEC
        if bad_from_sec is None:
            canary.append(_slice(rng, SHARE, 0.5))
        elif start + SLICE_SEC > bad_from_sec:  # the bad revision serves from its start
            live = min(1.0, (start + SLICE_SEC - bad_from_sec) / SLICE_SEC)
            canary.append(_slice(rng, SHARE * live, bad_pct))
        else:
            canary.append(RevisionWindow())  # not deployed yet
        stable.append(_slice(rng, 1 - SHARE, 0.5))
        tick = start + SLICE_SEC
        # window of a tick: from the start of the previous minute to the tick
        first = (
            max(0, (tick // 60 - 1) * per_minute) if tick % 60 else (tick // 60 - 1) * per_minute
        )
        if fast_at is None:
            _verdict, checks = judge(_sum(canary[first:]), _sum(stable[first:]), None)
            if fast_breaches(checks):
                fast_at = tick
        if tick % 60 == 0 and minute_at is None:
            lo = tick // SLICE_SEC - per_minute
            verdict, _ = judge(_sum(canary[lo:]), _sum(stable[lo:]), None)
            failures += verdict == Verdict.FAIL
            if verdict == Verdict.BREACH or failures >= t.CANARY_FAILURE_LIMIT:
                minute_at = tick
        if minute_at is not None and fast_at is not None:
            break
    origin = bad_from_sec or 0.0

    def since(at: float | None) -> float | None:
        return None if at is None else at - origin

    fast = min(x for x in (fast_at, minute_at) if x is not None) if (fast_at or minute_at) else None
    return Run(since(minute_at), since(fast))


@dataclass
class Figures:
    minute_only_max: float
    minute_only_mean: float
    minute_only_over_60_pct: float
    fast_max: float
    fast_mean: float
    fast_over_60_pct: float
    healthy_false_rollbacks_minute_pct: float
    healthy_false_rollbacks_fast_pct: float


def run(seed: int = 22, bad_pct: float = BAD_ERROR_PCT, runs: int = RUNS) -> Figures:
    rng = random.Random(seed)
    bad = [simulate(rng, rng.uniform(0, 60), 10, bad_pct) for _ in range(runs)]
    minute = [r.minute_only_sec for r in bad if r.minute_only_sec is not None]
    fast = [r.fast_sec for r in bad if r.fast_sec is not None]
    healthy = [simulate(rng, None, HEALTHY_MINUTES) for _ in range(runs)]
    return Figures(
        minute_only_max=max(minute),
        minute_only_mean=sum(minute) / len(minute),
        minute_only_over_60_pct=100 * sum(m > 60 for m in minute) / len(bad),
        fast_max=max(fast),
        fast_mean=sum(fast) / len(fast),
        fast_over_60_pct=100 * sum(f > 60 for f in fast) / len(bad),
        healthy_false_rollbacks_minute_pct=100
        * sum(r.minute_only_sec is not None for r in healthy)
        / runs,
        healthy_false_rollbacks_fast_pct=100 * sum(r.fast_sec is not None for r in healthy) / runs,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--error-pct", type=float, default=BAD_ERROR_PCT, help="the bad canary's")
    args = parser.parse_args()
    figures = run(args.seed, args.error_pct)
    if args.json:
        print(json.dumps(asdict(figures), indent=2))
        return
    rows = [
        ("minute monitor only", figures.minute_only_max, figures.minute_only_mean,
         figures.minute_only_over_60_pct, figures.healthy_false_rollbacks_minute_pct),
        ("+ fast judge (10 s)", figures.fast_max, figures.fast_mean,
         figures.fast_over_60_pct, figures.healthy_false_rollbacks_fast_pct),
    ]  # fmt: skip
    print(
        f"{RUNS} bad canaries ({args.error_pct:g} % errors at 5 %, random phase), "
        f"{RUNS} healthy x 30 min"
    )
    print(f"{'judge':<22}{'max s':>8}{'mean s':>8}{'> 60 s %':>10}{'healthy rolled back %':>23}")
    for name, worst, mean, over, false in rows:
        print(f"{name:<22}{worst:>8.0f}{mean:>8.1f}{over:>10.1f}{false:>23.1f}")


if __name__ == "__main__":
    main()
