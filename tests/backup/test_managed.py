"""The managed backend through the real FirestoreAdminClient (REST transport) against
the local fake of the Admin API, with the catalog in the Firestore emulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.backup.adapters import BackupCatalog, ManagedBackupStore, admin_client
from functions.backup.archive import BackupIntegrityError
from functions.backup.service import BackupService
from shared.audit import Change
from shared.errors import InvalidInput
from shared.firestore import get_db
from shared.models.backup import BackupBackend, BackupStatus, CheckStatus, RestoreDrillRequest
from shared.thresholds import BACKUP_REGIONS
from tests.conftest import PROJECT, Backends
from tests.fakes.firestore_admin import FakeFirestoreAdmin, serve

BUCKETS = {region: f"gs://avalo-backups-{region}" for region in BACKUP_REGIONS}
NOW = datetime(2026, 11, 27, 21, 0, 7, 250000, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeFirestoreAdmin]:
    yield from serve(PROJECT)


@pytest.fixture
def store(fake: FakeFirestoreAdmin) -> ManagedBackupStore:
    return ManagedBackupStore(
        admin_client(fake.url), PROJECT, BUCKETS, kms_key="projects/p/locations/l/keyRings/r/k"
    )


@pytest.fixture
def service(store: ManagedBackupStore, backends: Backends) -> BackupService:
    return BackupService(store, BackupCatalog(get_db()))


def test_backup_exports_a_minute_aligned_snapshot_into_each_regional_bucket(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    record = service.backup(NOW)
    exports = [r for r in fake.requests if r.path.endswith(":exportDocuments")]
    assert [r.path for r in exports] == [
        f"v1/projects/{PROJECT}/databases/(default):exportDocuments"
    ] * 3
    assert [r.body["outputUriPrefix"] for r in exports] == [
        f"{BUCKETS[region]}/{record.backup_id}" for region in BACKUP_REGIONS
    ]
    assert {r.body["snapshotTime"] for r in exports} == {"2026-11-27T21:00:00Z"}
    assert record.status is BackupStatus.COMPLETE
    assert record.backend is BackupBackend.MANAGED
    assert record.document_count == 1234 and record.size_bytes == 56789
    assert record.key_id == "projects/p/locations/l/keyRings/r/k"
    assert set(record.operations) == set(BACKUP_REGIONS)
    stored = BackupCatalog(get_db()).get(record.backup_id)
    assert stored is not None and stored.status is BackupStatus.COMPLETE


def test_verify_reads_each_export_and_pitr_and_passes(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    service.backup(NOW)
    report = service.verify(NOW + timedelta(minutes=30), "v1")
    assert report.ok, report.checks
    assert {c.name for c in report.checks} == {
        *(f"fresh:{r}" for r in BACKUP_REGIONS),
        *(f"readable:{r}" for r in BACKUP_REGIONS),
        "pitr",
        "retention",
    }
    assert report.measured_rpo_sec == 7.25 + 0.0  # seconds since the last whole minute
    assert any(r.path.endswith("databases/(default)") and r.method == "GET" for r in fake.requests)
    assert not list(get_db().collection("pack391_backup_alerts").stream())


def test_pitr_disabled_and_stale_backups_raise_an_alert(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    service.backup(NOW)
    fake.pitr_enabled = False
    fake.databases["(default)"] = fake._database("(default)")
    report = service.verify(NOW + timedelta(hours=2), "v2")
    assert not report.ok
    broken = {c.name for c in report.checks if c.status is CheckStatus.BROKEN}
    assert broken == {"pitr", *(f"fresh:{r}" for r in BACKUP_REGIONS)}
    assert report.measured_rpo_sec == 2 * 3600 + 7.25
    alerts = [a.to_dict() or {} for a in get_db().collection("pack391_backup_alerts").stream()]
    assert len(alerts) == 1 and alerts[0]["verificationId"] == "v2"
    assert any("disabled" in p for p in alerts[0]["problems"])
    shared = get_db().collection("pack391_alerts").document("backup_v2").get().to_dict() or {}
    assert (shared["source"], shared["severity"], shared["status"]) == ("backup", "high", "open")
    assert shared["evidence"]["problems"] == alerts[0]["problems"]


def test_failed_export_is_recorded_failed(service: BackupService, fake: FakeFirestoreAdmin) -> None:
    fake.export_fails = True
    with pytest.raises(Exception, match="export failed"):
        service.backup(NOW)
    records = BackupCatalog(get_db()).all()
    assert [r.status for r in records] == [BackupStatus.FAILED]


def test_verify_names_a_failed_export(store: ManagedBackupStore, fake: FakeFirestoreAdmin) -> None:
    from shared.models.backup import BackupRecord

    fake.export_fails = True
    op = store._admin.export_documents(
        request={"name": f"projects/{PROJECT}/databases/(default)", "output_uri_prefix": "gs://x/y"}
    )
    record = BackupRecord(
        backup_id="20261127T210000Z-aaaaaa",
        backend=BackupBackend.MANAGED,
        status=BackupStatus.COMPLETE,
        snapshot_time=NOW,
        started_at=NOW,
        operations={"us-central1": op.operation.name},
    )
    with pytest.raises(BackupIntegrityError, match="failed"):
        store.verify(record, "us-central1")


def test_drill_clones_from_pitr_checks_and_deletes(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    backup = service.backup(NOW)
    change = Change("admin-1", "backup.restore_drill", "quarterly drill", "req-1", NOW)
    drill = service.drill(RestoreDrillRequest(), change, "req-0000ab")
    clone = next(r for r in fake.requests if r.path.endswith("databases:clone"))
    assert clone.body == {
        "databaseId": "drill-0000ab",
        "pitrSnapshot": {
            "database": f"projects/{PROJECT}/databases/(default)",
            "snapshotTime": "2026-11-27T21:00:00Z",
        },
    }
    assert fake.requests[-1].method == "DELETE"
    assert fake.requests[-1].path.endswith("databases/drill-0000ab")
    assert "drill-0000ab" not in fake.databases
    assert drill.ok and drill.cleaned_up and drill.within_rto
    assert drill.source == backup.backup_id
    audit = [a.to_dict() or {} for a in get_db().collection("pack391_audit_log").stream()]
    assert [a["action"] for a in audit] == ["backup.restore_drill"]


def test_drill_at_a_point_in_time(service: BackupService, fake: FakeFirestoreAdmin) -> None:
    when = datetime(2026, 11, 27, 20, 41, 59, tzinfo=UTC)
    change = Change("admin-1", "backup.restore_drill", None, "req-2", NOW)
    drill = service.drill(
        RestoreDrillRequest.model_validate({"pointInTime": when}), change, "req-0000cd"
    )
    clone = next(r for r in fake.requests if r.path.endswith("databases:clone"))
    assert clone.body["pitrSnapshot"]["snapshotTime"] == "2026-11-27T20:41:00Z"
    assert drill.ok and drill.source.startswith("pitr:2026-11-27T20:41:59")


def test_drill_outside_what_firestore_keeps_is_invalid_argument(
    service: BackupService, fake: FakeFirestoreAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the 7-day window by the policy, but Firestore keeps less (PITR off: 1 hour)."""
    handle = fake.handle

    def refuse_clone(method: str, path: str, body: dict[str, Any]) -> tuple[Any, int]:
        if path.endswith("databases:clone"):
            message = "snapshot_time is earlier than earliest_version_time"
            return {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}, 400
        return handle(method, path, body)

    monkeypatch.setattr(fake, "handle", refuse_clone)
    change = Change("admin-1", "backup.restore_drill", None, "req-3", NOW)
    request = RestoreDrillRequest.model_validate({"pointInTime": NOW - timedelta(days=2)})
    with pytest.raises(InvalidInput) as caught:
        service.drill(request, change, "req-0000ef")
    assert caught.value.field == "pointInTime"
    assert "earliest_version_time" in caught.value.message
