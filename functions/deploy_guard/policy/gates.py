"""The pre-deploy gates, pure: each a verdict on what the service read (registry, probes,
counts), and whether a report lets a deployment start.

The six gates: :func:`system_health_gate`, :func:`payment_gate`, :func:`token_gate`,
:func:`auth_gate`, :func:`index_gate`, :func:`endpoint_gate` (the service reads and
probes, these decide); :func:`gates_passed`, :func:`report_usable`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared import thresholds as t
from shared.models.deploy import GateResult, GateStatus, ValidationReport
from shared.models.scaling import IsolationState, ServiceDoc


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
