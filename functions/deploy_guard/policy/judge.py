"""The canary judge: one window's check of canary against stable over the same minutes
(Argo Rollouts' ``assessMetricStatus`` shape, Kayenta's comparison), pure.

:func:`judge`, per metric:

- ``breach`` (conclusive, roll back now): the 99.5 % lower Wilson bound of the canary's
  rate is over stable's rate plus the threshold (the difference), or over the threshold
  while stable is fine in the same minute (a canary bad on its own, whatever the
  platform does); p95 over 1.5 x stable's (and 25 ms more);
- ``fail`` (counts against the failure limit): with at least ``CANARY_MWU_MIN_POINTS_COUNT``
  minutes of the step measured on both sides, a one-sided Mann-Whitney U test
  (:mod:`~functions.deploy_guard.policy.stats`) finds the canary's minutes worse than
  stable's by more than the threshold (p under ``CANARY_MWU_FAIL_P``); with fewer, the
  84 % Wilson bound over stable's rate plus the threshold; and, as before, the 84 %
  bound over the threshold while stable is fine;
- rates need at least 3 bad events in the minute to breach or fail;
- over the threshold, not worse than stable, and stable degraded alike (stable's own
  84 % bound over the threshold): ``explained`` when the platform context of the minutes
  has a signal (the deployment pauses), else ``inconclusive`` (it holds);
- fewer than ``CANARY_MIN_REQUESTS_PER_CHECK`` canary requests: ``inconclusive``.

:func:`fast_breaches`: what the 10 s judge rolls back on (breaches only, so never one the
platform explains).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from functions.deploy_guard.policy.stats import mann_whitney_greater
from shared import thresholds as t
from shared.models.deploy import MetricCheck, PlatformContext, RevisionWindow, Verdict

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


Points = Sequence[tuple[RevisionWindow, RevisionWindow]]
"""(canary, stable) of each earlier minute of the step, the same minutes on both sides."""


def _pct(w: RevisionWindow, rule: RateRule) -> tuple[int, int]:
    return int(getattr(w, rule.bad)), int(getattr(w, rule.total))


def _own(bad: int, total: int, threshold: float) -> Verdict:
    """Today's absolute rule on one revision: breach, fail or pass."""
    if total <= 0 or bad < t.CANARY_MIN_BAD_EVENTS_COUNT:
        return Verdict.PASS
    if wilson_lower_pct(bad, total) > threshold:
        return Verdict.BREACH
    if wilson_lower_pct(bad, total, t.CANARY_FAIL_CONFIDENCE_Z) > threshold:
        return Verdict.FAIL
    return Verdict.PASS


def rate_test_p(
    rule: RateRule, canary: RevisionWindow, stable: RevisionWindow, points: Points
) -> float | None:
    """The Mann-Whitney p-value of "the canary's per-minute rate is over stable's plus the
    threshold" over the judged minute and ``points``; None with too few minutes that
    have events on both sides."""
    xs, ys = [], []
    for c, s in [*points, (canary, stable)]:
        (cb, ct), (sb, st) = _pct(c, rule), _pct(s, rule)
        if ct > 0 and st > 0:
            xs.append(100.0 * cb / ct - rule.threshold_pct)
            ys.append(100.0 * sb / st)
    if len(xs) < t.CANARY_MWU_MIN_POINTS_COUNT:
        return None
    return mann_whitney_greater(xs, ys).p_greater


def _rate_check(
    rule: RateRule, canary: RevisionWindow, stable: RevisionWindow, points: Points
) -> MetricCheck:
    bad, total = _pct(canary, rule)
    s_bad, s_total = _pct(stable, rule)
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
    own = _own(bad, total, rule.threshold_pct)
    degraded = _own(s_bad, s_total, rule.threshold_pct) != Verdict.PASS
    limit = (stable_pct or 0.0) + rule.threshold_pct
    p = rate_test_p(rule, canary, stable, points)
    if p is not None:
        worse, how = p < t.CANARY_MWU_FAIL_P, f"Mann-Whitney p={p:.4f}"
    else:
        fail_lower = wilson_lower_pct(bad, total, t.CANARY_FAIL_CONFIDENCE_Z)
        worse, how = evidence and fail_lower > limit, f"84% lower bound {fail_lower:.2f}%"
    stable_txt = f"stable {stable_pct:.2f}%" if stable_pct is not None else "stable no events"
    if evidence and lower > limit:
        verdict = Verdict.BREACH
        detail = f"lower bound {lower:.2f}% over {stable_txt} + {rule.threshold_pct:g}"
    elif own == Verdict.BREACH and not degraded:
        verdict, detail = Verdict.BREACH, f"lower bound {lower:.2f}% over the threshold"
    elif worse:
        verdict, detail = Verdict.FAIL, f"{pct:.2f}% worse than {stable_txt}: {how}"
    elif own == Verdict.FAIL and not degraded:
        verdict, detail = Verdict.FAIL, f"{pct:.2f}% over, lower bound {lower:.2f}%"
    elif own != Verdict.PASS:
        verdict = Verdict.INCONCLUSIVE
        detail = f"{pct:.2f}% over, {stable_txt} degraded alike"
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


def _latency_over(canary_ms: float, reference_ms: float) -> bool:
    limit_ratio = 1 + t.CANARY_ROLLBACK_LATENCY_INCREASE_PCT / 100
    return (
        canary_ms > reference_ms * limit_ratio
        and canary_ms - reference_ms > t.CANARY_LATENCY_FLOOR_MS
    )


def latency_test_p(canary: RevisionWindow, stable: RevisionWindow, points: Points) -> float | None:
    """The Mann-Whitney p-value of "the canary's per-minute p95 is over the limit of
    stable's" (over 1.5 x and 25 ms more: each canary point is brought back by both and
    the smaller kept) over the judged minute and ``points``; None with too few minutes
    where both served ``CANARY_MIN_REQUESTS_PER_CHECK``."""
    ratio = 1 + t.CANARY_ROLLBACK_LATENCY_INCREASE_PCT / 100
    xs, ys = [], []
    for c, s in [*points, (canary, stable)]:
        enough = min(c.requests, s.requests) >= t.CANARY_MIN_REQUESTS_PER_CHECK
        if enough and c.p95_latency_ms is not None and s.p95_latency_ms is not None:
            c_ms = c.p95_latency_ms
            xs.append(min(c_ms / ratio, c_ms - t.CANARY_LATENCY_FLOOR_MS))
            ys.append(s.p95_latency_ms)
    if len(xs) < t.CANARY_MWU_MIN_POINTS_COUNT:
        return None
    return mann_whitney_greater(xs, ys).p_greater


def _latency_check(
    canary: RevisionWindow,
    stable: RevisionWindow,
    baseline_p95_ms: float | None,
    points: Points,
) -> MetricCheck:
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
    p = latency_test_p(canary, stable, points)
    if _latency_over(value, reference):
        verdict, detail = Verdict.BREACH, f"{100 * (value / reference - 1):.1f}% over stable"
    elif p is not None and p < t.CANARY_MWU_FAIL_P:
        verdict, detail = Verdict.FAIL, f"over stable's limit: Mann-Whitney p={p:.4f}"
    else:
        verdict, detail = Verdict.PASS, ""
    return MetricCheck(
        metric=LATENCY_METRIC,
        canary=round(value, 3),
        stable=round(reference, 3),
        threshold=t.CANARY_ROLLBACK_LATENCY_INCREASE_PCT,
        verdict=verdict,
        detail=detail,
    )


def _explained(check: MetricCheck, platform: PlatformContext | None) -> MetricCheck:
    """A degraded-alike check is the platform's when the platform context has a signal."""
    if check.verdict != Verdict.INCONCLUSIVE or platform is None or not platform.active:
        return check
    kinds = ", ".join(platform.kinds())
    detail = f"{check.detail}; the platform explains it ({kinds})"
    return check.model_copy(update={"verdict": Verdict.EXPLAINED, "detail": detail})


def judge(
    canary: RevisionWindow,
    stable: RevisionWindow,
    baseline_p95_ms: float | None = None,
    min_requests: int = t.CANARY_MIN_REQUESTS_PER_CHECK,
    points: Points = (),
    platform: PlatformContext | None = None,
) -> tuple[Verdict, list[MetricCheck]]:
    """One window's check of the canary against stable over the same minutes.

    ``points``: (canary, stable) of the step's earlier minutes, for the test over minutes;
    ``platform``: what the platform did in the window (None: not known). A conclusive
    breach of any rule wins even with little traffic; otherwise fewer than
    ``min_requests`` canary requests is ``inconclusive``; otherwise a failed check is
    ``fail``, one the platform explains ``explained``, one stable shares without a
    platform signal ``inconclusive``. ``baseline_p95_ms`` stands in for stable's p95 when
    stable serves nothing (the 100 % step)."""
    checks = [_rate_check(rule, canary, stable, points) for rule in RATE_RULES]
    checks.append(_latency_check(canary, stable, baseline_p95_ms, points))
    checks = [_explained(c, platform) for c in checks]
    verdicts = {c.verdict for c in checks}
    if Verdict.BREACH in verdicts:
        return Verdict.BREACH, checks
    if canary.requests < min_requests:
        return Verdict.INCONCLUSIVE, checks
    for verdict in (Verdict.FAIL, Verdict.EXPLAINED, Verdict.INCONCLUSIVE):
        if verdict in verdicts:
            return verdict, checks
    return Verdict.PASS, checks


def fast_breaches(checks: Sequence[MetricCheck]) -> list[str]:
    """The checks a fast (10 s) judge rolls back on: conclusive *rate* breaches only (the
    Wilson bound makes them conclusive at any traffic). Latency waits for the minute
    monitor: a p95 over a partial window of a revision that has just taken traffic (a
    deploy at 100 %, then 5 %) is a few dozen requests' maximum, not comparable with
    stable's (a good canary was rolled back for 63 ms against 27 ms over 56 requests in a
    rehearsal)."""
    return [c.metric for c in checks if c.verdict == Verdict.BREACH and c.metric != LATENCY_METRIC]
