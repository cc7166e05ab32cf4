"""Disaster recovery (``pack391-backup``, :mod:`functions.backup`): the hourly snapshot, RTO
and RPO, retention, and the sizes and deadlines of exports and restores.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BACKUP_EXPORT_DEADLINE_SEC",
    "BACKUP_FRESHNESS_SLACK_SEC",
    "BACKUP_INTERRUPTED_AFTER_SEC",
    "BACKUP_INTERVAL_SEC",
    "BACKUP_PART_MAX_DOCS_COUNT",
    "BACKUP_POLL_BUDGET_SEC",
    "BACKUP_READ_PAGE_DOCS_COUNT",
    "BACKUP_REASON_MAX_CHARS",
    "BACKUP_REGIONS",
    "BACKUP_RESTORE_BATCH_DOCS_COUNT",
    "BACKUP_RETENTION_DAYS",
    "BACKUP_RETENTION_MIN_KEEP_COUNT",
    "BACKUP_SNAPSHOT_ALIGN_SEC",
    "BACKUP_STATUS_RECENT_COUNT",
    "RPO_SEC",
    "RTO_SEC",
]

BACKUP_INTERVAL_SEC: Final[int] = 60 * 60
"""Hourly snapshots."""

BACKUP_REGIONS: Final[tuple[str, ...]] = ("us-central1", "europe-west1", "asia-northeast1")
"""Every backup is kept in each of these regions."""

RTO_SEC: Final[int] = 15 * 60
"""Recovery time objective."""

RPO_SEC: Final[int] = 60
"""Recovery point objective (point-in-time recovery)."""

BACKUP_FRESHNESS_SLACK_SEC: Final[int] = 15 * 60
"""A region's latest complete backup may be this much older than the hourly interval
before verification calls the hourly promise broken (a late or slow run)."""

BACKUP_RETENTION_DAYS: Final[int] = 30
"""Complete backups older than this are deleted (the spec names no figure: 30 days of
hourly snapshots, cold storage)."""

BACKUP_RETENTION_MIN_KEEP_COUNT: Final[int] = 3
"""Never delete below this many complete backups, whatever their age."""

BACKUP_INTERRUPTED_AFTER_SEC: Final[int] = 2 * 60 * 60
"""A backup still ``running`` this long after it started was interrupted: it is
marked ``failed`` and its partial files are removed."""

BACKUP_EXPORT_DEADLINE_SEC: Final[int] = 45 * 60
"""A managed export (the hourly Firestore ``ExportDocuments`` operation, with its
server-side copies to the other regions) not finished this long after it started is
stuck: the poll raises the backup alert (``backup:promise:exports``) while it stays
so, before the next hour's export starts. Past :data:`BACKUP_INTERRUPTED_AFTER_SEC`
the poll cancels the operation and marks the backup ``failed``."""

BACKUP_POLL_BUDGET_SEC: Final[int] = 240
"""Work one run of ``pack391_pollBackupExports`` does (operation reads, copies,
verification) before it stops and leaves the rest to the next run (every 5 minutes,
timeout 300 s): a copy interrupted here is resumed, never restarted."""

BACKUP_PART_MAX_DOCS_COUNT: Final[int] = 5000
"""Documents per encrypted part (and per page read from Firestore)."""

BACKUP_READ_PAGE_DOCS_COUNT: Final[int] = 50_000
"""Documents per query of the parallel backup reader (streamed, so not held in memory):
the emulator pays about a second of CPU per query with a ``readTime`` whatever its size,
so pages of 5,000 cost a third of a backup there (docs/benchmarks.md)."""

BACKUP_RESTORE_BATCH_DOCS_COUNT: Final[int] = 500
"""Documents per commit when restoring (Firestore's limit per commit)."""

BACKUP_SNAPSHOT_ALIGN_SEC: Final[int] = 60
"""Managed exports and PITR clones take a snapshot time aligned to the whole minute."""

BACKUP_STATUS_RECENT_COUNT: Final[int] = 10
"""How many recent backups ``pack391_getBackupStatus`` lists."""

BACKUP_REASON_MAX_CHARS: Final[int] = 500
"""Longest free-text ``reason`` an admin may attach to a restore drill."""
