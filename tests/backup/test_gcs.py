"""Logical backups into ``gs://`` prefixes through the real ``google-cloud-storage``
client, against the local fake of the Cloud Storage JSON API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[attr-defined]

from functions.backup.archive import BackupIntegrityError, BackupKey
from functions.backup.destinations import destination_for
from functions.backup.documents import FirestoreDocuments
from functions.backup.logical import LogicalBackupStore
from functions.backup.logical_restore import NonEmptyTarget
from shared.models.backup import BackupBackend, BackupRecord, BackupStatus
from shared.thresholds import BACKUP_REGIONS
from tests.fakes.cloud_storage import FakeCloudStorage, serve

BACKUP = "20261127T210000Z-9c5e01"


@pytest.fixture
def gcs() -> Iterator[FakeCloudStorage]:
    yield from serve()


@pytest.fixture
def gcs_store(
    gcs: FakeCloudStorage, source: FirestoreDocuments, key: BackupKey
) -> LogicalBackupStore:
    client = storage.Client(
        project="demo-pack391-test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs.url},
    )
    dests = {r: destination_for(f"gs://avalo-{r}/pack391", client) for r in BACKUP_REGIONS}
    return LogicalBackupStore(source, key, dests, drill_database="drill-gcs")


def test_backup_verify_restore_and_delete_in_buckets(
    gcs: FakeCloudStorage, gcs_store: LogicalBackupStore, source: FirestoreDocuments, seeded: int
) -> None:
    created = gcs_store.create(BACKUP, datetime.now(UTC))
    assert created.locations["europe-west1"] == f"gs://avalo-europe-west1/pack391/{BACKUP}"
    names = {name for bucket, name in gcs.objects if bucket == "avalo-asia-northeast1"}
    assert f"pack391/{BACKUP}/manifest.json" in names
    assert f"pack391/{BACKUP}/parts/orders-00000.pb.gz.enc" in names
    assert all(b"user 1" not in data for data in gcs.objects.values())
    record = BackupRecord(
        backup_id=BACKUP,
        backend=BackupBackend.LOGICAL,
        status=BackupStatus.COMPLETE,
        snapshot_time=datetime.now(UTC),
        started_at=datetime.now(UTC),
        document_count=seeded,
    )
    for region in BACKUP_REGIONS:
        gcs_store.verify(record, region)
    result = gcs_store.restore(BACKUP, "asia-northeast1", source.with_database("from-gcs"))
    assert result.documents == seeded
    with pytest.raises(NonEmptyTarget):
        gcs_store.restore(BACKUP, "asia-northeast1", source.with_database("from-gcs"))

    key = ("avalo-us-central1", f"pack391/{BACKUP}/parts/users-00000.pb.gz.enc")
    gcs.objects[key] = gcs.objects[key][:-1] + b"\x00"
    with pytest.raises(BackupIntegrityError, match="users-00000"):
        gcs_store.verify(record, "us-central1")

    gcs_store.delete(record)
    assert not gcs.objects
    with pytest.raises(BackupIntegrityError, match="no manifest"):
        gcs_store.manifest(BACKUP, "europe-west1")
