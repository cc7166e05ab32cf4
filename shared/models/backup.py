"""Disaster recovery: the backup catalog, verification reports, drills and requests."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, Field, StrictStr

from shared.models import DocId, RequestModel, WireModel
from shared.thresholds import BACKUP_REASON_MAX_CHARS, BACKUP_REGIONS


class BackupBackend(enum.StrEnum):
    """Where backups go. Closed: these two."""

    MANAGED = "managed"
    """Firestore managed export into a Cloud Storage bucket per region; PITR clones."""
    LOGICAL = "logical"
    """Encrypted NDJSON parts with a manifest, one copy per region directory."""


class BackupStatus(enum.StrEnum):
    """A catalog entry's state. Only ``complete`` backups count for any promise."""

    RUNNING = "running"
    """Started; no manifest yet."""
    COMPLETE = "complete"
    """Every regional copy written and its manifest (or export) finished."""
    FAILED = "failed"
    """Stopped with an error, or interrupted (still running long after it started)."""
    EXPIRED = "expired"
    """Deleted by retention."""


class CheckStatus(enum.StrEnum):
    """The verdict on one promise."""

    OK = "ok"
    BROKEN = "broken"


class BackupRecord(WireModel):
    """``pack391_backups/{backupId}``: one backup, with a copy in every region."""

    backup_id: str
    backend: BackupBackend
    status: BackupStatus
    snapshot_time: datetime
    started_at: datetime
    completed_at: datetime | None = None
    locations: dict[str, str] = Field(default_factory=dict)
    """Region -> where that region's copy is (directory or ``gs://`` prefix)."""
    document_count: int = 0
    collection_counts: dict[str, int] = Field(default_factory=dict)
    """Top-level collection -> documents in it and all its subcollections."""
    size_bytes: int = 0
    """Size of one regional copy."""
    key_id: str | None = None
    """Fingerprint of the encryption key (logical) or the CMEK key name (managed)."""
    operations: dict[str, str] = Field(default_factory=dict)
    """Managed: region -> the export's long-running operation name."""
    error: str | None = None


class CheckResult(WireModel):
    """One promise checked by ``pack391_verifyBackups``."""

    name: str
    """``fresh:<region>``, ``readable:<region>``, ``pitr``, ``retention``."""
    status: CheckStatus
    detail: str


class VerificationReport(WireModel):
    """``pack391_backup_verifications/{id}``."""

    verification_id: str
    at: datetime
    backend: BackupBackend
    ok: bool
    checks: list[CheckResult]
    measured_rpo_sec: float | None
    expired_backup_ids: list[str] = Field(default_factory=list)
    """Backups retention deleted during this run."""


class BackupAlert(WireModel):
    """``pack391_backup_alerts/{id}``: a broken promise, for whoever watches alerts."""

    at: datetime
    kind: str = "backup_promise_broken"
    verification_id: str
    problems: list[str]


class DrillRecord(WireModel):
    """``pack391_backup_drills/{id}``: one restore drill and its measured RTO."""

    drill_id: str
    at: datetime
    backend: BackupBackend
    source: str
    """The backup id, or ``pitr:<time>`` for a point-in-time clone."""
    target: str
    ok: bool
    documents: int
    duration_sec: float
    """Restore and check: the measured RTO."""
    docs_per_sec: float | None
    rto_target_sec: int
    within_rto: bool
    cleaned_up: bool
    detail: str
    requested_by: str


class RegionLatest(WireModel):
    backup_id: str
    snapshot_time: datetime
    age_sec: float
    size_bytes: int
    document_count: int
    location: str


class BackupStatusView(WireModel):
    """What ``pack391_getBackupStatus`` answers."""

    backend: BackupBackend
    latest_per_region: dict[str, RegionLatest | None]
    recent: list[BackupRecord]
    last_verification: VerificationReport | None
    measured_rpo_sec: float | None
    rpo_target_sec: int
    last_drill: DrillRecord | None
    last_drill_rto_sec: float | None
    rto_target_sec: int


Region = Annotated[StrictStr, Field(pattern="^(" + "|".join(BACKUP_REGIONS) + ")$")]
Reason = Annotated[StrictStr, Field(min_length=1, max_length=BACKUP_REASON_MAX_CHARS)]
BackupId = Annotated[DocId, Field(pattern=r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")]


class GetBackupStatusRequest(RequestModel):
    """No fields: the whole status."""


class RestoreDrillRequest(RequestModel):
    backup_id: BackupId | None = None
    """The backup to restore (default: the latest complete one)."""
    point_in_time: AwareDatetime | None = None
    """Managed backend: clone the database as it was at this time (PITR) instead."""
    region: Region | None = None
    """Read this region's copy (default: the first region)."""
    reason: Reason | None = None
