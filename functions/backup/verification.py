"""Backup verification: every promise checked (freshness and a readable copy in each
region, PITR, retention) into a report, with the alerts it raises and resolves; and the
status view of the catalog."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from functions.backup import policy
from functions.backup.archive import BackupIntegrityError, WrongKey
from functions.backup.policy import describe_error
from functions.backup.ports import BackupStore, Catalog
from shared.errors import DependencyUnavailable
from shared.models.backup import (
    BackupRecord,
    BackupStatus,
    BackupStatusView,
    CheckResult,
    RegionLatest,
    VerificationReport,
)
from shared.thresholds import BACKUP_STATUS_RECENT_COUNT, RPO_SEC, RTO_SEC

log = logging.getLogger("pack391.backup")


def read_problem(store: BackupStore, record: BackupRecord | None, region: str) -> str | None:
    """What stops ``region``'s copy of ``record`` from being read back, as text (None:
    nothing). Raises only :class:`~shared.errors.DependencyUnavailable`: a dependency
    that did not answer within the run's budget says nothing about the copy, so it stops
    the run (skipped) instead of reporting the copy unreadable."""
    if record is None:
        return None
    try:
        store.verify(record, region)
    except DependencyUnavailable:
        raise
    except (BackupIntegrityError, WrongKey) as exc:
        return exc.message
    except Exception as exc:  # Storage 403, Admin API errors, OSError, ...
        log.exception("verifying %s in %s failed", record.backup_id, region)
        return f"cannot read {record.backup_id} in {region}: {describe_error(exc)}"
    return None


class Verification:
    """Checks the backups' promises, and reports the catalog's state."""

    def __init__(
        self,
        store: BackupStore,
        catalog: Catalog,
        housekeeping: Callable[[datetime], list[str]],
    ) -> None:
        """``housekeeping``: fail interrupted backups and apply retention (run first;
        the ids retention expired)."""
        self._store = store
        self._catalog = catalog
        self._housekeeping = housekeeping

    def verify(self, now: datetime, verification_id: str) -> VerificationReport:
        """Check every promise; write the report, and an alert when one is broken.

        Whatever a check raises (an integrity error, a Storage 403, an Admin API error)
        becomes that promise broken, with the error, in the report and the alert: a
        failing API never aborts the run before they are written. A dependency that did
        not answer within the run's budget (``DependencyUnavailable``) is not a broken
        promise: the run stops, skipped, and writes no report on what it could not read."""
        housekeeping_problem: str | None = None
        try:
            expired = self._housekeeping(now)
        except DependencyUnavailable:
            raise  # a stall is no broken promise: the run stops, skipped, reporting nothing
        except Exception as exc:
            log.exception("backup verification %s: housekeeping failed", verification_id)
            expired, housekeeping_problem = [], describe_error(exc)
        records = self._catalog.all()
        checks: list[CheckResult] = []
        latest = policy.latest_per_region(records, self._store.regions)
        for region, record in latest.items():
            checks.append(policy.freshness_check(region, record, now))
            checks.append(
                policy.readable_check(region, record, read_problem(self._store, record, region))
            )
        pitr_problem: str | None = None
        try:
            pitr = self._store.pitr_state()
        except DependencyUnavailable:
            raise
        except Exception as exc:
            log.exception("backup verification %s: PITR state unreadable", verification_id)
            pitr, pitr_problem = (
                policy.PitrState(supported=False, enabled=False),
                describe_error(exc),
            )
        checks.append(policy.pitr_check(pitr, pitr_problem))
        live = [r for r in records if r.status is not BackupStatus.EXPIRED]
        checks.append(policy.retention_check(live, now, housekeeping_problem))
        oldest_latest = min(
            (r.snapshot_time for r in latest.values() if r is not None), default=None
        )
        if any(r is None for r in latest.values()):
            oldest_latest = None
        broken = policy.problems(checks)
        report = VerificationReport(
            verification_id=verification_id,
            at=now,
            backend=self._store.backend,
            ok=not broken,
            checks=checks,
            measured_rpo_sec=policy.measured_rpo_sec(pitr, oldest_latest, now),
            expired_backup_ids=expired,
        )
        self._catalog.save_verification(report, policy.promise_alerts(checks, verification_id))
        if broken:
            log.warning("backup verification %s: %s", verification_id, "; ".join(broken))
        return report

    def status(self, now: datetime) -> BackupStatusView:
        records = self._catalog.all()
        latest = policy.latest_per_region(records, self._store.regions)
        per_region = {
            region: (
                RegionLatest(
                    backup_id=r.backup_id,
                    snapshot_time=r.snapshot_time,
                    age_sec=(now - r.snapshot_time).total_seconds(),
                    size_bytes=r.size_bytes,
                    document_count=r.document_count,
                    location=r.locations[region],
                )
                if r is not None
                else None
            )
            for region, r in latest.items()
        }
        verification = self._catalog.last_verification()
        drill = self._catalog.last_drill()
        recent = sorted(records, key=lambda r: r.backup_id, reverse=True)
        return BackupStatusView(
            backend=self._store.backend,
            latest_per_region=per_region,
            recent=recent[:BACKUP_STATUS_RECENT_COUNT],
            last_verification=verification,
            measured_rpo_sec=verification.measured_rpo_sec if verification else None,
            rpo_target_sec=RPO_SEC,
            last_drill=drill,
            last_drill_rto_sec=drill.duration_sec if drill else None,
            rto_target_sec=RTO_SEC,
        )
