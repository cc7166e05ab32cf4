"""The canary judge: one window's check of canary against stable (Argo Rollouts'
``assessMetricStatus`` shape), pure.

:func:`judge`: ``breach`` (conclusive, roll back now: the 99.5 % lower bound of the rate is
over the threshold), ``fail`` (the 84 % lower bound is over: counts against the failure
limit), either with at least 3 bad events in the minute; ``inconclusive`` (too little
traffic) or ``pass``. :func:`fast_breaches`: what the 10 s judge rolls back on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from shared import thresholds as t
from shared.models.deploy import MetricCheck, RevisionWindow, Verdict

LATENCY_METRIC = "p95_latency_ms"
"""The latency check's name (the other checks are rates)."""


@dataclass(frozen=True)
class RateRule:
    metric: str
    threshold_pct: float
    bad: str
    total: str


RATE_RULES: tuple[RateRule, ...] = (
    RateRule("error_rate", t.CANARY_ROLLBACK_ERROR_RATE_PCT, "errors", "requests"),
    RateRule(
        "payout_anomaly_rate",
        t.CANARY_ROLLBACK_PAYOUT_ANOMALY_RATE_PCT,
        "payout_anomalies",
        "payouts",
    ),
    RateRule(
        "token_mismatch_rate",
        t.CANARY_ROLLBACK_TOKEN_MISMATCH_RATE_PCT,
        "token_mismatches",
        "token_writes",
    ),
    RateRule(
        "auth_failure_rate",
        t.CANARY_ROLLBACK_AUTH_FAILURE_RATE_PCT,
        "auth_failures",
        "auth_attempts",
    ),
)
"""The spec's rollback rates: canary rate over the threshold (percent of events)."""


def wilson_lower_pct(bad: int, total: int, z: float = t.CANARY_CONFIDENCE_Z) -> float:
    """Lower Wilson score bound of ``bad/total``, in percent (0 for no events)."""
    if total <= 0:
        return 0.0
    p = bad / total
    denom = 1 + z * z / total
    centre = p + z * z / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, 100.0 * (centre - margin) / denom)


def _rate_check(rule: RateRule, canary: RevisionWindow, stable: RevisionWindow) -> MetricCheck:
    bad, total = int(getattr(canary, rule.bad)), int(getattr(canary, rule.total))
    s_bad, s_total = int(getattr(stable, rule.bad)), int(getattr(stable, rule.total))
    stable_pct = 100.0 * s_bad / s_total if s_total else None
    if total == 0:
        return MetricCheck(
            metric=rule.metric,
            canary=None,
            stable=stable_pct,
            threshold=rule.threshold_pct,
            verdict=Verdict.PASS,
            detail="no events",
        )
    pct = 100.0 * bad / total
    lower = wilson_lower_pct(bad, total)
    evidence = bad >= t.CANARY_MIN_BAD_EVENTS_COUNT
    if evidence and lower > rule.threshold_pct:
        verdict, detail = Verdict.BREACH, f"lower bound {lower:.2f}% over the threshold"
    elif evidence and wilson_lower_pct(bad, total, t.CANARY_FAIL_CONFIDENCE_Z) > rule.threshold_pct:
        verdict, detail = Verdict.FAIL, f"{pct:.2f}% over, lower bound {lower:.2f}%"
    else:
        verdict, detail = Verdict.PASS, ""
    return MetricCheck(
        metric=rule.metric,
        canary=round(pct, 4),
        stable=None if stable_pct is None else round(stable_pct, 4),
        threshold=rule.threshold_pct,
        verdict=verdict,
        detail=detail,
    )


def _latency_check(
    canary: RevisionWindow, stable: RevisionWindow, baseline_p95_ms: float | None
) -> MetricCheck:
    limit_ratio = 1 + t.CANARY_ROLLBACK_LATENCY_INCREASE_PCT / 100
    enough = stable.requests >= t.CANARY_MIN_REQUESTS_PER_CHECK
    reference = stable.p95_latency_ms if enough and stable.p95_latency_ms else baseline_p95_ms
    value = canary.p95_latency_ms
    if value is None or reference is None or canary.requests < t.CANARY_MIN_REQUESTS_PER_CHECK:
        return MetricCheck(
            metric=LATENCY_METRIC,
            canary=value,
            stable=reference,
            threshold=t.CANARY_ROLLBACK_LATENCY_INCREASE_PCT,
            verdict=Verdict.PASS,
            detail="no comparable latency",
        )
    over = value > reference * limit_ratio and value - reference > t.CANARY_LATENCY_FLOOR_MS
    return MetricCheck(
        metric=LATENCY_METRIC,
        canary=round(value, 3),
        stable=round(reference, 3),
        threshold=t.CANARY_ROLLBACK_LATENCY_INCREASE_PCT,
        verdict=Verdict.BREACH if over else Verdict.PASS,
        detail=f"{100 * (value / reference - 1):.1f}% over stable" if over else "",
    )


def judge(
    canary: RevisionWindow,
    stable: RevisionWindow,
    baseline_p95_ms: float | None = None,
    min_requests: int = t.CANARY_MIN_REQUESTS_PER_CHECK,
) -> tuple[Verdict, list[MetricCheck]]:
    """One minute's check of the canary against stable over the same window.

    A conclusive breach of any rule wins even with little traffic; otherwise fewer than
    ``min_requests`` canary requests is ``inconclusive``; otherwise any rate over its
    threshold is ``fail``. ``baseline_p95_ms`` stands in for stable's p95 when stable
    serves nothing (the 100 % step)."""
    checks = [_rate_check(rule, canary, stable) for rule in RATE_RULES]
    checks.append(_latency_check(canary, stable, baseline_p95_ms))
    verdicts = {c.verdict for c in checks}
    if Verdict.BREACH in verdicts:
        return Verdict.BREACH, checks
    if canary.requests < min_requests:
        return Verdict.INCONCLUSIVE, checks
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL, checks
    return Verdict.PASS, checks


def fast_breaches(checks: Sequence[MetricCheck]) -> list[str]:
    """The checks a fast (10 s) judge rolls back on: conclusive *rate* breaches only (the
    Wilson bound makes them conclusive at any traffic). Latency waits for the minute
    monitor: a p95 over a partial window of a revision that has just taken traffic (a
    deploy at 100 %, then 5 %) is a few dozen requests' maximum, not comparable with
    stable's (a good canary was rolled back for 63 ms against 27 ms over 56 requests in a
    rehearsal)."""
    return [c.metric for c in checks if c.verdict == Verdict.BREACH and c.metric != LATENCY_METRIC]
