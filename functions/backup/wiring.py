"""What the backup edges are wired to: the backend the params choose (managed: the
Firestore Admin API and Cloud Storage; logical: encrypted parts in a directory or a
``gs://`` prefix per region), its destinations and key, and the catalog."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from google.cloud.firestore_admin_v1 import FirestoreAdminClient

from functions.backup import archive
from functions.backup.archive import BackupKey
from functions.backup.destinations import destination_for
from functions.backup.documents import FirestoreDocuments
from functions.backup.logical import SOURCE_DIR, LogicalBackupStore
from functions.backup.managed import ManagedBackupStore
from functions.backup.pitr import PitrInspector
from functions.backup.ports import BackupStore
from functions.backup.service import BackupService
from functions.backup.store import BackupCatalog
from functions.deploy_guard.api import RestoredDataGates
from shared.config import (
    BACKUP_BACKEND,
    BACKUP_BUCKETS,
    BACKUP_DESTINATIONS,
    BACKUP_DRILL_DATABASE,
    BACKUP_KEY,
    BACKUP_KMS_KEY,
    BACKUP_LOCAL_ROOT,
    is_emulated,
    project_id,
)
from shared.errors import FailedPrecondition
from shared.firestore import get_db
from shared.models.backup import BackupBackend
from shared.thresholds import BACKUP_REGIONS
from shared.wiring import wired


def parse_destinations(text: str, param: str) -> dict[str, str]:
    """``region=dest,region=dest`` -> mapping; every region named once, known regions only."""
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        region, sep, dest = item.partition("=")
        region, dest = region.strip(), dest.strip()
        if not sep or not dest or region not in BACKUP_REGIONS or region in found:
            raise FailedPrecondition(
                f"{param}: {item!r} is not region=destination with a region of "
                f"{', '.join(BACKUP_REGIONS)} (each once)"
            )
        found[region] = dest
    return found


def backup_destinations(root: str, overrides: str) -> dict[str, str]:
    """One destination per region: ``root/<region>`` unless overridden by a directory
    or a ``gs://bucket/prefix``."""
    chosen = parse_destinations(overrides, "PACK391_BACKUP_DESTINATIONS")
    base = Path(root) if Path(root).is_absolute() else SOURCE_DIR / root
    dirs: dict[str, str] = {}
    for region in BACKUP_REGIONS:
        dest = chosen.get(region) or str(base / region)
        if not dest.startswith("gs://") and not Path(dest).is_absolute():
            dest = str(SOURCE_DIR / dest)
        dirs[region] = dest
    return dirs


DEV_KEY_FILE = SOURCE_DIR / ".local" / "backup-dev.key"
"""Local stack only: generated once when ``PACK391_BACKUP_KEY`` is unset. Never beside
the backups (which live under ``.local/backups/<region>``) and never deployed."""


def backup_key(secret_b64: str, emulated: bool, dev_key_file: Path = DEV_KEY_FILE) -> BackupKey:
    """The configured key; under the emulator, a generated development key."""
    if secret_b64.strip():
        return BackupKey.from_base64(secret_b64)
    if not emulated:
        raise FailedPrecondition(
            "PACK391_BACKUP_KEY is not set: create a secret of 32 random bytes in base64"
        )
    if not dev_key_file.is_file():
        dev_key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dev_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(os.urandom(archive.KEY_BYTES)).decode() + "\n")
    return BackupKey.from_base64(dev_key_file.read_text())


def admin_client(endpoint: str | None = None) -> FirestoreAdminClient:
    """The Firestore Admin API client (REST); ``endpoint`` points it elsewhere (tests)."""
    if endpoint is None:
        return FirestoreAdminClient(transport="rest")
    from google.auth.credentials import AnonymousCredentials

    return FirestoreAdminClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )


def configured_store(project: str) -> BackupStore:
    """The backend the params choose (``auto``: managed when deployed, logical locally)."""
    emulated = is_emulated()
    choice = BACKUP_BACKEND.value.strip().lower() or "auto"
    if choice == "auto":
        choice = "logical" if emulated else "managed"
    if choice == BackupBackend.MANAGED.value:
        buckets = parse_destinations(BACKUP_BUCKETS.value, "PACK391_BACKUP_BUCKETS")
        missing = [r for r in BACKUP_REGIONS if r not in buckets]
        if missing:
            raise FailedPrecondition(f"PACK391_BACKUP_BUCKETS has no bucket for {missing}")
        return ManagedBackupStore(
            admin_client(), project, buckets, kms_key=BACKUP_KMS_KEY.value or None
        )
    if choice != BackupBackend.LOGICAL.value:
        raise FailedPrecondition(f"PACK391_BACKUP_BACKEND={choice!r}: use managed or logical")
    source = FirestoreDocuments.for_environment(project)
    pitr = None if emulated else PitrInspector(admin_client(), source.database_path)
    return LogicalBackupStore(
        source,
        backup_key(BACKUP_KEY.value, emulated),
        {
            region: destination_for(dest)
            for region, dest in backup_destinations(
                BACKUP_LOCAL_ROOT.value, BACKUP_DESTINATIONS.value
            ).items()
        },
        drill_database=BACKUP_DRILL_DATABASE.value,
        pitr=pitr,
    )


def data_gates(project: str) -> RestoredDataGates:
    """The pre-deploy gates' data checks a drill runs on its restored copy: counts in
    that database, its indexes through the Admin API (none under the emulator, which
    needs no index: the index gate is skipped there)."""
    return RestoredDataGates(
        project,
        get_db,
        None if is_emulated() else admin_client(),
        SOURCE_DIR / "firestore.indexes.json",
    )


@wired(redis=False)
def _service_for(project: str) -> BackupService:
    return BackupService(configured_store(project), BackupCatalog(get_db()), data_gates(project))


def backup_service() -> BackupService:
    """The service wired to the configured backend and Firestore."""
    return _service_for(project_id())


def reset_backup_service() -> None:
    """Forget the wired service (tests and the CLI change the configuration)."""
    _service_for.cache_clear()
