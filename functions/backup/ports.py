"""What the backup service and the backends need from the outside, and what they get
back: Protocols and the small records they exchange; nothing concrete.

- :class:`BackupStore`: a backend (:class:`functions.backup.logical.LogicalBackupStore`,
  :class:`functions.backup.managed.ManagedBackupStore`), and :class:`ExportPort`, the
  managed backend's started-then-polled exports
  (:class:`functions.backup.managed_export.ManagedExports`);
- :class:`Catalog`: the records, verification reports and drills (Firestore:
  :class:`functions.backup.store.BackupCatalog`);
- :class:`BackupDestination`: one region's storage of logical backups (a directory or a
  ``gs://`` prefix: :mod:`functions.backup.destinations`);
- :class:`PitrReader`: the database's point-in-time recovery settings (the Admin API:
  :class:`functions.backup.pitr.PitrInspector`);
- :class:`Documents`: one database's documents, read at a time and written in batches
  (Firestore's REST and gRPC data APIs: :class:`functions.backup.documents.FirestoreDocuments`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from functions.backup.policy import PitrState
from shared.models.backup import BackupBackend, BackupRecord
from shared.thresholds import BACKUP_PART_MAX_DOCS_COUNT, BACKUP_READ_PAGE_DOCS_COUNT

if TYPE_CHECKING:
    from shared.alerts.policy import AlertChange
    from shared.audit import Change
    from shared.models.backup import BackupStatus, DrillGate, DrillRecord, VerificationReport


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


class DataGateCheck(Protocol):
    """The pre-deploy gates' data checks on a restored copy
    (:class:`functions.deploy_guard.api.RestoredDataGates`): ``database`` is the database
    id the drill restored into, ``moment`` the time the data is from (the rates' windows
    end there). Never raises: a read that fails is a failed gate."""

    def __call__(self, database: str, moment: datetime) -> list[DrillGate]: ...


@dataclass(frozen=True)
class DrillOutcome:
    target: str
    ok: bool
    """Restored and counted as expected (the data gates are judged apart: ``gates``)."""
    documents: int
    duration_sec: float
    cleaned_up: bool
    detail: str
    data_moment: datetime | None = None
    """The moment the restored data is from (None: nothing was restored)."""
    gates: list[DrillGate] = field(default_factory=list)
    """The data gates on the restored copy, run before the cleanup (empty: not run)."""


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
        self,
        record: BackupRecord | None,
        point_in_time: datetime | None,
        region: str,
        tag: str,
        check: DataGateCheck | None = None,
    ) -> DrillOutcome:
        """Restore into a scratch target, check it, time it, and clean up. ``check``
        runs on the restored database, once restored and counted, before the cleanup."""
        ...


class Catalog(Protocol):
    """The backup catalog: one record per backup, the verification reports (with the
    alerts they raise and resolve) and the drills."""

    def save(self, record: BackupRecord) -> None: ...

    def get(self, backup_id: str) -> BackupRecord | None: ...

    def claim(self, record: BackupRecord) -> BackupRecord | None:
        """Create ``record`` unless its id exists: None when created, else the entry
        already there."""
        ...

    def advance(self, record: BackupRecord, expected: BackupStatus) -> bool:
        """Write ``record`` if its entry is still ``expected``."""
        ...

    def exporting(self) -> list[BackupRecord]: ...

    def apply_alerts(self, alerts: list[AlertChange], now: datetime) -> None: ...

    def all(self) -> list[BackupRecord]: ...

    def save_verification(self, report: VerificationReport, alerts: list[AlertChange]) -> None: ...

    def last_verification(self) -> VerificationReport | None: ...

    def save_drill(self, drill: DrillRecord, change: Change) -> None: ...

    def last_drill(self) -> DrillRecord | None: ...


class BackupDestination(Protocol):
    """One region's storage for logical backups."""

    def uri(self, key: str) -> str:
        """Where ``key`` is, for humans and the catalog."""
        ...

    def write(self, key: str, data: bytes) -> None: ...

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        ...

    def delete_tree(self, prefix: str) -> None:
        """Remove every object under ``prefix/``."""
        ...


class PitrReader(Protocol):
    """The database's point-in-time recovery settings."""

    def pitr_state(self) -> PitrState: ...


class Documents(Protocol):
    """One database's documents: what the logical backend reads a backup from, restores
    into, and drills on, and what the managed backend counts after an import.

    Documents come in two shapes: typed JSON ``{"name", "fields"}`` (the REST readers,
    the benchmark's baselines, and the restore of JSON parts) and
    ``google.firestore.v1.Document`` protobufs (:meth:`stream_documents`,
    :meth:`commit_documents`: the backup reader and the restore of protobuf parts)."""

    @property
    def database_path(self) -> str:
        """``projects/P/databases/D``."""
        ...

    @property
    def documents_path(self) -> str:
        """``projects/P/databases/D/documents``."""
        ...

    def with_database(self, database: str) -> Documents:
        """The same project's ``database`` (a restore's target, the drill database)."""
        ...

    def relative(self, name: str) -> str:
        """``projects/P/databases/D/documents/a/b`` -> ``a/b``."""
        ...

    def root_collections(self, read_time: datetime | None = None) -> list[str]:
        """The top-level collection ids, as of ``read_time`` when given."""
        ...

    def count(
        self, group: str | None, read_time: datetime | None = None, within: str | None = None
    ) -> int:
        """Documents in a collection group (or the database, or one top-level tree)."""
        ...

    def is_empty(self) -> bool: ...

    def pages(
        self,
        group: str | None,
        read_time: datetime | None,
        page_size: int = BACKUP_PART_MAX_DOCS_COUNT,
        *,
        names_only: bool = False,
        within: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of typed-JSON documents, all read at ``read_time``."""
        ...

    def stream(
        self,
        read_time: datetime | None,
        *,
        within: str | None = None,
        page_size: int = BACKUP_READ_PAGE_DOCS_COUNT,
    ) -> Iterator[dict[str, Any]]:
        """Every typed-JSON document (of one top-level tree) in name order."""
        ...

    def stream_documents(
        self,
        read_time: datetime,
        *,
        within: str,
        page_size: int = BACKUP_READ_PAGE_DOCS_COUNT,
    ) -> Iterator[Any]:
        """The ``Document`` protobufs of one top-level tree, in name order."""
        ...

    def commit(self, writes: list[dict[str, Any]]) -> None:
        """One commit of REST ``Write`` objects."""
        ...

    def commit_documents(self, docs: Iterable[Any]) -> None:
        """One commit of ``Document`` protobufs named in this database."""
        ...

    def delete_everything(self) -> int:
        """Remove every document (a scratch target's cleanup); how many."""
        ...
