"""Deploy guard decisions: pure functions of measured numbers, state and ``now``.

- :func:`judge`: one minute's canary check, canary against stable (Argo Rollouts'
  ``assessMetricStatus`` shape): ``breach`` (conclusive, roll back now: the 99.5 % lower
  bound of the rate is over the threshold), ``fail`` (the 84 % lower bound is over: counts
  against the failure limit), either with at least 3 bad events in the minute;
  ``inconclusive`` (too little traffic) or ``pass``.
- :func:`on_check`: the state machine's answer to a check (advance, hold, pause, roll back).
- :func:`begin`, :func:`on_control`, :func:`split`, :func:`gates_passed`, :func:`report_usable`.
- :func:`needs_confirmation`, :func:`confirmed`: a final split stays asserted until the
  platform is seen serving it.
- The six pre-deploy gates: :func:`system_health_gate`, :func:`payment_gate`,
  :func:`token_gate`, :func:`auth_gate`, :func:`index_gate`, :func:`endpoint_gate` (the
  service reads and probes, these decide).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared import thresholds as t
from shared.alerts.policy import AlertChange, AlertResolve, AlertSpec
from shared.models.alerts import AlertSource, Severity
from shared.models.deploy import (
    ACTIVE_PHASES,
    Analysis,
    ControlAction,
    DeploymentDoc,
    GateResult,
    GateStatus,
    HistoryEntry,
    MetricCheck,
    Phase,
    RevisionWindow,
    ServiceTarget,
    TrafficSnapshot,
    ValidationReport,
    Verdict,
)
from shared.models.scaling import IsolationState, ServiceDoc

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


# ------------------------------------------------------------- state machine


def _event(dep: DeploymentDoc, now: datetime, event: str, **detail: object) -> list[HistoryEntry]:
    entry = HistoryEntry(
        at=now, event=event, phase=dep.phase, traffic_percent=dep.traffic_percent, detail=detail
    )
    return [*dep.history, entry]


def with_event(dep: DeploymentDoc, now: datetime, event: str, **detail: object) -> DeploymentDoc:
    """``dep`` with ``event`` appended to its history (recording its phase and traffic)."""
    return dep.model_copy(update={"history": _event(dep, now, event, **detail), "updated_at": now})


def _to_step(dep: DeploymentDoc, step: int, now: datetime) -> DeploymentDoc:
    pct = dep.steps_pct[step]
    phase = Phase.PROMOTING if pct >= 100 else Phase.PROGRESSING
    moved = dep.model_copy(
        update={
            "phase": phase,
            "step": step,
            "traffic_percent": pct,
            "step_started_at": now,
            "step_requests": 0,
            "failures": 0,
            "inconclusive": 0,
        }
    )
    return with_event(moved, now, "step", step=step, percent=pct)


def rollback(dep: DeploymentDoc, now: datetime, reason: str, **detail: object) -> DeploymentDoc:
    """Send everything back to stable: ``rolling_back`` with 0 % on the new revision."""
    moved = dep.model_copy(
        update={"phase": Phase.ROLLING_BACK, "traffic_percent": 0, "reason": reason}
    )
    return with_event(moved, now, "rollback", reason=reason, **detail)


def begin(dep: DeploymentDoc, canary_share_now: int, now: datetime) -> DeploymentDoc:
    """Validation done (the new revisions are ready): go to the first step. When the
    platform already gives the new revision more than 0 % (the pin did not hold), say so:
    the first step's split replaces it at once."""
    checked = with_event(dep, now, "validated", canaryShareFound=canary_share_now)
    return _to_step(checked, 0, now)


def on_check(dep: DeploymentDoc, analysis: Analysis, now: datetime) -> DeploymentDoc:
    """The deployment after one minute's analysis (``progressing`` or ``promoting`` only)."""
    kept = [*dep.analyses, analysis][-t.CANARY_ANALYSES_KEPT_COUNT :]
    baseline = dep.baseline_p95_ms
    if (
        analysis.stable.p95_latency_ms is not None
        and analysis.stable.requests >= t.CANARY_MIN_REQUESTS_PER_CHECK
    ):
        baseline = analysis.stable.p95_latency_ms
    cur = dep.model_copy(
        update={
            "analyses": kept,
            "last_checked_minute": analysis.window_start,
            "baseline_p95_ms": baseline,
            "updated_at": now,
        }
    )
    failing = [c.metric for c in analysis.checks if c.verdict in (Verdict.BREACH, Verdict.FAIL)]
    if analysis.verdict == Verdict.BREACH:
        return rollback(cur, now, f"canary breached {', '.join(failing)}", checks=failing)
    if analysis.verdict == Verdict.INCONCLUSIVE:
        cur = cur.model_copy(update={"inconclusive": cur.inconclusive + 1})
        if cur.inconclusive >= t.CANARY_INCONCLUSIVE_LIMIT:
            paused = cur.model_copy(update={"phase": Phase.PAUSED})
            return with_event(paused, now, "paused", why="too many inconclusive checks")
        return cur
    cur = cur.model_copy(
        update={"inconclusive": 0, "step_requests": cur.step_requests + analysis.canary.requests}
    )
    if analysis.verdict == Verdict.FAIL:
        cur = cur.model_copy(update={"failures": cur.failures + 1})
        if cur.failures >= t.CANARY_FAILURE_LIMIT:
            return rollback(cur, now, f"failure limit reached ({', '.join(failing)})")
        return cur
    started = cur.step_started_at or now
    baked = now - started >= timedelta(seconds=cur.bake_sec)
    if not baked or cur.step_requests < cur.min_requests_per_step:
        return cur
    if cur.step + 1 < len(cur.steps_pct):
        return _to_step(cur, cur.step + 1, now)
    done = cur.model_copy(update={"phase": Phase.SUCCEEDED, "ended_at": now})
    return with_event(done, now, "succeeded")


def on_control(
    dep: DeploymentDoc, action: ControlAction, reason: str, now: datetime
) -> DeploymentDoc:
    """A human's promote, pause, resume or abort (raises ValueError when not allowed)."""
    if action == ControlAction.ABORT:
        return rollback(dep, now, reason, manual=True)
    if action == ControlAction.PAUSE:
        if dep.phase not in (Phase.PROGRESSING, Phase.PROMOTING):
            raise ValueError(f"cannot pause a deployment that is {dep.phase.value}")
        return with_event(dep.model_copy(update={"phase": Phase.PAUSED}), now, "paused", why=reason)
    if action == ControlAction.RESUME:
        if dep.phase != Phase.PAUSED:
            raise ValueError(f"cannot resume a deployment that is {dep.phase.value}")
        pct = dep.steps_pct[dep.step]
        resumed = dep.model_copy(
            update={
                "phase": Phase.PROMOTING if pct >= 100 else Phase.PROGRESSING,
                "inconclusive": 0,
                "step_started_at": now,
            }
        )
        return with_event(resumed, now, "resumed", why=reason)
    if dep.phase not in (Phase.PROGRESSING, Phase.PROMOTING, Phase.PAUSED):
        raise ValueError(f"cannot promote a deployment that is {dep.phase.value}")
    promoting = dep.model_copy(
        update={
            "phase": Phase.PROMOTING,
            "step": len(dep.steps_pct) - 1,
            "traffic_percent": 100,
            "promoted_by_hand": True,
        }
    )
    return with_event(promoting, now, "promoted", why=reason, manual=True)


def settled(dep: DeploymentDoc, now: datetime) -> DeploymentDoc | None:
    """The final phase a deployment reaches once the platform confirmed its traffic
    (rolled back at 0 %, promoted by hand at 100 %); None when it is not there yet."""
    if dep.applied_percent != dep.traffic_percent:
        return None
    if dep.phase == Phase.ROLLING_BACK and dep.traffic_percent == 0:
        done = dep.model_copy(update={"phase": Phase.ROLLED_BACK, "ended_at": now})
        return with_event(done, now, "rolled_back")
    if dep.phase == Phase.PROMOTING and dep.promoted_by_hand and dep.traffic_percent == 100:
        done = dep.model_copy(update={"phase": Phase.SUCCEEDED, "ended_at": now})
        return with_event(done, now, "succeeded")
    return None


FINAL_SPLIT_PHASES = frozenset({Phase.ROLLED_BACK, Phase.SUCCEEDED})
"""Final phases whose split the platform must be seen serving before the deployment lets
go of its environment (a failed deployment never moved traffic)."""


def needs_confirmation(dep: DeploymentDoc) -> bool:
    """A final deployment the platform was not yet seen serving: the monitor re-asserts
    its split every run until it is."""
    return dep.phase in FINAL_SPLIT_PHASES and dep.confirmed_at is None


def holds_environment(dep: DeploymentDoc) -> bool:
    """Active, or final but not yet confirmed on the platform."""
    return dep.phase in ACTIVE_PHASES or needs_confirmation(dep)


def confirmed(dep: DeploymentDoc, now: datetime, reasserted: list[str]) -> DeploymentDoc | None:
    """``dep`` once the platform serves its final split (None: nothing to confirm).
    ``reasserted`` names the services whose split had to be sent again (drift)."""
    if not needs_confirmation(dep):
        return None
    done = dep.model_copy(update={"confirmed_at": now, "updated_at": now})
    return with_event(done, now, "reasserted", services=reasserted) if reasserted else done


def fast_breaches(checks: Sequence[MetricCheck]) -> list[str]:
    """The checks a fast (10 s) judge rolls back on: conclusive *rate* breaches only (the
    Wilson bound makes them conclusive at any traffic). Latency waits for the minute
    monitor: a p95 over a partial window of a revision that has just taken traffic (a
    deploy at 100 %, then 5 %) is a few dozen requests' maximum, not comparable with
    stable's (a good canary was rolled back for 63 ms against 27 ms over 56 requests in a
    rehearsal)."""
    return [c.metric for c in checks if c.verdict == Verdict.BREACH and c.metric != LATENCY_METRIC]


def snapshot_usable(snapshot: TrafficSnapshot, now: datetime) -> bool:
    """A snapshot of the serving revisions is the stable side of a canary while it is
    younger than ``DEPLOY_SNAPSHOT_MAX_AGE_SEC`` (older: an earlier deploy's)."""
    age = (now - snapshot.taken_at).total_seconds()
    return 0 <= age <= t.DEPLOY_SNAPSHOT_MAX_AGE_SEC


def next_tick(now: datetime) -> datetime:
    """When the fast judge runs next: the next multiple of ``CANARY_FAST_CHECK_INTERVAL_SEC``
    after ``now`` (on the epoch's grid, so every enqueuer of one tick names the same task)."""
    step = t.CANARY_FAST_CHECK_INTERVAL_SEC
    return datetime.fromtimestamp((math.floor(now.timestamp() / step) + 1) * step, tz=now.tzinfo)


def worst_case_rollback_sec(
    interval_sec: float, dispatch_late_sec: float, judge_sec: float, traffic_write_sec: float
) -> float:
    """From a breach being in the data to stable serving 100 %, at worst: the tick that
    just missed it, the next one's interval, its late dispatch, the judging and the
    traffic write (each at its deadline)."""
    return interval_sec + dispatch_late_sec + judge_sec + traffic_write_sec


def split(target: ServiceTarget, canary_percent: int) -> dict[str, int]:
    """Revision -> percent for one service (0 % entries left out; sums to 100)."""
    if target.canary_revision is None or canary_percent <= 0:
        return {target.stable_revision: 100}
    if canary_percent >= 100:
        return {target.canary_revision: 100}
    return {target.stable_revision: 100 - canary_percent, target.canary_revision: canary_percent}


def gates_passed(gates: list[GateResult]) -> bool:
    """A report passes when no gate failed (skipped gates do not count against it)."""
    return all(g.status != GateStatus.FAIL for g in gates)


def report_usable(
    report: ValidationReport | None, version: str, environment: str, now: datetime
) -> str | None:
    """Why ``report`` does not let ``version`` start in ``environment`` (None: it does)."""
    if report is None:
        return f"no pre-deploy report for {version} in {environment}"
    if not report.passed:
        return f"the latest pre-deploy report ({report.report_id}) failed"
    age = (now - report.at).total_seconds()
    if age > t.DEPLOY_REPORT_MAX_AGE_SEC:
        return (
            f"the latest pre-deploy report is {int(age)} s old (max {t.DEPLOY_REPORT_MAX_AGE_SEC})"
        )
    return None


# ------------------------------------------------------------ pre-deploy gates
# Each gate is a verdict on what the service read (registry, probes, counts): PASS, FAIL,
# or SKIPPED when there is nothing to judge, with the evidence the report stores.

PAYMENT_SERVICE = "payment-processor"
"""The scaling registry's id of the payment processor (the payment gate checks it)."""


class ProbeOutcome(Protocol):
    """One HTTP probe as the gates read it (:class:`shared.gcp.probe.ProbeResult`)."""

    @property
    def ok(self) -> bool: ...
    @property
    def status(self) -> int | None: ...
    @property
    def ms(self) -> float: ...
    @property
    def error(self) -> str | None: ...


def services_to_probe(services: Sequence[ServiceDoc]) -> list[ServiceDoc]:
    """The services whose health URL the gates probe: those with one, not isolated (an
    isolated service fails the gates whatever its probe says)."""
    return [d for d in services if d.config.health_url and d.state.isolation == IsolationState.NONE]


def stuck_payout_cutoff(now: datetime) -> datetime:
    """A pending payout created before this is stuck."""
    return now - timedelta(seconds=t.DEPLOY_STUCK_PAYOUT_AGE_SEC)


def auth_window_start(now: datetime) -> datetime:
    """The auth gate judges the events of [this, now)."""
    return now - timedelta(seconds=t.DEPLOY_AUTH_WINDOW_SEC)


def _health_of(doc: ServiceDoc, probes: Mapping[str, bool]) -> str:
    if doc.state.isolation != IsolationState.NONE:
        return "isolated"
    if probes.get(doc.config.service_id, True):
        return "healthy"
    return "down"


def system_health_gate(services: Sequence[ServiceDoc], probes: Mapping[str, bool]) -> GateResult:
    """Every registered service healthy: not isolated, and its health probe (``probes``:
    service id -> 2xx in time; a service not probed has no URL) passed."""
    if not services:
        return GateResult(
            name="system_health",
            status=GateStatus.SKIPPED,
            evidence={"why": "no service in the scaling registry"},
        )
    states = {d.config.service_id: _health_of(d, probes) for d in services}
    bad = sorted(s for s, v in states.items() if v != "healthy")
    return GateResult(
        name="system_health",
        status=GateStatus.FAIL if bad else GateStatus.PASS,
        evidence={"services": states, "unhealthy": bad},
    )


def payment_gate(
    services: Sequence[ServiceDoc], probes: Mapping[str, bool], stuck_payouts: int
) -> GateResult:
    """The payment processor (if registered) healthy, and no more stuck payouts than
    ``DEPLOY_STUCK_PAYOUT_MAX_COUNT``."""
    evidence: dict[str, Any] = {}
    ok = True
    doc = next((d for d in services if d.config.service_id == PAYMENT_SERVICE), None)
    if doc is None:
        evidence["processor"] = "not registered"
    else:
        evidence["processor"] = _health_of(doc, probes)
        ok = evidence["processor"] == "healthy"
    evidence.update(stuckPayouts=stuck_payouts, maxStuck=t.DEPLOY_STUCK_PAYOUT_MAX_COUNT)
    ok = ok and stuck_payouts <= t.DEPLOY_STUCK_PAYOUT_MAX_COUNT
    return GateResult(
        name="payment_system",
        status=GateStatus.PASS if ok else GateStatus.FAIL,
        evidence=evidence,
    )


def token_gate(checked: int, mismatches: Sequence[Mapping[str, int | str]]) -> GateResult:
    """Every sampled wallet's balance equals the sum of its transactions."""
    if checked == 0:
        return GateResult(
            name="token_system", status=GateStatus.SKIPPED, evidence={"why": "no wallets"}
        )
    return GateResult(
        name="token_system",
        status=GateStatus.FAIL if mismatches else GateStatus.PASS,
        evidence={"walletsChecked": checked, "mismatches": [dict(m) for m in mismatches]},
    )


def auth_gate(failed: int, total: int) -> GateResult:
    """The auth failure rate of the window at most ``DEPLOY_AUTH_FAILURE_RATE_PCT``."""
    if total == 0:
        return GateResult(
            name="auth_system",
            status=GateStatus.SKIPPED,
            evidence={"why": "no auth events in the window"},
        )
    rate = 100.0 * failed / total
    return GateResult(
        name="auth_system",
        status=GateStatus.FAIL if rate > t.DEPLOY_AUTH_FAILURE_RATE_PCT else GateStatus.PASS,
        evidence={
            "failureRatePct": round(rate, 3),
            "thresholdPct": t.DEPLOY_AUTH_FAILURE_RATE_PCT,
            "events": total,
        },
    )


def index_gate(declared: int, missing: Sequence[str] | None) -> GateResult:
    """Every index of ``firestore.indexes.json`` READY (``missing`` None: the emulator,
    which needs none)."""
    if missing is None:
        return GateResult(
            name="database_indexes",
            status=GateStatus.SKIPPED,
            evidence={"why": "the Firestore emulator needs no indexes", "declared": declared},
        )
    return GateResult(
        name="database_indexes",
        status=GateStatus.FAIL if missing else GateStatus.PASS,
        evidence={"declared": declared, "missing": list(missing)},
    )


def endpoint_gate(probes: Mapping[str, ProbeOutcome]) -> GateResult:
    """Every configured API endpoint answered 2xx in time (URL -> its probe)."""
    if not probes:
        return GateResult(
            name="api_endpoints",
            status=GateStatus.SKIPPED,
            evidence={"why": "no probe URLs configured (PACK391_DEPLOY_PROBE_URLS)"},
        )
    evidence = {
        url: {"ok": r.ok, "status": r.status, "ms": round(r.ms, 1), "error": r.error}
        for url, r in probes.items()
    }
    failed = any(not r.ok for r in probes.values())
    return GateResult(
        name="api_endpoints",
        status=GateStatus.FAIL if failed else GateStatus.PASS,
        evidence={"probes": evidence},
    )


# ------------------------------------------------------------------- alerts


def rollback_alert_key(environment: str, service: str) -> str:
    """One rollback alert per service and environment."""
    return f"deploy:rollback:{environment}:{service}"


def deployment_alerts(before: DeploymentDoc, after: DeploymentDoc) -> list[AlertChange]:
    """The alerts a phase change raises or resolves: a rollback raises one per service (it
    resolves when a human acknowledges it); a deployment that succeeds (the new revision
    serves 100 %) resolves the rollback alerts of its services in its environment."""
    if after.phase == before.phase:
        return []
    services = sorted({s.service for s in after.services})
    if after.phase == Phase.ROLLING_BACK:
        last = after.analyses[-1] if after.analyses else None
        return [
            AlertSpec(
                source=AlertSource.DEPLOY,
                kind="rollback",
                dedup_key=rollback_alert_key(after.environment, service),
                severity=Severity.HIGH,
                title=(
                    f"Deployment {after.deployment_id} ({after.version}) of {service} rolled "
                    f"back in {after.environment}: {after.reason}"
                ),
                evidence={
                    "deploymentId": after.deployment_id,
                    "version": after.version,
                    "environment": after.environment,
                    "service": service,
                    "reason": after.reason,
                    "step": after.step,
                    "analysis": last.model_dump(mode="json", by_alias=True) if last else None,
                },
                resolve_on_acknowledge=True,
            )
            for service in services
        ]
    if after.phase == Phase.SUCCEEDED:
        return [
            AlertResolve(
                rollback_alert_key(after.environment, service),
                f"deployment {after.deployment_id} ({after.version}) succeeded",
            )
            for service in services
        ]
    return []
