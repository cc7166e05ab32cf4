"""The logical backend: every document streamed through Firestore's gRPC API (any
Firestore, the emulator included) at one ``readTime``, as the raw ``Document``
protobufs, into encrypted parts (see :mod:`functions.backup.archive`) written to one
destination per region (a directory or a ``gs://`` prefix,
:mod:`functions.backup.destinations`). It runs deployed too (to ``gs://``): "logical"
names the backend (``PACK391_BACKUP_BACKEND=logical``), not where it runs.

:class:`LogicalBackupStore` is the :class:`functions.backup.ports.BackupStore` the
service sees, over three parts: the write path (:mod:`functions.backup.logical_write`),
the read and verify path (:mod:`functions.backup.logical_read`) and the restore path
with the drills (:mod:`functions.backup.logical_restore`). The REST readers that came
before the gRPC one are kept as the benchmark's baselines (and their backups are still
restored)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from functions.backup.archive import BackupKey, Manifest
from functions.backup.destinations import LocalDirectory
from functions.backup.logical_read import LogicalReader
from functions.backup.logical_restore import LogicalRestorer, RestoreResult
from functions.backup.logical_write import BACKUP_READ_THREADS_COUNT, LogicalWriter
from functions.backup.policy import PitrState
from functions.backup.ports import (
    BackupDestination,
    CreatedBackup,
    DataGateCheck,
    Documents,
    DrillOutcome,
    PitrReader,
)
from shared.models.backup import BackupBackend, BackupRecord
from shared.thresholds import BACKUP_PART_MAX_DOCS_COUNT, BACKUP_READ_PAGE_DOCS_COUNT

SOURCE_DIR = Path(__file__).resolve().parent.parent.parent
"""The deployed bundle's source directory (firestore.rules and the index file are there)."""


class LogicalBackupStore:
    """Encrypted parts in one destination per region (directory or gs:// prefix)."""

    backend = BackupBackend.LOGICAL

    @property
    def exports(self) -> None:
        """None: a logical backup is taken whole by :meth:`create`, inside the hourly
        function."""
        return None

    def __init__(
        self,
        source: Documents,
        key: BackupKey,
        destinations: Mapping[str, BackupDestination | Path],
        *,
        drill_database: str = "pack391-drill",
        pitr: PitrReader | None = None,
        workers: int = 2,
        readers: int = BACKUP_READ_THREADS_COUNT,
        reader: str = "grpc",
        meta_dir: Path = SOURCE_DIR,
        part_docs: int = BACKUP_PART_MAX_DOCS_COUNT,
        read_page: int = BACKUP_READ_PAGE_DOCS_COUNT,
    ) -> None:
        """``workers`` seal and write parts (and write a restore's batches);
        ``readers`` read top-level collection trees at once; ``reader`` is one of
        :data:`functions.backup.logical_write.READERS` (the REST ones are the
        benchmark's baselines)."""
        self.copies = LogicalReader(
            key,
            {
                region: LocalDirectory(d) if isinstance(d, Path) else d
                for region, d in destinations.items()
            },
        )
        self.regions: Sequence[str] = self.copies.regions
        self._writer = LogicalWriter(
            source,
            self.copies,
            meta_dir,
            workers=workers,
            readers=readers,
            reader=reader,
            part_docs=part_docs,
            read_page=read_page,
        )
        self._restorer = LogicalRestorer(
            source, self.copies, drill_database=drill_database, workers=workers
        )
        self._pitr = pitr

    def location(self, region: str, backup_id: str) -> str:
        return self.copies.location(region, backup_id)

    def create(self, backup_id: str, snapshot_time: datetime) -> CreatedBackup:
        return self._writer.create(backup_id, snapshot_time)

    def manifest(self, backup_id: str, region: str) -> Manifest:
        return self.copies.manifest(backup_id, region)

    def verify(self, record: BackupRecord, region: str) -> None:
        self.copies.verify(record.backup_id, region)

    def bundle_file(self, backup_id: str, region: str, name: str) -> bytes:
        """A saved rules or index file, decrypted."""
        return self.copies.bundle_file(backup_id, region, name)

    def restore(
        self,
        backup_id: str,
        region: str,
        target: Documents,
        *,
        overwrite: bool = False,
    ) -> RestoreResult:
        """Write the backup into ``target`` and check the counts there (a damaged backup
        writes nothing; a non-empty target is refused unless ``overwrite``)."""
        return self._restorer.restore(backup_id, region, target, overwrite=overwrite)

    def delete(self, record: BackupRecord) -> bool:
        for region in self.regions:
            self.copies.destinations[region].delete_tree(record.backup_id)
        return True

    def pitr_state(self) -> PitrState:
        if self._pitr is None:
            return PitrState(supported=False, enabled=False)
        return self._pitr.pitr_state()

    def drill(
        self,
        record: BackupRecord | None,
        point_in_time: datetime | None,
        region: str,
        tag: str,
        check: DataGateCheck | None = None,
    ) -> DrillOutcome:
        return self._restorer.drill(record, point_in_time, region, tag, check)
