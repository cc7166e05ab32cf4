"""Disaster recovery: the backup backend, its keys, roots, destinations and buckets, and the
restore drill's database."""

from __future__ import annotations

from firebase_functions import params

BACKUP_BACKEND = params.StringParam(
    "PACK391_BACKUP_BACKEND",
    default="auto",
    label="Backup backend",
    description=(
        "managed (Firestore managed export + PITR clones), logical (encrypted NDJSON), "
        "or auto: managed when deployed, logical under the emulator."
    ),
)

BACKUP_KEY = params.SecretParam(
    "PACK391_BACKUP_KEY",
    label="Backup encryption key",
    description="Logical backups: AES-256-GCM key, 32 bytes in base64 (Secret Manager).",
)

BACKUP_LOCAL_ROOT = params.StringParam(
    "PACK391_BACKUP_LOCAL_ROOT",
    default=".local/backups",
    label="Logical backup root",
    description="Logical backups: one directory per region under this root.",
)

BACKUP_DESTINATIONS = params.StringParam(
    "PACK391_BACKUP_DESTINATIONS",
    default="",
    label="Logical backup destinations",
    description=(
        "Logical backups: region=directory or region=gs://bucket/prefix, comma-separated, "
        "overriding <root>/<region> per region."
    ),
)

BACKUP_BUCKETS = params.StringParam(
    "PACK391_BACKUP_BUCKETS",
    default="",
    label="Managed export buckets",
    description="Managed backups: region=gs://bucket,... one Coldline bucket per region.",
)

BACKUP_KMS_KEY = params.StringParam(
    "PACK391_BACKUP_KMS_KEY",
    default="",
    label="Backup CMEK key",
    description="Managed backups: the Cloud KMS key the buckets encrypt with (recorded).",
)

BACKUP_DRILL_DATABASE = params.StringParam(
    "PACK391_BACKUP_DRILL_DATABASE",
    default="pack391-drill",
    label="Restore drill database",
    description="Logical drills restore into this (empty) database id, then empty it.",
)
