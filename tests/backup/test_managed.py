"""The managed backend through the real FirestoreAdminClient (REST transport) and the
real google-cloud-storage client against the local fakes of the Firestore Admin API and
the Cloud Storage JSON API (both asynchronous where Google's are: see their
docstrings), with the catalog and the alerts in the Firestore emulator.

The hourly run starts one export and returns; the poll reads its operation,
copies the finished export into the other regions (``objects.rewrite``), verifies the
copies and marks the backup complete; a retry never starts a second export."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[attr-defined]
from google.cloud.firestore_admin_v1.types import ExportDocumentsMetadata, OperationState
from google.longrunning import operations_pb2  # type: ignore[import-untyped]

from functions.backup.archive import BackupIntegrityError
from functions.backup.documents import FirestoreDocuments
from functions.backup.managed import ManagedBackupStore
from functions.backup.service import BackupService, PollReport
from functions.backup.store import BackupCatalog
from functions.backup.wiring import admin_client
from shared.audit import Change
from shared.errors import InvalidInput
from shared.firestore import get_db
from shared.models.backup import (
    BackupBackend,
    BackupRecord,
    BackupStatus,
    CheckStatus,
    RestoreDrillRequest,
)
from shared.thresholds import (
    BACKUP_EXPORT_DEADLINE_SEC,
    BACKUP_INTERRUPTED_AFTER_SEC,
    BACKUP_REGIONS,
)
from tests.backup.alert_helpers import alert_problems, backup_alerts
from tests.conftest import PROJECT, Backends
from tests.fakes import cloud_storage
from tests.fakes.cloud_storage import FakeCloudStorage
from tests.fakes.firestore_admin import FakeFirestoreAdmin, serve

BUCKETS = {region: f"gs://avalo-backups-{region}" for region in BACKUP_REGIONS}
EXPORT_REGION = BACKUP_REGIONS[0]
NOW = datetime(2026, 11, 27, 21, 0, 7, 250000, tzinfo=UTC)


@pytest.fixture
def gcs() -> Iterator[FakeCloudStorage]:
    yield from cloud_storage.serve()


@pytest.fixture
def fake(gcs: FakeCloudStorage) -> Iterator[FakeFirestoreAdmin]:
    for admin in serve(PROJECT):
        admin.storage = gcs  # a finished export writes its files into the buckets
        yield admin


def storage_client(gcs: FakeCloudStorage) -> storage.Client:
    return storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs.url},
    )


@pytest.fixture
def store(fake: FakeFirestoreAdmin, gcs: FakeCloudStorage) -> ManagedBackupStore:
    return ManagedBackupStore(
        admin_client(fake.url),
        PROJECT,
        BUCKETS,
        kms_key="projects/p/locations/l/keyRings/r/k",
        timeout_sec=2.0,
        storage=storage_client(gcs),
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


def exports_sent(fake: FakeFirestoreAdmin) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.path.endswith(":exportDocuments")]


def exports_started(fake: FakeFirestoreAdmin) -> int:
    """Export operations the fake really started (refused requests start none)."""
    return sum(
        op["metadata"]["@type"].endswith(".ExportDocumentsMetadata")
        for op in fake.operations.values()
    )


def objects_of(gcs: FakeCloudStorage, region: str, backup_id: str) -> dict[str, bytes]:
    bucket = BUCKETS[region].removeprefix("gs://")
    return {
        name.removeprefix(f"{backup_id}/"): data
        for (b, name), data in gcs.objects.items()
        if b == bucket and name.startswith(f"{backup_id}/")
    }


def complete_backup(service: BackupService, now: datetime = NOW) -> BackupRecord:
    """The hour's export started, then polled until the poll completes it."""
    started = service.backup(now)
    for minute in range(5, 60, 5):
        report = service.poll(now + timedelta(minutes=minute), f"poll-{minute}")
        if started.backup_id in report.completed:
            break
    record = BackupCatalog(get_db()).get(started.backup_id)
    assert record is not None and record.status is BackupStatus.COMPLETE, record
    return record


# ------------------------------------------------ the fakes follow the documentation


def test_the_fake_export_is_a_long_running_operation(store: ManagedBackupStore) -> None:
    """exportDocuments "occurs in the background and its progress can be monitored and
    managed via the Operation resource"; the output is usable "only once the associated
    operation is done"
    (https://cloud.google.com/firestore/docs/reference/rest/v1/projects.databases/exportDocuments).
    Its metadata is an ExportDocumentsMetadata with operationState and progress
    (https://cloud.google.com/firestore/docs/reference/rest/Shared.Types/ExportDocumentsMetadata)."""
    admin = store._admin
    started = admin.export_documents(
        request={"name": f"projects/{PROJECT}/databases/(default)", "output_uri_prefix": "gs://b/x"}
    )
    assert started.operation.done is False  # not done when it is started ...
    first = admin.get_operation(operations_pb2.GetOperationRequest(name=started.operation.name))
    assert first.done is False  # ... nor on the first poll
    meta = ExportDocumentsMetadata.deserialize(first.metadata.value)
    assert meta.operation_state == OperationState.PROCESSING
    assert (meta.progress_documents.completed_work, meta.progress_documents.estimated_work) == (
        617,
        1234,
    )
    second = admin.get_operation(operations_pb2.GetOperationRequest(name=started.operation.name))
    meta = ExportDocumentsMetadata.deserialize(second.metadata.value)
    assert second.done and not second.HasField("error")
    assert meta.operation_state == OperationState.SUCCESSFUL
    assert meta.progress_documents.completed_work == 1234 and meta.end_time.year > 2000
    listed = admin.list_operations(
        operations_pb2.ListOperationsRequest(name=f"projects/{PROJECT}/databases/(default)")
    )
    assert [op.name for op in listed.operations] == [started.operation.name]


def test_a_failed_fake_export_has_an_error(
    store: ManagedBackupStore, fake: FakeFirestoreAdmin
) -> None:
    """A finished operation carries either ``response`` or ``error`` (a google.rpc.Status)
    (https://cloud.google.com/firestore/docs/reference/rest/Shared.Types/Operation)."""
    fake.export_fails = True
    fake.export_polls = 1
    name = store.exports.start("20261127T210000Z-aaaaaa", NOW)
    progress = store.exports.progress(name)
    assert (progress.done, progress.state) == (True, "FAILED")
    assert progress.error == "export failed in the fake"
    op = fake.operations[name]
    assert "response" not in op and op["error"]["code"] == 13


def test_the_fake_rewrite_takes_several_calls_with_a_token(gcs: FakeCloudStorage) -> None:
    """objects.rewrite answers done false with a rewriteToken to send back until the copy
    is done (https://cloud.google.com/storage/docs/json_api/v1/objects/rewrite)."""
    gcs.objects[("src", "a/b")] = b"x" * 40
    gcs.rewrite_bytes_per_call = 16
    client = storage_client(gcs)
    source = client.bucket("src").blob("a/b")
    target = client.bucket("dst").blob("c/b")
    progress = []
    token: str | None = None
    while True:
        token, done_bytes, total = target.rewrite(source, token=token)
        progress.append((token is None, done_bytes, total))
        if token is None:
            break
        assert ("dst", "c/b") not in gcs.objects  # written only when done
    assert progress == [(False, 16, 40), (False, 32, 40), (True, 40, 40)]
    assert gcs.objects[("dst", "c/b")] == b"x" * 40


# ----------------------------------------------------------- start, then poll


def test_the_hourly_run_starts_one_export_and_returns_at_once(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    record = service.backup(NOW)
    (export,) = [r for r in fake.requests if r.path.endswith(":exportDocuments")]
    assert export.path == f"v1/projects/{PROJECT}/databases/(default):exportDocuments"
    assert exports_sent(fake) == [
        {
            "outputUriPrefix": f"{BUCKETS[EXPORT_REGION]}/{record.backup_id}",
            "snapshotTime": "2026-11-27T21:00:00Z",
        }
    ]
    assert not [r for r in fake.requests if "/operations/" in r.path]  # never waited on
    assert record.status is BackupStatus.EXPORTING
    assert record.backup_id == "20261127T210000Z-" + record.backup_id[-6:]
    assert record.export_region == EXPORT_REGION
    assert record.operations == {EXPORT_REGION: next(iter(fake.operations))}
    assert record.key_id == "projects/p/locations/l/keyRings/r/k"
    stored = BackupCatalog(get_db()).get(record.backup_id)
    assert stored == record


def test_a_retry_of_the_hour_never_starts_a_second_export(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    """Cloud Scheduler's retries (2 and 4 minutes later) carry the run's schedule time:
    they find the hour's claim and start nothing, even after the export finished."""
    first = service.backup(NOW, NOW)
    again = service.backup(NOW + timedelta(minutes=2), NOW)
    assert again == first
    service.poll(NOW + timedelta(minutes=5), "p1")
    service.poll(NOW + timedelta(minutes=6), "p2")
    later = service.backup(NOW + timedelta(minutes=6), NOW + timedelta(minutes=1))
    assert later.backup_id == first.backup_id and later.status is BackupStatus.COMPLETE
    assert len(exports_sent(fake)) == 1
    next_hour = service.backup(NOW + timedelta(hours=1))
    assert next_hour.backup_id != first.backup_id and len(exports_sent(fake)) == 2


def test_a_retry_adopts_the_export_an_attempt_started_before_dying(
    service: BackupService, store: ManagedBackupStore, fake: FakeFirestoreAdmin
) -> None:
    """The attempt claimed the hour and sent ExportDocuments, then died before recording
    the operation: the retry finds it by its prefix (operations.list), starts nothing."""
    first = service.backup(NOW)
    catalog = BackupCatalog(get_db())
    catalog.save(first.model_copy(update={"operations": {}}))  # the record it never wrote
    retry = service.backup(NOW + timedelta(minutes=2), NOW)
    assert retry.operations == first.operations
    assert len(exports_sent(fake)) == 1
    assert any(r.method == "GET" and r.path.endswith("/operations") for r in fake.requests)


def test_a_refused_start_is_retried_by_the_scheduler_and_failed_past_the_deadline(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    fake.errors["export"] = 503
    with pytest.raises(Exception, match="503"):
        service.backup(NOW)
    (claimed,) = BackupCatalog(get_db()).all()
    assert claimed.status is BackupStatus.EXPORTING and not claimed.operations
    assert claimed.error is not None and "503" in claimed.error
    with pytest.raises(Exception, match="503"):  # the first retry: refused again
        service.backup(NOW + timedelta(minutes=2), NOW)
    del fake.errors["export"]
    retried = service.backup(NOW + timedelta(minutes=6), NOW)  # the second: started
    assert retried.backup_id == claimed.backup_id and retried.operations
    assert retried.error is None and exports_started(fake) == 1

    fake.errors["export"] = 503
    with pytest.raises(Exception, match="503"):
        service.backup(NOW + timedelta(hours=1))
    late = NOW + timedelta(hours=1, seconds=BACKUP_EXPORT_DEADLINE_SEC + 60)
    report = service.poll(late, "p-late")
    never = BackupCatalog(get_db()).get(report.failed[0])
    assert never is not None and never.status is BackupStatus.FAILED
    assert never.error is not None and never.error.startswith("the export never started")


def test_the_poll_completes_copies_and_verifies_the_export(
    service: BackupService, fake: FakeFirestoreAdmin, gcs: FakeCloudStorage
) -> None:
    started = service.backup(NOW)
    assert service.poll(NOW + timedelta(minutes=5), "p1") == PollReport(
        running=[started.backup_id]
    )  # the first read: still PROCESSING
    assert not objects_of(gcs, EXPORT_REGION, started.backup_id)
    report = service.poll(NOW + timedelta(minutes=10), "p2")
    assert report == PollReport(completed=[started.backup_id])
    record = BackupCatalog(get_db()).get(started.backup_id)
    assert record is not None and record.status is BackupStatus.COMPLETE
    assert record.locations == {r: f"{BUCKETS[r]}/{started.backup_id}" for r in BACKUP_REGIONS}
    assert (record.document_count, record.size_bytes) == (1234, 56789)
    assert record.completed_at is not None
    exported = objects_of(gcs, EXPORT_REGION, started.backup_id)
    assert f"{started.backup_id}.overall_export_metadata" in exported
    for region in BACKUP_REGIONS:
        assert objects_of(gcs, region, started.backup_id) == exported
    rewrites = [path for method, path in gcs.requests if "/rewriteTo/" in path]
    assert len(rewrites) == 2 * len(exported)  # the two other regions, server-side
    assert len(exports_sent(fake)) == 1  # one read per document, not three
    assert service.poll(NOW + timedelta(minutes=15), "p3") == PollReport()


def test_copies_resume_and_take_several_rewrite_calls(
    service: BackupService, fake: FakeFirestoreAdmin, gcs: FakeCloudStorage
) -> None:
    """Across locations a rewrite may need several calls (each with its token); an
    object already copied by an earlier run is not copied again."""
    gcs.rewrite_bytes_per_call = 20
    fake.export_polls = 1
    started = service.backup(NOW)
    export_bucket = BUCKETS[EXPORT_REGION].removeprefix("gs://")
    store = service._store
    assert store.exports is not None
    store.exports.progress(started.operations[EXPORT_REGION])  # done: files written
    eu = BUCKETS["europe-west1"].removeprefix("gs://")
    kinds = f"{started.backup_id}/all_namespaces/all_kinds/output-0"
    gcs.objects[(eu, kinds)] = gcs.objects[(export_bucket, kinds)]  # copied before
    assert service.poll(NOW + timedelta(minutes=5), "p").completed == [started.backup_id]
    rewrites = [path for method, path in gcs.requests if "/rewriteTo/" in path]
    to_eu_output = [p for p in rewrites if p.endswith(f"/b/{eu}/o/{kinds.replace('/', '%2F')}")]
    assert to_eu_output == []
    assert len(rewrites) > 5  # 5 objects to copy, several calls each
    assert objects_of(gcs, "europe-west1", started.backup_id) == objects_of(
        gcs, EXPORT_REGION, started.backup_id
    )


def test_a_failed_export_is_marked_failed_by_the_poll(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    fake.export_fails = True
    started = service.backup(NOW)
    service.poll(NOW + timedelta(minutes=5), "p1")
    report = service.poll(NOW + timedelta(minutes=10), "p2")
    assert report.failed == [started.backup_id]
    record = BackupCatalog(get_db()).get(started.backup_id)
    assert record is not None and record.status is BackupStatus.FAILED
    assert record.error is not None and "FAILED: export failed in the fake" in record.error


def test_a_stuck_export_raises_the_backup_alert_until_it_finishes(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    fake.export_polls = 1000
    started = service.backup(NOW)
    service.poll(NOW + timedelta(minutes=30), "p-early")
    assert backup_alerts() == {}
    late = NOW + timedelta(seconds=BACKUP_EXPORT_DEADLINE_SEC + 60)
    assert service.poll(late, "p-late").stuck == [started.backup_id]
    alert_id, alert = backup_alerts()["exports"]
    assert (alert["status"], alert["severity"], alert["dedupKey"]) == (
        "open",
        "high",
        "backup:promise:exports",
    )
    assert started.backup_id in alert["title"]
    fake.exports_running[started.operations[EXPORT_REGION]] = 1  # finishes on this read
    assert service.poll(late + timedelta(minutes=5), "p-done").completed == [started.backup_id]
    same_id, resolved = backup_alerts()["exports"]
    assert (same_id, resolved["status"]) == (alert_id, "resolved")


def test_an_abandoned_export_is_cancelled_and_failed(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    fake.export_polls = 1000
    started = service.backup(NOW)
    report = service.poll(NOW + timedelta(seconds=BACKUP_INTERRUPTED_AFTER_SEC + 60), "p")
    assert report.failed == [started.backup_id]
    name = started.operations[EXPORT_REGION]
    assert any(r.path == f"v1/{name}:cancel" for r in fake.requests)
    assert fake.operations[name]["metadata"]["operationState"] == "CANCELLED"
    record = BackupCatalog(get_db()).get(started.backup_id)
    assert record is not None and record.status is BackupStatus.FAILED
    assert record.error is not None and "cancelled" in record.error


def test_verify_reads_the_export_and_every_copy_and_pitr_and_passes(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    complete_backup(service)
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


def test_a_damaged_copy_fails_verification_naming_the_file(
    service: BackupService, gcs: FakeCloudStorage
) -> None:
    record = complete_backup(service)
    bucket = BUCKETS["asia-northeast1"].removeprefix("gs://")
    name = f"{record.backup_id}/all_namespaces/all_kinds/output-0"
    gcs.objects[(bucket, name)] = b"truncated"
    report = service.verify(NOW + timedelta(minutes=30), "v-damaged")
    checks = {c.name: c for c in report.checks}
    assert checks["readable:asia-northeast1"].status is CheckStatus.BROKEN
    assert (
        "different all_namespaces/all_kinds/output-0" in checks["readable:asia-northeast1"].detail
    )
    assert checks["readable:europe-west1"].status is CheckStatus.OK
    assert alert_problems("v-damaged") == [
        f"readable:asia-northeast1: {checks['readable:asia-northeast1'].detail}"
    ]


def test_pitr_disabled_and_stale_backups_raise_an_alert(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    complete_backup(service)
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
    complete_backup(service)
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


def test_verify_names_a_failed_export(store: ManagedBackupStore, fake: FakeFirestoreAdmin) -> None:
    fake.export_fails = True
    name = store.exports.start("20261127T210000Z-aaaaaa", NOW)
    record = BackupRecord(
        backup_id="20261127T210000Z-aaaaaa",
        backend=BackupBackend.MANAGED,
        status=BackupStatus.COMPLETE,
        snapshot_time=NOW,
        started_at=NOW,
        operations={"us-central1": name},
    )
    with pytest.raises(BackupIntegrityError, match="has not finished"):
        store.verify(record, "us-central1")  # the first read: still running
    with pytest.raises(BackupIntegrityError, match="failed"):
        store.verify(record, "us-central1")


def test_backups_from_before_one_export_per_region_still_verify(
    store: ManagedBackupStore, fake: FakeFirestoreAdmin
) -> None:
    """Catalog entries written before the single-export design have one export per region and no
    export region: each region's own operation is its proof, as before."""
    fake.export_polls = 1
    ops = {region: store.exports.start(f"old-{region}", NOW) for region in BACKUP_REGIONS}
    record = BackupRecord(
        backup_id="20261120T210000Z-bbbbbb",
        backend=BackupBackend.MANAGED,
        status=BackupStatus.COMPLETE,
        snapshot_time=NOW,
        started_at=NOW,
        operations=ops,
    )
    for region in BACKUP_REGIONS:
        store.verify(record, region)


def test_drill_clones_from_pitr_counts_the_clone_and_deletes(
    service: BackupService, fake: FakeFirestoreAdmin, real_clones: FirestoreDocuments
) -> None:
    seed_orders(7)
    # 14 orders and lines, and the catalog's entry (the fake clones "now", not the minute)
    fake.export_documents = 15
    backup = complete_backup(service)
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
    the report and the alert are written (before, the first error aborted the run).
    Every region's copy is checked against the export's operation, so all three say so."""
    complete_backup(service)
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
    complete_backup(service)
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
    complete_backup(service)
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
    backup = complete_backup(service)  # ... while the export reported 1234
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
    complete_backup(service)
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


def test_an_api_error_while_polling_is_kept_and_named_by_the_stuck_alert(
    service: BackupService, fake: FakeFirestoreAdmin
) -> None:
    """operations.get answers 403 (a missing role): the backup stays exporting with the
    error on its entry, and once past the deadline the alert says why."""
    started = service.backup(NOW)
    fake.errors["get_operation"] = 403
    assert service.poll(NOW + timedelta(minutes=5), "p1").running == [started.backup_id]
    record = BackupCatalog(get_db()).get(started.backup_id)
    assert record is not None and record.status is BackupStatus.EXPORTING
    assert record.error is not None and "403" in record.error
    assert record.operations == started.operations  # nothing lost
    late = NOW + timedelta(seconds=BACKUP_EXPORT_DEADLINE_SEC + 60)
    assert service.poll(late, "p-late").stuck == [started.backup_id]
    _, alert = backup_alerts()["exports"]
    assert "403" in alert["title"] and alert["status"] == "open"
    del fake.errors["get_operation"]
    fake.export_polls = 1
    for op in fake.exports_running:
        fake.exports_running[op] = 1
    assert service.poll(late + timedelta(minutes=5), "p-ok").completed == [started.backup_id]
    done = BackupCatalog(get_db()).get(started.backup_id)
    assert done is not None and done.error is None
    assert backup_alerts()["exports"][1]["status"] == "resolved"
