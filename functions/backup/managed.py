"""The managed backend: one Firestore managed export per hour, copied server-side into
the other regions' buckets, PITR and clones, through
``google.cloud.firestore_admin_v1.FirestoreAdminClient`` and ``google-cloud-storage``.

Why one export and copies, not three exports, and not one bucket:

- Every export is billed one document read per document exported, so three exports
  of the same snapshot cost three reads per document; one export costs one
  (https://cloud.google.com/firestore/pricing, "Import and export operations";
  https://cloud.google.com/firestore/docs/manage-data/export-import).
- No single bucket spans the three backup regions (us-central1, europe-west1,
  asia-northeast1): "A dual-region is a storage location type that specifies two
  regions within the same continent", pairings "in separate continents" are refused,
  and a multi-region (US, EU, ASIA) is "a large geographic area" of one continent
  (https://cloud.google.com/storage/docs/locations,
  https://cloud.google.com/storage/docs/dual-regions). A dual- or multi-region bucket
  could stand in for two regions of one continent at most, never for the three.
- So the export goes to one bucket (:attr:`export_region`, the first region: the one
  beside the database, us-central1 for ``nam5``), and Cloud Storage copies it into the
  other two with ``objects.rewrite`` (a copy inside Cloud Storage: no Firestore read;
  "may require multiple calls" across locations, each resumed with its
  ``rewriteToken``: https://cloud.google.com/storage/docs/json_api/v1/objects/rewrite).
  Each copy is checked object by object (name, MD5, size) against the export.
- Nothing waits: the hourly function starts the export (``ExportDocuments`` is a
  long-running operation: "The export occurs in the background and its progress can be
  monitored and managed via the Operation resource that is created. The output of an
  export may only be used once the associated operation is done",
  https://cloud.google.com/firestore/docs/reference/rest/v1/projects.databases/exportDocuments)
  and ``pack391_pollBackupExports`` reads the operation (``operations.get``), copies
  and verifies (:mod:`functions.backup.service`).

The exports (start, poll, copy) are :class:`functions.backup.managed_export.ManagedExports`;
this module is the backend the service sees: verification, drills by clone, PITR.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.firestore_admin_v1 import FirestoreAdminClient
from google.cloud.firestore_admin_v1.types import (
    CloneDatabaseRequest,
    ExportDocumentsMetadata,
    OperationState,
    PitrSnapshot,
)
from google.longrunning import operations_pb2  # type: ignore[import-untyped]

from functions.backup.archive import BackupIntegrityError
from functions.backup.documents import FirestoreDocuments
from functions.backup.managed_export import OVERALL_METADATA_SUFFIX, ManagedExports, fingerprint
from functions.backup.pitr import PitrInspector
from functions.backup.policy import PitrState, align_down, describe_error
from functions.backup.ports import CreatedBackup, DataGateCheck, Documents, DrillOutcome
from shared.clock import iso
from shared.errors import FailedPrecondition, InvalidInput
from shared.gcp import budget
from shared.models.backup import BackupBackend, BackupRecord, DrillGate
from shared.thresholds import BACKUP_SNAPSHOT_ALIGN_SEC

_OPERATION_TIMEOUT_SEC = 3600.0


class ManagedBackupStore:
    """One Firestore managed export per backup into the export region's bucket, copied
    by Cloud Storage into every other region's bucket (:attr:`exports`); drills clone
    from PITR."""

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
        documents: Documents | None = None,
        storage: Any = None,
        export_region: str | None = None,
    ) -> None:
        """``documents``: the data API, to count a drill's clone (default: this project's
        Firestore, the emulator when ``FIRESTORE_EMULATOR_HOST`` is set); ``storage``: a
        ``google.cloud.storage.Client`` (default: one with the runtime's credentials,
        made on first use); ``export_region``: the bucket the export is written to
        (default: the first region)."""
        self._admin = admin
        self._project = project
        self._documents = documents
        self._database_path = f"projects/{project}/databases/{database}"
        self._exports = ManagedExports(
            admin,
            project,
            self._database_path,
            buckets,
            storage=storage,
            export_region=export_region,
        )
        self.regions: Sequence[str] = self._exports.regions
        self._kms_key = kms_key or None
        self._timeout = timeout_sec
        self._pitr = PitrInspector(admin, self._database_path)

    @property
    def exports(self) -> ManagedExports:
        """Managed backups are started, then polled to completion."""
        return self._exports

    @property
    def key_id(self) -> str | None:
        return self._kms_key

    def create(self, backup_id: str, snapshot_time: datetime) -> CreatedBackup:
        raise FailedPrecondition(
            "managed backups are started (BackupService.backup) and polled to completion "
            "(BackupService.poll), never taken in one call"
        )

    def verify(self, record: BackupRecord, region: str) -> None:
        """The export's operation finished successfully, and ``region``'s copy holds
        every file of the export (the export region: its files, with the overall
        metadata; any other: the same names, MD5s and sizes as the export)."""
        source_region = record.export_region or region
        name = record.operations.get(source_region)
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
        if record.export_region is None:
            return  # an older backup: one export per region, its operation is the proof
        source = {
            n: fingerprint(b)
            for n, b in self._exports.objects(source_region, record.backup_id).items()
        }
        if not any(n.endswith(OVERALL_METADATA_SUFFIX) for n in source):
            raise BackupIntegrityError(
                f"the export of {record.backup_id} in {source_region} has no "
                f"*{OVERALL_METADATA_SUFFIX} (incomplete)"
            )
        if region == source_region:
            return
        copy = {
            n: fingerprint(b) for n, b in self._exports.objects(region, record.backup_id).items()
        }
        missing = sorted(set(source) - set(copy))
        differ = sorted(n for n in source if n in copy and copy[n] != source[n])
        if missing or differ:
            raise BackupIntegrityError(
                f"the copy of {record.backup_id} in {region} differs from the export in "
                f"{source_region}: missing {_few(missing)}, different {_few(differ)}"
            )

    def delete(self, record: BackupRecord) -> bool:
        # Exports are deleted by each bucket's lifecycle rule (age = retention days):
        # the functions' service account needs no delete right on cold storage.
        return False

    def pitr_state(self) -> PitrState:
        return self._pitr.pitr_state()

    def drill(
        self,
        record: BackupRecord | None,
        point_in_time: datetime | None,
        region: str,
        tag: str,
        check: DataGateCheck | None = None,
    ) -> DrillOutcome:
        moment = point_in_time or (record.snapshot_time if record else None)
        if moment is None:
            raise FailedPrecondition("no backup and no point in time to restore")
        moment = align_down(moment, BACKUP_SNAPSHOT_ALIGN_SEC)
        target_id = f"drill-{tag}"
        target = f"projects/{self._project}/databases/{target_id}"
        started = time.perf_counter()
        duration: float | None = None
        gates: list[DrillGate] = []
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
            # within the drill's budget; the cleanup below runs whatever it left
            wait = budget.timeout(budget.FIRESTORE_ADMIN, self._timeout)
            operation.result(timeout=wait)  # type: ignore[no-untyped-call]
            clone = self._admin.get_database(name=target)
            if clone.name != target or not clone.uid:
                raise FailedPrecondition(f"the clone {target} is not ready")
            documents = self._documents or FirestoreDocuments.for_environment(self._project)
            counted = documents.with_database(target_id).count(None)
            duration = time.perf_counter() - started
            if check is not None:
                # the clone, before it is deleted: the data as of the moment cloned
                gates = check(target_id, moment)
        except Exception as exc:  # recorded in the drill, never lost
            failure = describe_error(exc)
        finally:
            if duration is None:
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
            data_moment=moment if failure is None else None,
            gates=gates,
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


def _few(names: Iterable[str]) -> str:
    listed = list(names)
    if not listed:
        return "none"
    return ", ".join(listed[:3]) + (f" and {len(listed) - 3} more" if len(listed) > 3 else "")
