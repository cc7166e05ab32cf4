"""The managed backend through the real FirestoreAdminClient (REST transport) against
the local fake of the Admin API, with the catalog in the Firestore emulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.backup.archive import BackupIntegrityError
from functions.backup.catalog import BackupCatalog
from functions.backup.documents import FirestoreDocuments
from functions.backup.managed_store import ManagedBackupStore
from functions.backup.service import BackupService
from functions.backup.wiring import admin_client
from shared.audit import Change
from shared.errors import InvalidInput
from shared.firestore import get_db
from shared.models.backup import BackupBackend, BackupStatus, CheckStatus, RestoreDrillRequest
from shared.thresholds import BACKUP_REGIONS
from tests.backup.alert_helpers import alert_problems, backup_alerts
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
        admin_client(fake.url),
        PROJECT,
        BUCKETS,
        kms_key="projects/p/locations/l/keyRings/r/k",
        timeout_sec=2.0,
    )


DRILL_CLONE = r"drill-[0-9a-f]{12}"
"""A drill's clone: named from the server's random source only."""


@pytest.fixture
def real_clones(fake: FakeFirestoreAdmin, backends: Backends) -> FirestoreDocuments:
    """Clones hold real documents: the fake copies the emulator's database into the
    clone's database id (in the emulator), and wipes it when the clone is deleted."""
    source = FirestoreDocuments.for_environment(PROJECT)

    def clone(target: str) -> None:
        copy = source.with_database(target)
        for page in source.pages(None, None, 500):
            writes = [
                {
                    "update": {
                        "name": copy.documents_path + "/" + source.relative(d["name"]),
                        "fields": d.get("fields", {}),
                    }
                }
                for d in page
            ]
            copy.commit(writes)

    def delete(target: str) -> None:
        source.with_database(target).delete_everything()

    fake.on_clone = clone
    fake.on_delete = delete
    return source


def seed_orders(count: int) -> None:
    batch = get_db().batch()
    for i in range(count):
        order = get_db().document(f"orders/o{i}")
        batch.set(order, {"i": i})
        batch.set(order.collection("lines").document("l0"), {"sku": "x"})
    batch.commit()


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
    assert backup_alerts() == {}


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
    alerts = backup_alerts()
    assert set(alerts) == broken  # one alert per broken promise
    assert {(a["severity"], a["status"]) for _, a in alerts.values()} == {("high", "open")}
    assert any("disabled" in p for p in alert_problems("v2"))
    assert alerts["pitr"][1]["dedupKey"] == "backup:promise:pitr"


def test_a_broken_promise_alert_resolves_when_verification_passes_again(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    service.backup(NOW)
    fake.pitr_enabled = False
    fake.databases["(default)"] = fake._database("(default)")
    assert not service.verify(NOW + timedelta(minutes=30), "v-fail").ok
    ((pitr_id, pitr),) = [(i, a) for i, a in backup_alerts().values() if a["status"] == "open"]
    assert pitr["evidence"]["check"] == "pitr"
    assert not service.verify(NOW + timedelta(minutes=40), "v-fail-2").ok  # still broken
    assert backup_alerts()["pitr"][0] == pitr_id  # the same alert, updated
    assert backup_alerts()["pitr"][1]["occurrences"] == 2
    fake.pitr_enabled = True
    fake.databases["(default)"] = fake._database("(default)")
    assert service.verify(NOW + timedelta(minutes=50), "v-pass").ok
    same_id, resolved = backup_alerts()["pitr"]
    assert (same_id, resolved["status"], resolved["resolvedBy"]) == (pitr_id, "resolved", "system")
    assert resolved["resolution"].startswith("verification v-pass: ")


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


def test_drill_clones_from_pitr_counts_the_clone_and_deletes(
    service: BackupService, fake: FakeFirestoreAdmin, real_clones: FirestoreDocuments
) -> None:
    seed_orders(7)
    # 14 orders and lines, and the catalog's entry (the fake clones "now", not the minute)
    fake.export_documents = 15
    backup = service.backup(NOW)
    change = Change("admin-1", "backup.restore_drill", "quarterly drill", "req-1", NOW)
    drill = service.drill(RestoreDrillRequest(), change)
    clone = next(r for r in fake.requests if r.path.endswith("databases:clone"))
    target_id = clone.body["databaseId"]
    assert re.fullmatch(DRILL_CLONE, target_id)
    assert clone.body["pitrSnapshot"] == {
        "database": f"projects/{PROJECT}/databases/(default)",
        "snapshotTime": "2026-11-27T21:00:00Z",
    }
    deletes = [r for r in fake.requests if r.method == "DELETE"]
    assert [r.path for r in deletes] == [f"v1/projects/{PROJECT}/databases/{target_id}"]
    assert target_id not in fake.databases
    assert real_clones.with_database(target_id).is_empty()
    assert drill.ok and drill.cleaned_up and drill.within_rto
    assert drill.documents == 15 and "counted 15 documents" in drill.detail
    assert drill.source == backup.backup_id
    assert drill.target == f"projects/{PROJECT}/databases/{target_id}"
    audit = [a.to_dict() or {} for a in get_db().collection("pack391_audit_log").stream()]
    assert [a["action"] for a in audit] == ["backup.restore_drill"]


def test_drill_at_a_point_in_time(service: BackupService, fake: FakeFirestoreAdmin) -> None:
    when = datetime(2026, 11, 27, 20, 41, 59, tzinfo=UTC)
    change = Change("admin-1", "backup.restore_drill", None, "req-2", NOW)
    drill = service.drill(RestoreDrillRequest.model_validate({"pointInTime": when}), change)
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
        service.drill(request, change)
    assert caught.value.field == "pointInTime"
    assert "earliest_version_time" in caught.value.message


# --------------------------------------------- API errors and drills that go wrong


def test_admin_api_errors_mid_verify_are_reported_with_an_alert(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    """get_operation and get_database answer 403: every check still gets a verdict,
    the report and the alert are written (before, the first error aborted the run)."""
    service.backup(NOW)
    fake.errors.update(get_operation=403, get_database=403)
    report = service.verify(NOW + timedelta(minutes=30), "v-api")
    checks = {c.name: c for c in report.checks}
    for region in BACKUP_REGIONS:
        assert checks[f"readable:{region}"].status is CheckStatus.BROKEN
        assert "Forbidden: 403" in checks[f"readable:{region}"].detail
        assert checks[f"fresh:{region}"].status is CheckStatus.OK
    assert checks["pitr"].status is CheckStatus.BROKEN
    assert "cannot read the setting" in checks["pitr"].detail
    assert not report.ok
    assert len(alert_problems("v-api")) == 4


def test_a_drill_that_times_out_deletes_its_clone_and_says_so(
    service: BackupService, fake: FakeFirestoreAdmin, real_clones: FirestoreDocuments
) -> None:
    """The clone never finishes: the drill is recorded failed, the clone operation is
    cancelled and the database deleted in ``finally`` (before: TimeoutError, a full
    production clone left behind, no record)."""
    service.backup(NOW)
    fake.clone_pending = True
    change = Change("admin-1", "backup.restore_drill", None, "req-4", NOW)
    drill = service.drill(RestoreDrillRequest(), change)
    target_id = drill.target.rsplit("/", 1)[-1]
    assert re.fullmatch(DRILL_CLONE, target_id)
    assert not drill.ok and not drill.within_rto
    assert "TimeoutError" in drill.detail
    assert drill.cleaned_up and f"deleted {drill.target}" in drill.detail
    assert any(r.path.endswith(":cancel") for r in fake.requests)
    assert target_id not in fake.databases
    assert real_clones.with_database(target_id).is_empty()
    stored = get_db().collection("pack391_backup_drills").document(drill.drill_id).get()
    assert (stored.to_dict() or {})["cleanedUp"] is True


def test_a_drill_whose_cleanup_fails_records_it(
    service: BackupService, fake: FakeFirestoreAdmin, real_clones: FirestoreDocuments
) -> None:
    service.backup(NOW)
    fake.errors["delete_database"] = 403
    change = Change("admin-1", "backup.restore_drill", None, "req-5", NOW)
    drill = service.drill(RestoreDrillRequest(), change)
    target_id = drill.target.rsplit("/", 1)[-1]
    assert drill.cleaned_up is False
    assert "delete failed" in drill.detail and "still exists" in drill.detail
    assert target_id in fake.databases  # really left behind, and the record says so
    stored = get_db().collection("pack391_backup_drills").document(drill.drill_id).get()
    assert (stored.to_dict() or {})["cleanedUp"] is False


def test_a_drill_counts_the_clone_instead_of_copying_the_catalog(
    service: BackupService, fake: FakeFirestoreAdmin, real_clones: FirestoreDocuments
) -> None:
    seed_orders(3)  # the clone holds 6 documents and the catalog entry ...
    backup = service.backup(NOW)  # ... while the export reported 1234
    assert backup.document_count == 1234
    change = Change("admin-1", "backup.restore_drill", None, "req-6", NOW)
    drill = service.drill(RestoreDrillRequest(), change)
    assert drill.documents == 7
    assert not drill.ok and "differs from the backup's 1234" in drill.detail
    assert drill.cleaned_up


def test_drill_ids_and_clone_names_never_come_from_the_request(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    """Two drills carrying the same caller-chosen trace id: two records, two clones,
    both named from the server's random source (before, the second overwrote the first
    record and reused, then deleted, a clone name the caller chose)."""
    service.backup(NOW)
    chosen = "0123456789abcdef0123456789prod"
    first = service.drill(RestoreDrillRequest(), Change("admin-1", "d", None, chosen, NOW))
    second = service.drill(RestoreDrillRequest(), Change("admin-1", "d", None, chosen, NOW))
    assert first.drill_id != second.drill_id
    clones = [r.body["databaseId"] for r in fake.requests if r.path.endswith("databases:clone")]
    assert len(set(clones)) == 2
    for drill_id, clone in zip((first.drill_id, second.drill_id), clones, strict=True):
        assert re.fullmatch(r"drill-\d{8}T\d{6}Z-[0-9a-f]{12}", drill_id)
        assert re.fullmatch(DRILL_CLONE, clone) and "prod" not in clone
        assert drill_id.endswith(clone.removeprefix("drill-"))
    drills = list(get_db().collection("pack391_backup_drills").stream())
    assert len(drills) == 2
