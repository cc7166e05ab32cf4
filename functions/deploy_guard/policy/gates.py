"""The pre-deploy gates, pure: each a verdict on what the service read (registry, probes,
counts), and whether a report lets a deployment start.

The seven gates: :func:`system_health_gate`, :func:`payment_gate`, :func:`token_gate`,
:func:`auth_gate`, :func:`index_gate`, :func:`endpoint_gate`, :func:`error_budget_gate`
(the service reads and probes, these decide); :func:`gates_passed`, :func:`report_usable`.
The data gates a restore drill runs on the restored copy (:func:`data_gates`, over
:func:`data_window`): the same :func:`rate_gate` and :func:`index_gate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared import thresholds as t
from shared.models.deploy import GateResult, GateStatus, ValidationReport
from shared.models.scaling import IsolationState, ServiceDoc
from shared.models.slo import ActionMode, ActionsSnapshot, SloAction


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


def rate_gate(name: str, bad: int, total: int, threshold_pct: float, none: str) -> GateResult:
    """The share of bad events among ``total`` at most ``threshold_pct`` (``none``: why
    there is nothing to judge when there are no events). The one rate decision of the
    gates: the auth gate, and the payout and token gates a drill runs on restored data."""
    if total == 0:
        return GateResult(
            name=name,
            status=GateStatus.SKIPPED,
            evidence={"why": none, "thresholdPct": threshold_pct, "events": 0},
        )
    rate = 100.0 * bad / total
    return GateResult(
        name=name,
        status=GateStatus.FAIL if rate > threshold_pct else GateStatus.PASS,
        evidence={
            "failureRatePct": round(rate, 3),
            "thresholdPct": threshold_pct,
            "events": total,
            "bad": bad,
        },
    )


def auth_gate(failed: int, total: int) -> GateResult:
    """The auth failure rate of the window at most ``DEPLOY_AUTH_FAILURE_RATE_PCT``."""
    return rate_gate(
        "auth_system", failed, total, t.DEPLOY_AUTH_FAILURE_RATE_PCT, "no auth events in the window"
    )


def payout_anomaly_gate(anomalies: int, payouts: int) -> GateResult:
    """The payout anomaly rate of the window at most the canary's rollback limit
    (``CANARY_ROLLBACK_PAYOUT_ANOMALY_RATE_PCT``)."""
    return rate_gate(
        "payout_anomalies",
        anomalies,
        payouts,
        t.CANARY_ROLLBACK_PAYOUT_ANOMALY_RATE_PCT,
        "no payouts in the window",
    )


def token_mismatch_gate(mismatches: int, writes: int) -> GateResult:
    """The token mismatch rate of the window at most the canary's rollback limit
    (``CANARY_ROLLBACK_TOKEN_MISMATCH_RATE_PCT``)."""
    return rate_gate(
        "token_mismatches",
        mismatches,
        writes,
        t.CANARY_ROLLBACK_TOKEN_MISMATCH_RATE_PCT,
        "no token transactions in the window",
    )


def data_window(end: datetime) -> tuple[datetime, datetime]:
    """The window ``[start, end)`` of the data gates' rates: the auth gate's window
    (``DEPLOY_AUTH_WINDOW_SEC``), ending at ``end`` (now for a release; the restored
    data's moment for a drill, whose copy holds nothing later)."""
    return auth_window_start(end), end


DATA_RATE_GATES: tuple[tuple[str, str, Callable[[int, int], GateResult]], ...] = (
    ("payout_anomaly", "payout_anomalies", payout_anomaly_gate),
    ("token_mismatch", "token_mismatches", token_mismatch_gate),
    ("auth_failure", "auth_system", auth_gate),
)
"""(business rate of :data:`shared.collections.BUSINESS_RATES`, the gate's name, the gate
judging it)."""


def data_gates(
    counts: Mapping[str, tuple[int, int]], declared: int, missing: Sequence[str] | None
) -> list[GateResult]:
    """The gates on the data alone (no service, no probe): the payout anomaly, token
    mismatch and auth failure rates (``counts``: rate name -> (bad, all) in the window)
    and the indexes. A rate whose counts are absent (could not be read) is not judged
    here: the caller reports it."""
    gates = [gate(*counts[rate]) for rate, _name, gate in DATA_RATE_GATES if rate in counts]
    gates.append(index_gate(declared, missing))
    return gates


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


# ------------------------------------------------------------ the error budget gate

PLATFORM_SCOPE = "platform"
"""The SLO scope of the whole platform: a freeze on it holds every release."""


def release_scopes(names: Sequence[str], registry: Sequence[ServiceDoc]) -> list[str]:
    """The SLO scopes a release of the Cloud Run services ``names`` touches: each
    service's own (``service:{name}``) and, for a service the scaling registry knows, its
    registry id's (``service:{serviceId}``, the scope its SLIs are recorded under)."""
    ids = {d.config.cloud_run_service: d.config.service_id for d in registry}
    scopes = {f"service:{name}" for name in names}
    scopes |= {f"service:{ids[name]}" for name in names if name in ids}
    return sorted(scopes)


def error_budget_gate(
    snapshot: ActionsSnapshot | None, services: Sequence[str], scopes: Sequence[str], now: datetime
) -> GateResult:
    """The ``deploy_freeze`` action of the error budgets (``pack391_evaluateSlos``'s last
    state, ``snapshot``) for a release of ``services`` (touching the SLO ``scopes``,
    :func:`release_scopes`): FAIL while it is enforced and a burning scope is the
    platform's or one of the release's; in shadow mode PASS, saying it would have refused
    (``wouldRefuse``). No state, or one older than the snapshot's TTL (the evaluator
    stopped), is no freeze (SKIPPED): a stopped evaluator never holds deploys."""
    if snapshot is None:
        return GateResult(
            name="error_budget",
            status=GateStatus.SKIPPED,
            evidence={"why": "no SLO state recorded (pack391_evaluateSlos has not run)"},
        )
    age = (now - snapshot.at).total_seconds()
    if age > t.SLO_ACTIONS_TTL_SEC:
        return GateResult(
            name="error_budget",
            status=GateStatus.SKIPPED,
            evidence={
                "why": f"the SLO state is {int(age)} s old (max {t.SLO_ACTIONS_TTL_SEC}): "
                "the evaluator is not running, so no freeze holds",
                "stateAt": snapshot.at.isoformat(),
            },
        )
    state = snapshot.actions.get(SloAction.DEPLOY_FREEZE)
    release = {PLATFORM_SCOPE, *scopes}
    burning = sorted(s for s in (state.scopes if state else []) if s in release)
    evidence: dict[str, Any] = {
        "action": SloAction.DEPLOY_FREEZE.value,
        "mode": state.mode.value if state else ActionMode.OFF.value,
        "wanted": bool(state and state.wanted),
        "enforced": bool(state and state.enforced),
        "burningScopes": list(state.scopes) if state else [],
        "releaseScopes": sorted(release),
        "services": list(services),
        "stateAt": snapshot.at.isoformat(),
    }
    if state is not None:
        evidence["reason"] = state.reason
        if state.lifted_until is not None:
            evidence["liftedUntil"] = state.lifted_until.isoformat()
    if burning and snapshot.enforced(SloAction.DEPLOY_FREEZE) is not None:
        evidence["frozenBy"] = burning
        return GateResult(name="error_budget", status=GateStatus.FAIL, evidence=evidence)
    if burning and snapshot.shadowed(SloAction.DEPLOY_FREEZE) is not None:
        evidence["wouldRefuse"] = True
        evidence["detail"] = (
            f"would have refused (deploy freeze in shadow mode): {', '.join(burning)} "
            "burning its error budget"
        )
    return GateResult(name="error_budget", status=GateStatus.PASS, evidence=evidence)
