"""A drill's verdict and alert from the data gates on its restored copy (literal tables,
no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from functions.backup import policy
from shared.alerts.policy import AlertResolve, AlertSpec
from shared.models.backup import BackupBackend, DrillGate, DrillRecord, DrillVerdict
from shared.models.deploy import GateStatus

PASS, FAIL, SKIPPED = GateStatus.PASS, GateStatus.FAIL, GateStatus.SKIPPED
MOMENT = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)


def gate(name: str, status: GateStatus, value: float | None = None) -> DrillGate:
    return DrillGate(
        name=name,
        status=status,
        value=value,
        threshold=5.0,
        unit="%",
        database="drill-t",
        detail="no payouts in the window" if value is None else "",
    )


@pytest.mark.parametrize(
    ("restored", "gates", "verdict"),
    [
        (True, [], DrillVerdict.PASSED),
        (True, [gate("a", PASS, 1.0), gate("b", SKIPPED)], DrillVerdict.PASSED),
        (True, [gate("a", PASS, 1.0), gate("b", FAIL, 9.0)], DrillVerdict.DATA_GATES_FAILED),
        (False, [gate("a", FAIL, 9.0)], DrillVerdict.RESTORE_FAILED),
        (False, [], DrillVerdict.RESTORE_FAILED),
    ],
)
def test_drill_verdict(restored: bool, gates: list[DrillGate], verdict: DrillVerdict) -> None:
    assert policy.drill_verdict(restored, gates) is verdict


@pytest.mark.parametrize(
    ("g", "line"),
    [
        (gate("payout_anomalies", FAIL, 20.0), "payout_anomalies fail: 20% > 5%"),
        (gate("payout_anomalies", PASS, 2.5), "payout_anomalies pass: 2.5% <= 5%"),
        (gate("payout_anomalies", SKIPPED), "payout_anomalies skipped: no payouts in the window"),
        (
            DrillGate(
                name="database_indexes",
                status=FAIL,
                value=3,
                threshold=0,
                unit="indexes",
                database="d",
            ),
            "database_indexes fail: 3 indexes > 0 indexes",
        ),
    ],
)
def test_gate_line(g: DrillGate, line: str) -> None:
    assert policy.gate_line(g) == line


def test_gates_summary() -> None:
    assert policy.gates_summary([], None) == "data gates: not run"
    assert policy.gates_summary([gate("a", PASS, 1.0)], MOMENT) == (
        "data gates at 2026-11-27T21:00:00+00:00: a pass: 1% <= 5%"
    )


def drill(verdict: DrillVerdict, gates: list[DrillGate]) -> DrillRecord:
    return DrillRecord(
        drill_id="drill-1",
        at=MOMENT,
        backend=BackupBackend.LOGICAL,
        source="20261127T210000Z-abcdef",
        target="projects/p/databases/drill-t",
        ok=verdict is DrillVerdict.PASSED,
        documents=10,
        duration_sec=1.0,
        docs_per_sec=10.0,
        rto_target_sec=900,
        within_rto=True,
        cleaned_up=True,
        detail="",
        requested_by="admin-1",
        verdict=verdict,
        data_moment=MOMENT,
        gates=gates,
    )


def test_a_failing_gate_raises_the_drill_alert_and_a_passing_drill_resolves_it() -> None:
    (raised,) = policy.drill_alerts(
        drill(DrillVerdict.DATA_GATES_FAILED, [gate("p", FAIL, 20.0), gate("q", PASS, 1.0)])
    )
    assert isinstance(raised, AlertSpec)
    assert raised.dedup_key == policy.DRILL_GATES_ALERT_KEY
    assert raised.kind == "backup_drill_data_gates_failed"
    assert "p fail: 20% > 5%" in raised.title and "q pass" not in raised.title
    assert [f["name"] for f in raised.evidence["failed"]] == ["p"]
    assert raised.evidence["dataMoment"] == "2026-11-27T21:00:00.000000Z"
    (resolved,) = policy.drill_alerts(drill(DrillVerdict.PASSED, [gate("p", PASS, 1.0)]))
    assert isinstance(resolved, AlertResolve)
    assert resolved.dedup_key == policy.DRILL_GATES_ALERT_KEY
    # a failed restore judged no data: the alert is neither raised nor resolved
    assert policy.drill_alerts(drill(DrillVerdict.RESTORE_FAILED, [])) == []


def test_an_unchecked_copy_is_a_failed_gate() -> None:
    g = policy.unchecked_gate("drill-t", "boom")
    assert (g.name, g.status, g.database) == ("data_gates", FAIL, "drill-t")
    assert policy.drill_verdict(True, [g]) is DrillVerdict.DATA_GATES_FAILED
