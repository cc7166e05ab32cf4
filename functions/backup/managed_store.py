"""The managed backend: Firestore's managed exports into one bucket per region, PITR
and clones, through ``google.cloud.firestore_admin_v1.FirestoreAdminClient``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.firestore_admin_v1 import FirestoreAdminClient
from google.cloud.firestore_admin_v1.types import (
    CloneDatabaseRequest,
    Database,
    ExportDocumentsMetadata,
    ExportDocumentsRequest,
    OperationState,
    PitrSnapshot,
)
from google.longrunning import operations_pb2  # type: ignore[import-untyped]

from functions.backup.archive import BackupIntegrityError
from functions.backup.documents import FirestoreDocuments
from functions.backup.policy import PitrState, align_down, describe_error
from functions.backup.ports import CreatedBackup, DrillOutcome
from shared.clock import iso
from shared.errors import FailedPrecondition, InvalidInput
from shared.models.backup import BackupBackend, BackupRecord
from shared.thresholds import BACKUP_SNAPSHOT_ALIGN_SEC

_OPERATION_TIMEOUT_SEC = 3600.0


class PitrInspector:
    """Reads point-in-time recovery settings from the database (Admin API)."""

    def __init__(self, admin: FirestoreAdminClient, database_path: str) -> None:
        self._admin = admin
        self._database_path = database_path

    def pitr_state(self) -> PitrState:
        db = self._admin.get_database(name=self._database_path)
        enabled = (
            db.point_in_time_recovery_enablement
            == Database.PointInTimeRecoveryEnablement.POINT_IN_TIME_RECOVERY_ENABLED
        )
        retention = db.version_retention_period
        earliest = db.earliest_version_time
        return PitrState(
            supported=True,
            enabled=enabled,
            retention_sec=retention.total_seconds() if retention else None,
            earliest_version_time=earliest if earliest and earliest.year > 1970 else None,
        )


class ManagedBackupStore:
    """Firestore managed exports into one bucket per region; drills clone from PITR."""

    backend = BackupBackend.MANAGED

    def __init__(
        self,
        admin: FirestoreAdminClient,
        project: str,
        buckets: Mapping[str, str],
        *,
        database: str = "(default)",
        kms_key: str | None = None,
        timeout_sec: float = _OPERATION_TIMEOUT_SEC,
        documents: FirestoreDocuments | None = None,
    ) -> None:
        """``documents``: the data API, to count a drill's clone (default: this project's
        Firestore, the emulator when ``FIRESTORE_EMULATOR_HOST`` is set)."""
        self._admin = admin
        self._project = project
        self._documents = documents
        self._database_path = f"projects/{project}/databases/{database}"
        self._buckets = {region: uri.rstrip("/") for region, uri in buckets.items()}
        self.regions: Sequence[str] = tuple(self._buckets)
        self._kms_key = kms_key or None
        self._timeout = timeout_sec
        self._pitr = PitrInspector(admin, self._database_path)

    def create(self, backup_id: str, snapshot_time: datetime) -> CreatedBackup:
        locations: dict[str, str] = {}
        operations: dict[str, str] = {}
        documents = 0
        size = 0
        for region, bucket in self._buckets.items():
            prefix = f"{bucket}/{backup_id}"
            operation = self._admin.export_documents(
                request=ExportDocumentsRequest(
                    name=self._database_path,
                    output_uri_prefix=prefix,
                    snapshot_time=snapshot_time,
                )
            )
            operation.result(timeout=self._timeout)  # type: ignore[no-untyped-call]
            meta = operation.metadata
            if isinstance(meta, ExportDocumentsMetadata):
                documents = int(meta.progress_documents.completed_work)
                size = int(meta.progress_bytes.completed_work)
            locations[region] = prefix
            operations[region] = operation.operation.name
        return CreatedBackup(
            locations=locations,
            document_count=documents,
            collection_counts={},
            size_bytes=size,
            key_id=self._kms_key,
            operations=operations,
        )

    def verify(self, record: BackupRecord, region: str) -> None:
        name = record.operations.get(region)
        if not name:
            raise BackupIntegrityError(f"backup {record.backup_id} has no export in {region}")
        operation = self._admin.get_operation(operations_pb2.GetOperationRequest(name=name))
        if not operation.done:
            raise BackupIntegrityError(f"export {name} has not finished")
        if operation.HasField("error"):
            raise BackupIntegrityError(f"export {name} failed: {operation.error.message}")
        meta = ExportDocumentsMetadata.deserialize(operation.metadata.value)
        if meta.operation_state != OperationState.SUCCESSFUL:
            raise BackupIntegrityError(
                f"export {name} is {OperationState(meta.operation_state).name}"
            )

    def delete(self, record: BackupRecord) -> bool:
        # Exports are deleted by each bucket's lifecycle rule (age = retention days):
        # the functions' service account needs no delete right on cold storage.
        return False

    def pitr_state(self) -> PitrState:
        return self._pitr.pitr_state()

    def drill(
        self, record: BackupRecord | None, point_in_time: datetime | None, region: str, tag: str
    ) -> DrillOutcome:
        moment = point_in_time or (record.snapshot_time if record else None)
        if moment is None:
            raise FailedPrecondition("no backup and no point in time to restore")
        moment = align_down(moment, BACKUP_SNAPSHOT_ALIGN_SEC)
        target_id = f"drill-{tag}"
        target = f"projects/{self._project}/databases/{target_id}"
        started = time.perf_counter()
        try:
            operation = self._admin.clone_database(
                request=CloneDatabaseRequest(
                    parent=f"projects/{self._project}",
                    database_id=target_id,
                    pitr_snapshot=PitrSnapshot(database=self._database_path, snapshot_time=moment),
                )
            )
        except gexc.BadRequest as exc:  # InvalidArgument, FailedPrecondition, ... (HTTP 400)
            # outside what the database really keeps (without PITR: the last hour only)
            raise InvalidInput(
                "pointInTime" if point_in_time is not None else "backupId",
                f"Firestore cannot clone the database at {iso(moment)}: {exc.message}",
            ) from exc
        # From here on a clone may exist: whatever happens, it is deleted (finally), and
        # the drill records what the cleanup really did.
        counted = 0
        failure: str | None = None
        cleaned, cleanup = False, "not run"
        try:
            operation.result(timeout=self._timeout)  # type: ignore[no-untyped-call]
            clone = self._admin.get_database(name=target)
            if clone.name != target or not clone.uid:
                raise FailedPrecondition(f"the clone {target} is not ready")
            documents = self._documents or FirestoreDocuments.for_environment(self._project)
            counted = documents.with_database(target_id).count(None)
        except Exception as exc:  # recorded in the drill, never lost
            failure = describe_error(exc)
        finally:
            duration = time.perf_counter() - started
            cleaned, cleanup = self._drop_clone(operation, target)
        expected = record.document_count if record is not None and point_in_time is None else None
        ok = failure is None and (expected is None or counted == expected)
        if failure is not None:
            detail = f"clone of {self._database_path} at {iso(moment)} failed: {failure}"
        else:
            detail = (
                f"cloned {self._database_path} at {iso(moment)} into {target_id}, "
                f"counted {counted} documents"
                + (
                    f" ({'matches' if ok else 'differs from'} the backup's {expected})"
                    if expected is not None
                    else ""
                )
            )
        return DrillOutcome(
            target=target,
            ok=ok,
            documents=counted,
            duration_sec=duration,
            cleaned_up=cleaned,
            detail=f"{detail}; cleanup: {cleanup}",
        )

    def _drop_clone(self, operation: Any, target: str) -> tuple[bool, str]:
        """Cancel the clone if it is still running, delete the database, and check it is
        gone: (gone, what happened). Never raises."""
        steps: list[str] = []
        try:
            if not operation.done():
                operation.cancel()
                steps.append("clone operation cancelled")
        except Exception as exc:
            steps.append(f"cancel failed: {describe_error(exc)}")
        try:
            self._admin.delete_database(name=target).result(timeout=self._timeout)  # type: ignore[no-untyped-call]
            steps.append(f"deleted {target}")
        except gexc.NotFound:
            steps.append(f"{target} did not exist")
        except Exception as exc:
            steps.append(f"delete failed: {describe_error(exc)}")
        try:
            self._admin.get_database(name=target)
        except gexc.NotFound:
            return True, ", ".join(steps)
        except Exception as exc:
            steps.append(f"could not confirm: {describe_error(exc)}")
            return False, ", ".join(steps)
        return False, ", ".join([*steps, f"{target} still exists"])
