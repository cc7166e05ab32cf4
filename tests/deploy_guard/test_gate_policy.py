"""The six pre-deploy gate verdicts: literal tables, no I/O (one table per gate)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from functions.deploy_guard.policy.gates import (
    PAYMENT_SERVICE,
    auth_gate,
    auth_window_start,
    endpoint_gate,
    index_gate,
    payment_gate,
    services_to_probe,
    stuck_payout_cutoff,
    system_health_gate,
    token_gate,
)
from shared.gcp.probe import ProbeResult
from shared.models.deploy import GateStatus
from shared.models.scaling import IsolationState, ServiceConfig, ServiceDoc, ServiceState

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PASS, FAIL, SKIPPED = GateStatus.PASS, GateStatus.FAIL, GateStatus.SKIPPED
OPEN, HALF = IsolationState.OPEN, IsolationState.HALF_OPEN


def svc(
    sid: str, url: str | None = "http://h/health", isolation: IsolationState = IsolationState.NONE
) -> ServiceDoc:
    cfg = ServiceConfig(
        service_id=sid,
        initial_instances=1,
        min_instances=1,
        max_instances=5,
        cloud_run_service=sid,
        region="us-central1",
        health_url=url,
    )
    return ServiceDoc(config=cfg, state=ServiceState(current_instances=1, isolation=isolation))


PAY = PAYMENT_SERVICE


@pytest.mark.parametrize(
    ("services", "to_probe"),
    [
        ([], []),
        ([svc("a"), svc("b", url=None), svc("c", isolation=OPEN)], ["a"]),
        ([svc("a", isolation=HALF), svc("b")], ["b"]),
    ],
)
def test_services_to_probe(services: list[ServiceDoc], to_probe: list[str]) -> None:
    assert [d.config.service_id for d in services_to_probe(services)] == to_probe


@pytest.mark.parametrize(
    ("services", "probes", "status", "unhealthy"),
    [
        ([], {}, SKIPPED, None),
        ([svc("a"), svc("b")], {"a": True, "b": True}, PASS, []),
        ([svc("a"), svc("b", url=None)], {"a": True}, PASS, []),  # no URL: not probed
        ([svc("a"), svc("b")], {"a": True, "b": False}, FAIL, ["b"]),
        ([svc("b", isolation=OPEN), svc("a")], {"a": False}, FAIL, ["a", "b"]),
        ([svc("a", isolation=HALF)], {}, FAIL, ["a"]),  # half open is still isolated
    ],
)
def test_system_health_gate(
    services: list[ServiceDoc],
    probes: dict[str, bool],
    status: GateStatus,
    unhealthy: list[str] | None,
) -> None:
    gate = system_health_gate(services, probes)
    assert gate.name == "system_health"
    assert gate.status == status
    assert gate.evidence.get("unhealthy") == unhealthy


MAX_STUCK = 0  # thresholds.DEPLOY_STUCK_PAYOUT_MAX_COUNT, restated: the table is literal


@pytest.mark.parametrize(
    ("services", "probes", "stuck", "status", "processor"),
    [
        ([], {}, 0, PASS, "not registered"),
        ([], {}, MAX_STUCK + 1, FAIL, "not registered"),  # one over the limit
        ([svc(PAY)], {PAY: True}, MAX_STUCK, PASS, "healthy"),  # at the limit
        ([svc(PAY)], {PAY: True}, MAX_STUCK + 1, FAIL, "healthy"),
        ([svc(PAY)], {PAY: False}, 0, FAIL, "down"),
        ([svc(PAY, isolation=OPEN)], {}, 0, FAIL, "isolated"),
        ([svc(PAY, url=None)], {}, 0, PASS, "healthy"),
        ([svc("other")], {"other": False}, 0, PASS, "not registered"),  # only the processor
    ],
)
def test_payment_gate(
    services: list[ServiceDoc],
    probes: dict[str, bool],
    stuck: int,
    status: GateStatus,
    processor: str,
) -> None:
    gate = payment_gate(services, probes, stuck)
    assert (gate.name, gate.status) == ("payment_system", status)
    assert gate.evidence == {"processor": processor, "stuckPayouts": stuck, "maxStuck": MAX_STUCK}


BAD = {"wallet": "w1", "balance": 10, "ledgerSum": 9}


@pytest.mark.parametrize(
    ("checked", "mismatches", "status"),
    [
        (0, [], SKIPPED),
        (1, [], PASS),
        (50, [], PASS),
        (1, [BAD], FAIL),
        (50, [BAD], FAIL),
    ],
)
def test_token_gate(checked: int, mismatches: list[dict[str, Any]], status: GateStatus) -> None:
    gate = token_gate(checked, mismatches)
    assert (gate.name, gate.status) == ("token_system", status)
    if status is not SKIPPED:
        assert gate.evidence == {"walletsChecked": checked, "mismatches": mismatches}


@pytest.mark.parametrize(
    ("failed", "total", "status", "rate"),
    [
        (0, 0, SKIPPED, None),
        (0, 100, PASS, 0.0),
        (3, 100, PASS, 3.0),  # exactly the 3 % limit: not over it
        (31, 1000, FAIL, 3.1),  # just over
        (1, 1, FAIL, 100.0),
        (2, 3, FAIL, 66.667),
    ],
)
def test_auth_gate(failed: int, total: int, status: GateStatus, rate: float | None) -> None:
    gate = auth_gate(failed, total)
    assert (gate.name, gate.status) == ("auth_system", status)
    assert gate.evidence.get("failureRatePct") == rate


@pytest.mark.parametrize(
    ("declared", "missing", "status"),
    [
        (12, None, SKIPPED),  # the emulator
        (12, [], PASS),
        (0, [], PASS),
        (12, ["pack391_deployments(environment ASCENDING,createdAt DESCENDING)"], FAIL),
    ],
)
def test_index_gate(declared: int, missing: list[str] | None, status: GateStatus) -> None:
    gate = index_gate(declared, missing)
    assert (gate.name, gate.status) == ("database_indexes", status)
    assert gate.evidence["declared"] == declared
    assert gate.evidence.get("missing") == missing


UP = ProbeResult(True, 200, 12.34)
DOWN_5XX = ProbeResult(False, 503, 40.0)
NO_ANSWER = ProbeResult(False, None, 5000.0, "TimeoutError: timed out")


@pytest.mark.parametrize(
    ("probes", "status"),
    [
        ({}, SKIPPED),
        ({"http://a/": UP}, PASS),
        ({"http://a/": UP, "http://b/": UP}, PASS),
        ({"http://a/": UP, "http://b/": DOWN_5XX}, FAIL),
        ({"http://a/": NO_ANSWER}, FAIL),
    ],
)
def test_endpoint_gate(probes: dict[str, ProbeResult], status: GateStatus) -> None:
    gate = endpoint_gate(probes)
    assert (gate.name, gate.status) == ("api_endpoints", status)
    if probes:
        assert set(gate.evidence["probes"]) == set(probes)


def test_endpoint_gate_evidence_rounds_the_time() -> None:
    gate = endpoint_gate({"http://a/": UP, "http://c/": NO_ANSWER})
    assert gate.evidence["probes"] == {
        "http://a/": {"ok": True, "status": 200, "ms": 12.3, "error": None},
        "http://c/": {
            "ok": False,
            "status": None,
            "ms": 5000.0,
            "error": "TimeoutError: timed out",
        },
    }


@pytest.mark.parametrize(
    ("now", "cutoff", "auth_start"),
    [
        (
            NOW,
            datetime(2026, 11, 27, 11, 0, tzinfo=UTC),
            datetime(2026, 11, 27, 11, 45, tzinfo=UTC),
        ),
    ],
)
def test_gate_windows(now: datetime, cutoff: datetime, auth_start: datetime) -> None:
    assert stuck_payout_cutoff(now) == cutoff
    assert auth_window_start(now) == auth_start
