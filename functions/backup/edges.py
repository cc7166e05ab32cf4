"""Disaster recovery: the ``pack391_*`` edges.

Each edge parses, authorizes (the role is in its decorator) and calls the service.
"""

from __future__ import annotations

import logging

from functions.backup.wiring import backup_service
from shared.auth import Role
from shared.config import BACKUP_BACKEND, BACKUP_KEY
from shared.edge import CallContext, ScheduledContext, callable_function, scheduled_function
from shared.models.backup import (
    BackupStatusView,
    DrillRecord,
    GetBackupStatusRequest,
    RestoreDrillRequest,
)

log = logging.getLogger("pack391.backup")

BACKUP_SCHEDULE = "0 * * * *"
"""``pack391_backupFirestore`` runs at the top of every hour."""

VERIFY_SCHEDULE = "30 3 * * *"
"""``pack391_verifyBackups`` runs daily at 03:30 UTC (away from the hourly backup)."""

POLL_SCHEDULE = "*/5 * * * *"
"""``pack391_pollBackupExports`` runs every 5 minutes: a finished export is copied,
verified and marked complete within 5 minutes plus its own work."""

BACKUP_START_TIMEOUT_SEC = 120
"""Managed: the hourly function claims the hour (one transaction), lists the database's
operations when a retry finds a claim without one, starts the export (one call) and
records its operation, then applies retention: seconds of work, waited on nowhere."""

BACKUP_LOGICAL_TIMEOUT_SEC = 1800
"""Logical (``PACK391_BACKUP_BACKEND=logical``): the hourly function reads and writes the
whole backup itself."""

POLL_TIMEOUT_SEC = 300
"""``pack391_pollBackupExports``: its work stops after ``BACKUP_POLL_BUDGET_SEC`` (240 s),
so a run ends before its timeout and before the next run starts."""


@scheduled_function(
    schedule=BACKUP_SCHEDULE,
    uses_redis=False,  # Firestore and storage only: no Redis AUTH secret
    # Deployed with the default backend (auto -> managed) it only starts the export;
    # the logical backend takes the whole backup inside the function.
    timeout_sec=BACKUP_BACKEND.equals("logical").then(
        BACKUP_LOGICAL_TIMEOUT_SEC, BACKUP_START_TIMEOUT_SEC
    ),
    secrets=[BACKUP_KEY],
    # Retried, a lost hour being a lost RPO: managed, every attempt of an hour claims the
    # same id (Cloud Scheduler's schedule time), so a retry never starts a second export
    # (it adopts or starts the one export); logical, every attempt is a new backup under
    # its own id (a failed one is marked FAILED, never overwritten). 2 retries 2 then 4
    # min later stay well inside the hour before the next run.
    retry_count=2,
    min_backoff_seconds=120,
    max_backoff_seconds=600,
    max_doublings=2,
)
def pack391_backupFirestore(ctx: ScheduledContext) -> None:
    """Managed: start the hour's export and record it (``exporting``); logical: take a
    consistent backup into the three regions. Either way recorded in the catalog."""
    record = backup_service().backup(ctx.now, ctx.schedule_time)
    log.info(
        "backup %s: %s, %d documents, %d bytes per copy",
        record.backup_id,
        record.status.value,
        record.document_count,
        record.size_bytes,
    )


@scheduled_function(
    schedule=POLL_SCHEDULE,
    uses_redis=False,  # Firestore and storage only: no Redis AUTH secret
    timeout_sec=POLL_TIMEOUT_SEC,
    # the configured store is built on each run, and the logical one needs the key
    secrets=[BACKUP_KEY],
    # Not retried: the next run, 5 minutes later, does exactly what a retry would.
    retry_count=0,
)
def pack391_pollBackupExports(ctx: ScheduledContext) -> None:
    """Finish started exports: copy each finished one into the other regions, verify and
    mark it complete, mark failed ones failed, raise the backup alert for a stuck one."""
    report = backup_service().poll(ctx.now, ctx.request_id)
    if report.completed or report.failed or report.stuck:
        log.info(
            "backup poll: completed %s, failed %s, running %s, stuck %s",
            report.completed,
            report.failed,
            report.running,
            report.stuck,
        )


@scheduled_function(
    schedule=VERIFY_SCHEDULE,
    uses_redis=False,  # Firestore and storage only: no Redis AUTH secret
    timeout_sec=1800,
    secrets=[BACKUP_KEY],
    # Retried: it only reads the backups and adds a report (and an alert) per run, so a
    # repeat is harmless, while a failed run would otherwise wait a day; 5, 10, 20 min.
    retry_count=3,
    min_backoff_seconds=300,
    max_backoff_seconds=1800,
    max_doublings=2,
)
def pack391_verifyBackups(ctx: ScheduledContext) -> None:
    """Check every backup promise; write the report and an alert when one is broken."""
    report = backup_service().verify(ctx.now, ctx.request_id)
    log.info("backup verification %s: ok=%s", report.verification_id, report.ok)


# The secret: status() builds the configured store, and the logical backend needs the key
# to be built (deployed without it, every status call would be FAILED_PRECONDITION).
@callable_function(role=Role.OPS, request=GetBackupStatusRequest, secrets=[BACKUP_KEY])
def pack391_getBackupStatus(ctx: CallContext, req: GetBackupStatusRequest) -> BackupStatusView:
    """The catalog, the last verification, the measured RPO and the last drill's RTO."""
    return backup_service().status(ctx.now)


@callable_function(
    role=Role.ADMIN, request=RestoreDrillRequest, timeout_sec=3600, secrets=[BACKUP_KEY]
)
def pack391_restoreDrill(ctx: CallContext, req: RestoreDrillRequest) -> DrillRecord:
    """Restore a backup (or a point in time) into a scratch target, check, time, clean up."""
    change = ctx.change("backup.restore_drill", req.reason)
    return backup_service().drill(req, change)
