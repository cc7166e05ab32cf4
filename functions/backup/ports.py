"""The backup store port: what the service needs from a backend, and what a backend
reports. Implemented by :class:`functions.backup.logical_store.LogicalBackupStore` and
:class:`functions.backup.managed_store.ManagedBackupStore`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from functions.backup.policy import PitrState
from shared.models.backup import BackupBackend, BackupRecord


@dataclass(frozen=True)
class CreatedBackup:
    """What a store reports about a backup it finished."""

    locations: dict[str, str]
    document_count: int
    collection_counts: dict[str, int]
    size_bytes: int
    key_id: str | None
    operations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportProgress:
    """A managed export's long-running operation as last read (``operations.get``)."""

    done: bool
    error: str | None
    """The operation's ``error`` (a failed or cancelled export), or None."""
    state: str
    """``ExportDocumentsMetadata.operationState``: PROCESSING, SUCCESSFUL, FAILED, ..."""
    documents: int
    size_bytes: int
    end_time: datetime | None = None


class ExportPort(Protocol):
    """A backend whose backups are started, then polled to completion (managed)."""

    export_region: str

    def export_location(self, backup_id: str) -> str:
        """Where the export of ``backup_id`` is written (``gs://`` prefix)."""
        ...

    def locations(self, backup_id: str) -> dict[str, str]:
        """Region -> where that region's copy of ``backup_id`` is."""
        ...

    def start(self, backup_id: str, snapshot_time: datetime) -> str:
        """Start the export; its long-running operation's name. Returns at once."""
        ...

    def find(self, backup_id: str) -> str | None:
        """The operation of an export of ``backup_id`` already started, if any."""
        ...

    def progress(self, operation: str) -> ExportProgress: ...

    def cancel(self, operation: str) -> None: ...

    def replicate(self, backup_id: str, deadline: float) -> bool:
        """Copy the finished export into every other region (server-side); True when
        every copy is in place, False when ``deadline`` (``time.monotonic()``) came
        first (the next call resumes)."""
        ...


@dataclass(frozen=True)
class DrillOutcome:
    target: str
    ok: bool
    documents: int
    duration_sec: float
    cleaned_up: bool
    detail: str


class BackupStore(Protocol):
    """Where backups go and come back from; one implementation per backend."""

    backend: BackupBackend
    regions: Sequence[str]

    @property
    def exports(self) -> ExportPort | None:
        """Set for a backend whose backups are started and polled (managed); None when
        :meth:`create` takes the whole backup (logical)."""
        ...

    def create(self, backup_id: str, snapshot_time: datetime) -> CreatedBackup:
        """Take a consistent backup at ``snapshot_time`` into every region."""
        ...

    def verify(self, record: BackupRecord, region: str) -> None:
        """Raise :class:`BackupIntegrityError` unless ``region``'s copy is complete and
        readable."""
        ...

    def delete(self, record: BackupRecord) -> bool:
        """Remove every copy; False when the storage removes it itself (lifecycle)."""
        ...

    def pitr_state(self) -> PitrState: ...

    def drill(
        self, record: BackupRecord | None, point_in_time: datetime | None, region: str, tag: str
    ) -> DrillOutcome:
        """Restore into a scratch target, check it, time it, and clean up."""
        ...
