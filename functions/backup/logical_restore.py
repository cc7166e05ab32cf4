"""The logical backend's restore path: a backup written into a target database (every
part checked before the first write; the counts checked there after the last), and the
drill that restores into a scratch database, counts, and empties it again."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from functions.backup import archive
from functions.backup.archive import BackupIntegrityError, Manifest
from functions.backup.logical_read import LogicalReader
from functions.backup.policy import describe_error
from functions.backup.ports import DataGateCheck, Documents, DrillOutcome
from shared.errors import FailedPrecondition
from shared.models.backup import BackupRecord, DrillGate
from shared.thresholds import BACKUP_PART_MAX_DOCS_COUNT, BACKUP_RESTORE_BATCH_DOCS_COUNT


class NonEmptyTarget(FailedPrecondition):
    """A restore refused to write into a database that already holds documents."""


def _rebase(value: Any, old: str, new: str) -> Any:
    """Point references into the source database at the target database instead."""
    if isinstance(value, dict):
        ref = value.get("referenceValue")
        if isinstance(ref, str) and (ref == old or ref.startswith(old + "/")):
            return {"referenceValue": new + ref[len(old) :]}
        return {k: _rebase(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, old, new) for v in value]
    return value


def _rebase_value(value: Any, old: str, new: str) -> None:
    """:func:`_rebase` for a ``google.firestore.v1.Value`` protobuf, in place."""
    kind = value.WhichOneof("value_type")
    if kind == "reference_value":
        ref = value.reference_value
        if ref == old or ref.startswith(old + "/"):
            value.reference_value = new + ref[len(old) :]
    elif kind == "map_value":
        for item in value.map_value.fields.values():
            _rebase_value(item, old, new)
    elif kind == "array_value":
        for item in value.array_value.values:
            _rebase_value(item, old, new)


@dataclass(frozen=True)
class RestoreResult:
    documents: int
    group_counts: dict[str, int]
    """Documents per collection group in the target after the restore."""
    duration_sec: float


class LogicalRestorer:
    """Restores logical backups, and runs the logical backend's drills."""

    def __init__(
        self,
        source: Documents,
        copies: LogicalReader,
        *,
        drill_database: str = "pack391-drill",
        workers: int = 2,
    ) -> None:
        """``workers`` write a restore's batches at once."""
        self._source = source
        self._copies = copies
        self._drill_database = drill_database
        self._workers = workers

    def restore(
        self,
        backup_id: str,
        region: str,
        target: Documents,
        *,
        overwrite: bool = False,
    ) -> RestoreResult:
        """Write the backup into ``target`` and check the counts there.

        Every part's SHA-256 is checked before the first write, so a damaged backup
        writes nothing; a non-empty target is refused unless ``overwrite``."""
        started = time.perf_counter()
        manifest = self._copies.manifest(backup_id, region)
        for entry in manifest.parts:
            archive.check_part(entry, self._copies.read(region, backup_id, entry.name))
        if not overwrite and not target.is_empty():
            raise NonEmptyTarget(
                f"the target {target.database_path} is not empty: restore into an empty "
                "database, or pass the overwrite flag",
                target=target.database_path,
            )
        if manifest.schema_version >= 3:
            written = self._write_documents(backup_id, region, manifest, target)
        else:
            written = self._write_json(backup_id, region, manifest, target)
        counts = {group: target.count(group) for group in manifest.group_counts}
        short = {g: n for g, n in counts.items() if n < manifest.group_counts[g]}
        if short or (not overwrite and counts != manifest.group_counts):
            raise BackupIntegrityError(
                f"restored counts {counts} differ from the manifest {manifest.group_counts}"
            )
        return RestoreResult(written, counts, time.perf_counter() - started)

    def _write_json(
        self, backup_id: str, region: str, manifest: Manifest, target: Documents
    ) -> int:
        """Restore NDJSON parts (schema versions 1 and 2) through REST commits."""
        old, new = manifest.source_database, target.database_path
        written = 0
        batch: list[dict[str, Any]] = []
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            pending = []
            for docs in self._copies.documents(backup_id, region, manifest):
                for doc in docs:
                    fields = doc["fields"] if old == new else _rebase(doc["fields"], old, new)
                    name = f"{target.documents_path}/{doc['name']}"
                    batch.append({"update": {"name": name, "fields": fields}})
                    if len(batch) >= BACKUP_RESTORE_BATCH_DOCS_COUNT:
                        pending.append(pool.submit(target.commit, batch))
                        written += len(batch)
                        batch = []
            if batch:
                pending.append(pool.submit(target.commit, batch))
                written += len(batch)
            for future in pending:
                future.result()
        return written

    def _write_documents(
        self, backup_id: str, region: str, manifest: Manifest, target: Documents
    ) -> int:
        """Restore protobuf parts (schema version 3) through gRPC commits: each
        ``Document`` renamed into the target, its output-only times dropped, and its
        references rebased only when it holds one into the source database."""
        old_db, new_db = manifest.source_database, target.database_path
        old_docs = f"{old_db}/documents/"
        new_docs = f"{target.documents_path}/"
        cut = len(old_docs)
        needle = old_db.encode()
        rebase = old_db != new_db
        written = 0
        step = BACKUP_RESTORE_BATCH_DOCS_COUNT
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            pending: list[Future[None]] = []
            for docs in self._copies.documents(backup_id, region, manifest):
                for doc in docs:
                    name = doc.name
                    if not name.startswith(old_docs):
                        raise BackupIntegrityError(
                            f"document {name} of backup {backup_id} is not in {old_db}"
                        )
                    doc.name = new_docs + name[cut:]
                    doc.ClearField("create_time")
                    doc.ClearField("update_time")
                    if rebase and needle in doc.SerializeToString():
                        for value in doc.fields.values():
                            _rebase_value(value, old_db, new_db)
                for start in range(0, len(docs), step):
                    chunk = docs[start : start + step]
                    pending.append(pool.submit(target.commit_documents, chunk))
                    written += len(chunk)
                # at most a few parts' batches in flight: memory stays bounded
                while len(pending) > 4 * self._workers * (BACKUP_PART_MAX_DOCS_COUNT // step):
                    pending.pop(0).result()
            for future in pending:
                future.result()
        return written

    def drill(
        self,
        record: BackupRecord | None,
        point_in_time: datetime | None,
        region: str,
        tag: str,
        check: DataGateCheck | None = None,
    ) -> DrillOutcome:
        if point_in_time is not None or record is None:
            raise FailedPrecondition(
                "the logical backend restores backups, not points in time (that needs PITR "
                "and the managed backend)",
                field="pointInTime",
            )
        target = self._source.with_database(self._drill_database)
        if not target.is_empty():
            raise NonEmptyTarget(
                f"the drill database {target.database_path} is not empty: it is not ours to empty",
                target=target.database_path,
            )
        started = time.perf_counter()
        duration: float | None = None
        counted = 0
        failure: str | None = None
        gates: list[DrillGate] = []
        cleanup = "not run"
        cleaned = False
        try:
            result = self.restore(record.backup_id, region, target)
            # the documents the target really holds, counted there after the restore
            counted = sum(result.group_counts.values())
            duration = time.perf_counter() - started
            if check is not None:
                # the restored copy, before the cleanup: its data as of the backup's moment
                gates = check(self._drill_database, record.snapshot_time)
        except Exception as exc:  # recorded in the drill, never lost
            failure = describe_error(exc)
        finally:
            if duration is None:
                duration = time.perf_counter() - started
            cleaned, cleanup = _empty_scratch(target)
        ok = failure is None and counted == record.document_count
        detail = (
            f"restore failed: {failure}"
            if failure is not None
            else f"restored and counted {counted} documents "
            f"({'matches' if ok else 'differs from'} the catalog's {record.document_count})"
        )
        return DrillOutcome(
            target=target.database_path,
            ok=ok,
            documents=counted,
            duration_sec=duration,
            cleaned_up=cleaned,
            detail=f"{detail}; cleanup: {cleanup}",
            data_moment=record.snapshot_time if failure is None else None,
            gates=gates,
        )


def _empty_scratch(target: Documents) -> tuple[bool, str]:
    """Remove every document of a drill's scratch database: (empty afterwards, what
    happened). Never raises: a failed cleanup is recorded, not hidden."""
    try:
        deleted = target.delete_everything()
        empty = target.is_empty()
    except Exception as exc:
        return False, f"failed: {describe_error(exc)}"
    return empty, f"{deleted} documents removed" + ("" if empty else ", but some remain")
