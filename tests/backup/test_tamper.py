"""Backups that lie: a backup folder copied under another id or region,
parts swapped between copies, a wrong key, and Google API errors in the middle of a
verification. Each must be refused naming what is wrong, or reported as a broken promise
with an alert: never a silent success, never an aborted run without a report."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[attr-defined]

from functions.backup import archive
from functions.backup.archive import (
    BackupIntegrityError,
    BackupKey,
    Manifest,
    PartContext,
    PartEntry,
)
from functions.backup.destinations import destination_for
from functions.backup.documents import FirestoreDocuments
from functions.backup.logical import LogicalBackupStore
from functions.backup.logical_read import MANIFEST
from functions.backup.service import BackupService
from functions.backup.store import BackupCatalog
from shared import collections
from shared.audit import Change
from shared.firestore import get_db
from shared.models.backup import (
    BackupBackend,
    BackupRecord,
    BackupStatus,
    CheckStatus,
    RestoreDrillRequest,
)
from shared.thresholds import BACKUP_REGIONS
from tests.backup.alert_helpers import alert_problems
from tests.backup.conftest import new_key
from tests.fakes.cloud_storage import FakeCloudStorage, serve

OLD = "20261129T210000Z-0001aa"
NEW = "20261130T210000Z-0002bb"


def record_of(backup_id: str, count: int) -> BackupRecord:
    now = datetime.now(UTC)
    return BackupRecord(
        backup_id=backup_id,
        backend=BackupBackend.LOGICAL,
        status=BackupStatus.COMPLETE,
        snapshot_time=now,
        started_at=now,
        document_count=count,
        locations={r: f"/backups/{r}/{backup_id}" for r in BACKUP_REGIONS},
    )


# ------------------------------------------------------------ copied folders


def test_an_older_backup_copied_under_a_newer_id_is_refused(
    store: LogicalBackupStore,
    source: FirestoreDocuments,
    region_dirs: dict[str, Path],
    seeded: int,
) -> None:
    """Yesterday's folder put where today's backup should be: the manifest says which
    backup it is, under its HMAC, and that is now checked (it verified and restored
    yesterday's data silently before)."""
    store.create(OLD, datetime.now(UTC))
    for region in BACKUP_REGIONS:
        shutil.copytree(region_dirs[region] / OLD, region_dirs[region] / NEW)
    for region in BACKUP_REGIONS:
        with pytest.raises(BackupIntegrityError, match=f"belongs to backup {OLD}, not {NEW}") as e:
            store.verify(record_of(NEW, seeded), region)
        assert e.value.part == MANIFEST
    target = source.with_database("copied-folder")
    with pytest.raises(BackupIntegrityError, match=f"belongs to backup {OLD}"):
        store.restore(NEW, "us-central1", target)
    assert target.is_empty()
    store.verify(record_of(OLD, seeded), "us-central1")  # the original is fine


def test_a_regional_copy_replaced_by_another_regions_copy_is_refused(
    store: LogicalBackupStore, region_dirs: dict[str, Path], seeded: int
) -> None:
    store.create(NEW, datetime.now(UTC))
    shutil.rmtree(region_dirs["europe-west1"] / NEW)
    shutil.copytree(region_dirs["us-central1"] / NEW, region_dirs["europe-west1"] / NEW)
    with pytest.raises(BackupIntegrityError, match="is the us-central1 copy") as e:
        store.verify(record_of(NEW, seeded), "europe-west1")
    assert e.value.part == MANIFEST


# ------------------------------------------------------------ swapped parts


def test_a_part_swapped_in_from_another_region_is_refused_naming_it(
    store: LogicalBackupStore, region_dirs: dict[str, Path], seeded: int
) -> None:
    """Each region's copy is sealed for its region: a part copied over from another
    region (byte-identical before, so it passed) no longer matches."""
    store.create(NEW, datetime.now(UTC))
    part = "parts/users-00000.pb.gz.enc"
    shutil.copy(
        region_dirs["asia-northeast1"] / NEW / part, region_dirs["us-central1"] / NEW / part
    )
    with pytest.raises(BackupIntegrityError, match="users-00000") as e:
        store.verify(record_of(NEW, seeded), "us-central1")
    assert e.value.part == part
    store.verify(record_of(NEW, seeded), "asia-northeast1")


@pytest.mark.parametrize(
    "elsewhere",
    [
        PartContext(OLD, "us-central1", 3, "parts/orders-00000.ndjson.gz.enc"),  # other backup
        PartContext(NEW, "europe-west1", 3, "parts/orders-00000.ndjson.gz.enc"),  # other region
        PartContext(NEW, "us-central1", 4, "parts/orders-00000.ndjson.gz.enc"),  # other index
        PartContext(NEW, "us-central1", 3, "parts/users-00000.ndjson.gz.enc"),  # other name
        PartContext(NEW, "us-central1", 3, "parts/orders-00000.ndjson.gz.enc", 2),  # format
    ],
)
def test_a_sealed_part_opens_only_where_it_was_sealed(
    key: BackupKey, elsewhere: PartContext
) -> None:
    here = PartContext(NEW, "us-central1", 3, "parts/orders-00000.ndjson.gz.enc")
    sealed = archive.seal(key, here, b"payload")
    assert archive.unseal(key, here, sealed) == b"payload"
    with pytest.raises(BackupIntegrityError, match="failed authentication") as e:
        archive.unseal(key, elsewhere, sealed)
    assert e.value.part == elsewhere.name


# ------------------------------------------------------------ old format


def _rewrite_as_version_1(store: LogicalBackupStore, key: BackupKey, dirs: dict[str, Path]) -> None:
    """What the first format wrote: parts bound to their name only, sealed once and
    identical in every region, manifests without a region."""
    manifest = store.manifest(NEW, "us-central1")

    def v1(entries: list[PartEntry]) -> list[PartEntry]:
        out = []
        for entry in entries:
            sealed = (dirs["us-central1"] / NEW / entry.name).read_bytes()
            plain = archive.unseal(key, manifest.part_context(entry), sealed)
            old = archive.seal(key, PartContext(NEW, None, 0, entry.name, 1), plain)
            for region in BACKUP_REGIONS:
                (dirs[region] / NEW / entry.name).write_bytes(old)
            out.append(PartEntry(entry.name, archive.sha256(old), entry.documents, len(old)))
        return out

    legacy = Manifest(
        backup_id=NEW,
        snapshot_time=manifest.snapshot_time,
        source_database=manifest.source_database,
        key_id=manifest.key_id,
        collection_counts=manifest.collection_counts,
        group_counts=manifest.group_counts,
        parts=v1(manifest.parts),
        meta=v1(manifest.meta),
        region=None,
        schema_version=1,
    )
    body = legacy.to_bytes(key)
    assert b'"region"' not in body
    for region in BACKUP_REGIONS:
        (dirs[region] / NEW / MANIFEST).write_bytes(body)


def test_backups_of_the_first_format_are_still_read_and_id_checked(
    key: BackupKey,
    source: FirestoreDocuments,
    region_dirs: dict[str, Path],
    seeded: int,
) -> None:
    # the first format's parts were NDJSON, as the REST readers still write them
    store = LogicalBackupStore(source, key, region_dirs, reader="rest")
    store.create(NEW, datetime.now(UTC))
    _rewrite_as_version_1(store, key, region_dirs)
    for region in BACKUP_REGIONS:
        store.verify(record_of(NEW, seeded), region)
    result = store.restore(NEW, "europe-west1", source.with_database("from-v1"))
    assert result.documents == seeded
    # The backup id was under the first format's HMAC too: a copied folder is refused.
    shutil.copytree(region_dirs["us-central1"] / NEW, region_dirs["us-central1"] / OLD)
    with pytest.raises(BackupIntegrityError, match=f"belongs to backup {NEW}, not {OLD}"):
        store.verify(record_of(OLD, seeded), "us-central1")


# ------------------------------------------------------------ through the service


@pytest.fixture
def service(store: LogicalBackupStore, seeded: int) -> BackupService:
    return BackupService(store, BackupCatalog(get_db()))


def _alert_problems(verification_id: str) -> list[str]:
    return alert_problems(verification_id)


def test_a_wrong_key_is_a_broken_promise_and_a_failed_drill(
    store: LogicalBackupStore,
    source: FirestoreDocuments,
    region_dirs: dict[str, Path],
    service: BackupService,
    seeded: int,
) -> None:
    """Regression cover (this already held): the key fingerprint mismatch is reported."""
    now = datetime.now(UTC)
    service.backup(now)
    other = LogicalBackupStore(
        source, BackupKey.from_base64(new_key()), region_dirs, drill_database="drill-k"
    )
    wrong = BackupService(other, BackupCatalog(get_db()))
    report = wrong.verify(now + timedelta(minutes=5), "v-key")
    readable = [c for c in report.checks if c.name.startswith("readable:")]
    assert {c.status for c in readable} == {CheckStatus.BROKEN}
    assert all("sealed with key" in c.detail for c in readable)
    assert any("sealed with key" in p for p in _alert_problems("v-key"))
    change = Change("admin-1", "backup.restore_drill", None, "trace-1", now)
    drill = wrong.drill(RestoreDrillRequest(), change)
    assert not drill.ok and "sealed with key" in drill.detail
    assert drill.cleaned_up and source.with_database("drill-k").is_empty()


BUCKET_BACKUP = "pack391"


@pytest.fixture
def gcs() -> Iterator[FakeCloudStorage]:
    yield from serve()


@pytest.fixture
def gcs_service(gcs: FakeCloudStorage, source: FirestoreDocuments, key: BackupKey) -> BackupService:
    client = storage.Client(
        project="demo-pack391-test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs.url},
    )
    dests = {r: destination_for(f"gs://avalo-{r}/{BUCKET_BACKUP}", client) for r in BACKUP_REGIONS}
    store = LogicalBackupStore(source, key, dests, drill_database="drill-gcs")
    return BackupService(store, BackupCatalog(get_db()))


def test_a_storage_403_mid_verify_is_reported_with_an_alert(
    gcs: FakeCloudStorage, gcs_service: BackupService, seeded: int
) -> None:
    """The manifest reads, then Cloud Storage refuses one part: the run still writes
    its report (that region broken, naming the error; the others checked) and an
    alert. Before, the Forbidden error aborted the whole run with nothing written."""
    now = datetime.now(UTC)
    record = gcs_service.backup(now)
    refused = (
        f"/download/storage/v1/b/avalo-us-central1/o/{BUCKET_BACKUP}/{record.backup_id}/parts/"
    )
    gcs.fault = lambda method, path: 403 if path.startswith(refused) else None
    report = gcs_service.verify(now + timedelta(minutes=5), "v-403")
    checks = {c.name: c for c in report.checks}
    broken = checks["readable:us-central1"]
    assert broken.status is CheckStatus.BROKEN
    assert "Forbidden" in broken.detail and record.backup_id in broken.detail
    assert checks["readable:europe-west1"].status is CheckStatus.OK
    assert checks["readable:asia-northeast1"].status is CheckStatus.OK
    assert not report.ok
    stored = get_db().collection(collections.BACKUP_VERIFICATIONS).document("v-403").get()
    assert stored.exists
    assert any(p.startswith("readable:us-central1") for p in _alert_problems("v-403"))


def test_a_failing_housekeeping_is_reported_and_the_checks_still_run(
    store: LogicalBackupStore, service: BackupService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.api_core import exceptions as gexc

    now = datetime.now(UTC)
    service.backup(now)
    stuck = record_of("20261130T000000Z-0003cc", 0).model_copy(
        update={"status": BackupStatus.RUNNING, "started_at": now - timedelta(hours=5)}
    )
    BackupCatalog(get_db()).save(stuck)

    def refuse(record: BackupRecord) -> bool:
        raise gexc.Forbidden("storage.objects.delete denied")  # type: ignore[no-untyped-call]

    monkeypatch.setattr(store, "delete", refuse)
    report = service.verify(now + timedelta(minutes=5), "v-housekeeping")
    checks = {c.name: c for c in report.checks}
    assert checks["retention"].status is CheckStatus.BROKEN
    assert "housekeeping failed: Forbidden: 403 storage.objects.delete denied" in (
        checks["retention"].detail
    )
    assert all(checks[f"readable:{r}"].status is CheckStatus.OK for r in BACKUP_REGIONS)
    assert any(p.startswith("retention:") for p in _alert_problems("v-housekeeping"))
