"""The managed backend's exports (the :class:`functions.backup.ports.ExportPort` port):
one Firestore managed export per backup into the export region's bucket, started and
polled (``operations.get``), then copied server-side into every other region's bucket
(``objects.rewrite``). Why one export and copies: :mod:`functions.backup.managed`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from google.cloud.firestore_admin_v1 import FirestoreAdminClient
from google.cloud.firestore_admin_v1.types import (
    ExportDocumentsMetadata,
    ExportDocumentsRequest,
    OperationState,
)
from google.longrunning import operations_pb2  # type: ignore[import-untyped]

from functions.backup.archive import BackupIntegrityError
from functions.backup.destinations import STORAGE_CALL_SEC
from functions.backup.ports import ExportProgress
from shared.errors import FailedPrecondition
from shared.gcp import budget


def split_gs(uri: str) -> tuple[str, str]:
    """``gs://bucket/some/path`` -> (``bucket``, ``some/path``)."""
    if not uri.startswith("gs://"):
        raise FailedPrecondition(f"not a gs:// bucket: {uri!r}")
    bucket, _, path = uri[len("gs://") :].partition("/")
    return bucket, path.strip("/")


OVERALL_METADATA_SUFFIX = ".overall_export_metadata"
"""The file every finished Firestore export writes at its prefix (named after the
prefix's last segment): the one ``import_documents`` is pointed at."""


class ManagedExports:
    """Start, find, poll and cancel a backup's export; copy it into the other regions;
    list a region's copy (what :class:`functions.backup.managed.ManagedBackupStore`
    verifies)."""

    def __init__(
        self,
        admin: FirestoreAdminClient,
        project: str,
        database_path: str,
        buckets: Mapping[str, str],
        *,
        storage: Any = None,
        export_region: str | None = None,
    ) -> None:
        self._admin = admin
        self._project = project
        self._database_path = database_path
        self._buckets = {region: uri.rstrip("/") for region, uri in buckets.items()}
        self.regions: Sequence[str] = tuple(self._buckets)
        self._storage = storage
        self.export_region = export_region or self.regions[0]
        if self.export_region not in self._buckets:
            raise FailedPrecondition(f"no bucket for the export region {self.export_region}")

    def _client(self) -> Any:
        if self._storage is None:
            from google.cloud import storage  # type: ignore[attr-defined]

            self._storage = storage.Client(project=self._project)
        return self._storage

    def location(self, region: str, backup_id: str) -> str:
        return f"{self._buckets[region]}/{backup_id}"

    def export_location(self, backup_id: str) -> str:
        return self.location(self.export_region, backup_id)

    def locations(self, backup_id: str) -> dict[str, str]:
        return {region: self.location(region, backup_id) for region in self.regions}

    def start(self, backup_id: str, snapshot_time: datetime) -> str:
        operation = self._admin.export_documents(
            request=ExportDocumentsRequest(
                name=self._database_path,
                output_uri_prefix=self.export_location(backup_id),
                snapshot_time=snapshot_time,
            )
        )
        return str(operation.operation.name)

    def find(self, backup_id: str) -> str | None:
        """``operations.list`` of the database: an export already writing to this
        backup's prefix (a start whose answer was lost, or an attempt that died after
        the call)."""
        prefix = self.export_location(backup_id)
        token = ""
        while True:
            page = self._admin.list_operations(
                operations_pb2.ListOperationsRequest(name=self._database_path, page_token=token)
            )
            for operation in page.operations:
                meta = export_metadata(operation)
                if meta is not None and meta.output_uri_prefix.rstrip("/") == prefix:
                    return str(operation.name)
            token = page.next_page_token
            if not token:
                return None

    def progress(self, operation: str) -> ExportProgress:
        op = self._admin.get_operation(operations_pb2.GetOperationRequest(name=operation))
        meta = export_metadata(op)
        error = op.error.message or f"code {op.error.code}" if op.HasField("error") else None
        state = OperationState(meta.operation_state).name if meta is not None else "UNKNOWN"
        end = meta.end_time if meta is not None and meta.end_time else None
        return ExportProgress(
            done=bool(op.done),
            error=error,
            state=state,
            documents=int(meta.progress_documents.completed_work) if meta else 0,
            size_bytes=int(meta.progress_bytes.completed_work) if meta else 0,
            end_time=end if end is not None and end.year > 1970 else None,
        )

    def cancel(self, operation: str) -> None:
        self._admin.cancel_operation(operations_pb2.CancelOperationRequest(name=operation))

    def objects(self, region: str, backup_id: str) -> dict[str, Any]:
        """The objects of ``backup_id``'s copy in ``region``: relative name -> blob."""
        bucket, path = split_gs(self.location(region, backup_id))
        prefix = f"{path}/"
        return {
            blob.name[len(prefix) :]: blob
            for blob in self._client().list_blobs(
                bucket, prefix=prefix, **budget.storage_call(STORAGE_CALL_SEC)
            )
        }

    def replicate(self, backup_id: str, deadline: float) -> bool:
        source = self.objects(self.export_region, backup_id)
        if not source:
            raise BackupIntegrityError(
                f"the export of {backup_id} wrote nothing to {self.export_location(backup_id)}"
            )
        for region in self.regions:
            if region == self.export_region:
                continue
            have = {
                name: fingerprint(blob) for name, blob in self.objects(region, backup_id).items()
            }
            bucket_name, path = split_gs(self.location(region, backup_id))
            bucket = self._client().bucket(bucket_name)
            for name, blob in source.items():
                if have.get(name) == fingerprint(blob):
                    continue  # copied by an earlier run
                if time.monotonic() > deadline:
                    return False
                target = bucket.blob(f"{path}/{name}")
                token: str | None = None
                while True:
                    token, _, _ = target.rewrite(
                        blob, token=token, **budget.storage_call(STORAGE_CALL_SEC)
                    )
                    if token is None:
                        break
                    if time.monotonic() > deadline:
                        return False  # this object is copied again by the next run
        return True


def export_metadata(operation: Any) -> ExportDocumentsMetadata | None:
    """The operation's ``ExportDocumentsMetadata``, or None (another kind of operation)."""
    if not operation.HasField("metadata"):
        return None
    if not operation.metadata.type_url.endswith(".ExportDocumentsMetadata"):
        return None
    meta: ExportDocumentsMetadata = ExportDocumentsMetadata.deserialize(operation.metadata.value)
    return meta


def fingerprint(blob: Any) -> tuple[str | None, int | None]:
    return blob.md5_hash, blob.size
