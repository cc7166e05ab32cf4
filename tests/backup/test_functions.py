"""The four backup functions through the callable and scheduler protocols, on the
local stack's wiring (logical backend, emulator, params from the environment)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared import collections
from shared.firestore import get_db
from shared.thresholds import BACKUP_REGIONS, RTO_SEC
from tests.backup.alert_helpers import alert_problems
from tests.conftest import Backends, Caller

STATUS = "pack391_getBackupStatus"
DRILL = "pack391_restoreDrill"


def run_scheduled(caller: Caller, name: str) -> int:
    return caller.trigger(name)


@pytest.mark.parametrize(("name", "role_needed"), [(STATUS, "ops"), (DRILL, "admin")])
def test_roles(caller: Caller, configured: Path, name: str, role_needed: str) -> None:
    none = caller.call(name, {}, role=None)
    assert (none.status, none.error["status"]) == (401, "UNAUTHENTICATED")
    user = caller.call(name, {}, role="user")
    assert (user.status, user.error["status"]) == (403, "PERMISSION_DENIED")
    ops = caller.call(name, {}, role="ops")
    if role_needed == "ops":
        assert ops.status == 200, ops.body
    else:
        assert ops.error["status"] == "PERMISSION_DENIED"
        admin = caller.call(name, {}, role="admin")
        # Signed in with the right role; no backup exists yet to drill on.
        assert admin.error["status"] == "FAILED_PRECONDITION", admin.body


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"backupId": "latest"}, "backupId"),
        ({"backupId": 7}, "backupId"),
        ({"region": "mars-north1"}, "region"),
        ({"pointInTime": "yesterday"}, "pointInTime"),
        ({"pointInTime": "2026-01-01T00:00:00"}, "pointInTime"),
        ({"reason": ""}, "reason"),
        ({"target": "prod"}, "target"),
    ],
)
def test_drill_input_is_validated(
    caller: Caller, configured: Path, data: dict[str, Any], field: str
) -> None:
    res = caller.call(DRILL, data)
    assert (res.status, res.error["status"]) == (400, "INVALID_ARGUMENT")
    assert res.error["details"]["field"] == field


def test_drill_point_in_time_in_the_future_is_invalid(caller: Caller, configured: Path) -> None:
    res = caller.call(DRILL, {"pointInTime": "2999-01-01T00:00:00Z"})
    assert (res.status, res.error["details"]["field"]) == (400, "pointInTime")


@pytest.mark.parametrize("age", [timedelta(days=8), timedelta(days=365 * 30)])
def test_drill_point_in_time_beyond_pitr_retention_is_invalid(
    caller: Caller, configured: Path, age: timedelta
) -> None:
    when = (datetime.now(UTC) - age).isoformat()
    res = caller.call(DRILL, {"pointInTime": when})
    assert (res.status, res.error["status"], res.error["details"]["field"]) == (
        400,
        "INVALID_ARGUMENT",
        "pointInTime",
    )
    assert "7-day point-in-time recovery window" in res.error["message"]


def test_drill_point_in_time_needs_the_managed_backend(caller: Caller, configured: Path) -> None:
    when = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    res = caller.call(DRILL, {"pointInTime": when})
    assert (res.error["status"], res.error["details"]["field"]) == (
        "FAILED_PRECONDITION",
        "pointInTime",
    )


def test_status_rejects_unknown_fields(caller: Caller, configured: Path) -> None:
    res = caller.call(STATUS, {"region": "us-central1"}, role="ops")
    assert res.error["details"]["field"] == "region"


def test_backup_verify_status_and_drill_end_to_end(caller: Caller, configured: Path) -> None:
    db = get_db()
    for u in range(30):
        user = db.collection("users").document(f"u{u}")
        user.set({"n": u})
        user.collection("sessions").document("s").set({"open": True})

    assert run_scheduled(caller, "pack391_backupFirestore") == 200
    for region in BACKUP_REGIONS:
        copies = list((configured / region).iterdir())
        assert len(copies) == 1 and (copies[0] / "manifest.json").is_file()

    status = caller.call(STATUS, {}, role="ops").result
    assert status["backend"] == "logical"
    latest = status["latestPerRegion"]
    assert set(latest) == set(BACKUP_REGIONS)
    assert {v["documentCount"] for v in latest.values()} == {60}
    assert all(v["sizeBytes"] > 0 for v in latest.values())
    assert status["recent"][0]["collectionCounts"] == {"users": 60}
    assert status["lastDrill"] is None and status["lastVerification"] is None

    assert run_scheduled(caller, "pack391_verifyBackups") == 200
    report = caller.call(STATUS, {}, role="ops").result["lastVerification"]
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert all(checks[f"fresh:{r}"] == "ok" for r in BACKUP_REGIONS)
    assert all(checks[f"readable:{r}"] == "ok" for r in BACKUP_REGIONS)
    assert checks["retention"] == "ok"
    # The emulator has no point-in-time recovery: that promise is reported broken.
    assert checks["pitr"] == "broken" and report["ok"] is False
    problems = alert_problems(report["verificationId"])
    assert len(problems) == 1 and problems[0].startswith("pitr:")
    assert 0 <= report["measuredRpoSec"] < 60

    drill = caller.call(DRILL, {"region": "asia-northeast1", "reason": "monthly drill"}).result
    assert drill["ok"] and drill["cleanedUp"] and drill["withinRto"]
    assert drill["documents"] == 60 and drill["rtoTargetSec"] == RTO_SEC
    assert drill["target"].endswith("/databases/drill-fn")
    status = caller.call(STATUS, {}, role="ops").result
    assert status["lastDrillRtoSec"] == drill["durationSec"]
    audit = [a.to_dict() or {} for a in db.collection(collections.AUDIT_LOG).stream()]
    assert [(a["action"], a["actorUid"], a["reason"]) for a in audit] == [
        ("backup.restore_drill", "admin-1", "monthly drill")
    ]


def test_tampered_backup_fails_verification_and_the_drill(caller: Caller, configured: Path) -> None:
    get_db().document("orders/o1").set({"total": 3})
    assert run_scheduled(caller, "pack391_backupFirestore") == 200
    copy = next((configured / "europe-west1").iterdir())
    part = next((copy / "parts").iterdir())
    part.write_bytes(part.read_bytes()[:-1] + b"\x00")
    assert run_scheduled(caller, "pack391_verifyBackups") == 200
    report = caller.call(STATUS, {}, role="ops").result["lastVerification"]
    readable = {c["name"]: c for c in report["checks"]}["readable:europe-west1"]
    assert readable["status"] == "broken" and part.name in readable["detail"]
    drill = caller.call(DRILL, {"region": "europe-west1"}).result
    assert drill["ok"] is False and part.name in drill["detail"]
    ok = caller.call(DRILL, {"region": "us-central1"}).result
    assert ok["ok"] is True


def test_drill_of_an_unknown_backup_is_not_found(caller: Caller, configured: Path) -> None:
    res = caller.call(DRILL, {"backupId": "20260101T000000Z-abcdef"})
    assert (res.error["status"], res.error["details"]["field"]) == ("NOT_FOUND", "backupId")


def test_scheduler_fires_the_backup_over_http(
    live_server: str, configured: Path, backends: Backends
) -> None:
    from datetime import UTC, datetime

    from stack.platform.scheduler import fire

    get_db().document("orders/o1").set({"total": 3})
    status = fire(
        live_server, backends.project, "us-central1", "pack391_backupFirestore", datetime.now(UTC)
    )
    assert status == 200
    records = [d.to_dict() or {} for d in get_db().collection(collections.BACKUPS).stream()]
    assert [(r["status"], r["documentCount"]) for r in records] == [("complete", 1)]


def test_drill_ids_come_from_the_server_not_the_trace_header(
    caller: Caller, configured: Path
) -> None:
    """``X-Cloud-Trace-Context`` is the caller's to write: two drills sent with the same
    trace id get two records under server-generated ids (the second used to overwrite
    the first, under an id the caller chose)."""
    get_db().document("orders/o1").set({"total": 3})
    assert run_scheduled(caller, "pack391_backupFirestore") == 200
    ids = []
    for _ in range(2):
        response = caller.app.test_client().post(
            caller.url(DRILL),
            json={"data": {"reason": "drill"}},
            headers={
                "Authorization": f"Bearer {caller.token('admin')}",
                "X-Cloud-Trace-Context": "pack391_backup_drills/1;o=1",
            },
        )
        assert response.status_code == 200, response.get_json()
        ids.append(response.get_json()["result"]["drillId"])
    assert ids[0] != ids[1]
    assert all(re.fullmatch(r"drill-\d{8}T\d{6}Z-[0-9a-f]{12}", i) for i in ids)
    stored = {d.id for d in get_db().collection(collections.BACKUP_DRILLS).stream()}
    assert stored == set(ids)


def test_the_export_poll_runs_on_the_logical_wiring_and_has_nothing_to_do(
    caller: Caller, configured: Path
) -> None:
    """The logical backend takes each backup whole inside the hourly function: the poll
    (every 5 minutes, for managed exports) answers 200 and changes nothing."""
    get_db().document("orders/o1").set({"total": 3})
    assert run_scheduled(caller, "pack391_backupFirestore") == 200
    before = [d.to_dict() or {} for d in get_db().collection(collections.BACKUPS).stream()]
    assert run_scheduled(caller, "pack391_pollBackupExports") == 200
    after = [d.to_dict() or {} for d in get_db().collection(collections.BACKUPS).stream()]
    assert after == before and [r["status"] for r in after] == ["complete"]
