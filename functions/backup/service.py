"""Disaster recovery: backup, verify, report, drill. Reads through the ports
(:mod:`functions.backup.ports`), decides with the policy, writes through the ports.

:class:`BackupService` runs the backups (the hourly run, the managed exports' poll,
housekeeping); verification and the status view are :mod:`functions.backup.verification`,
the restore drills :mod:`functions.backup.drills`."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from functions.backup import policy
from functions.backup.drills import Drills
from functions.backup.policy import describe_error, mark
from functions.backup.ports import BackupStore, Catalog, DataGateCheck, ExportPort
from functions.backup.verification import Verification, read_problem
from shared.audit import Change
from shared.errors import DependencyUnavailable
from shared.models.backup import (
    BackupRecord,
    BackupStatus,
    BackupStatusView,
    DrillRecord,
    RestoreDrillRequest,
    VerificationReport,
)
from shared.thresholds import BACKUP_POLL_BUDGET_SEC

log = logging.getLogger("pack391.backup")


@dataclass(frozen=True)
class PollReport:
    """What one run of the export poll did, by backup id."""

    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)


class BackupService:
    def __init__(
        self, store: BackupStore, catalog: Catalog, data_gates: DataGateCheck | None = None
    ) -> None:
        """``data_gates``: the pre-deploy gates' data checks each drill runs on its
        restored copy (:class:`functions.backup.drills.Drills`)."""
        self._store = store
        self._catalog = catalog
        self._verification = Verification(store, catalog, self.housekeeping)
        self._drills = Drills(store, catalog, data_gates)

    # ---------------------------------------------------------------- backup

    def backup(self, now: datetime, scheduled: datetime | None = None) -> BackupRecord:
        """The hour's backup; then fail interrupted backups and apply retention.

        Managed: the export is started and recorded, never waited on (:meth:`poll`
        finishes it), once per hour of ``scheduled`` (Cloud Scheduler's schedule time,
        the same for every retry of a run; default ``now``). Logical: the whole backup,
        into every region, recorded in the catalog.

        A backup is recorded ``complete`` only after it was written whole. Under a
        Firestore stall (:mod:`shared.deadline`) the run stops at the catalog step that
        does not answer (skipped): before the ``running`` entry, nothing is recorded; after
        it, the entry stays ``running`` (marking it failed needs Firestore too) until
        housekeeping marks it failed as interrupted and deletes its partial files."""
        exports = self._store.exports
        if exports is not None:
            record = self._start_export(exports, now, scheduled or now)
            self.housekeeping(now)
            return record
        backend = self._store.backend
        record = BackupRecord(
            backup_id=policy.backup_id(now, secrets.token_hex(3)),
            backend=backend,
            status=BackupStatus.RUNNING,
            snapshot_time=policy.snapshot_time(backend, now),
            started_at=now,
        )
        self._catalog.save(record)
        started = time.perf_counter()
        try:
            created = self._store.create(record.backup_id, record.snapshot_time)
        except Exception as exc:
            self._catalog.save(mark(record, BackupStatus.FAILED, error=str(exc)[:1000]))
            raise
        done = mark(
            record,
            BackupStatus.COMPLETE,
            completed_at=now + timedelta(seconds=time.perf_counter() - started),
            locations=created.locations,
            document_count=created.document_count,
            collection_counts=created.collection_counts,
            size_bytes=created.size_bytes,
            key_id=created.key_id,
            operations=created.operations,
        )
        self._catalog.save(done)
        self.housekeeping(now)
        return done

    def _start_export(
        self, exports: ExportPort, now: datetime, scheduled: datetime
    ) -> BackupRecord:
        """Claim the hour's id in the catalog (one transaction), then start its export
        and record the operation. A retry of the hour finds the claim: it starts nothing
        when the export is recorded, adopts one already running for this backup
        (``operations.list``) when the attempt before died after starting it, and starts
        it only when there is none."""
        backup_id = policy.slot_backup_id(policy.backup_slot(scheduled))
        record = BackupRecord(
            backup_id=backup_id,
            backend=self._store.backend,
            status=BackupStatus.EXPORTING,
            snapshot_time=policy.snapshot_time(self._store.backend, now),
            started_at=now,
            locations={exports.export_region: exports.export_location(backup_id)},
            key_id=getattr(self._store, "key_id", None),
            export_region=exports.export_region,
        )
        existing = self._catalog.claim(record)
        if existing is not None:
            if existing.status is not BackupStatus.EXPORTING or existing.operations:
                log.info("backup %s: already %s", backup_id, existing.status.value)
                return existing
            record = existing
            found = exports.find(backup_id)
            if found is not None:
                log.warning("backup %s: adopting export %s started before", backup_id, found)
                return self._record_operation(record, exports.export_region, found)
        try:
            operation = exports.start(backup_id, record.snapshot_time)
        except Exception as exc:
            # Left claimed, without an operation: the scheduler's retry starts it; after
            # the deadline the poll fails it (and the alert is raised).
            self._catalog.advance(
                record.model_copy(update={"error": f"start: {describe_error(exc)}"[:1000]}),
                BackupStatus.EXPORTING,
            )
            raise
        return self._record_operation(record, exports.export_region, operation)

    def _record_operation(self, record: BackupRecord, region: str, operation: str) -> BackupRecord:
        started = record.model_copy(update={"operations": {region: operation}, "error": None})
        self._catalog.advance(started, BackupStatus.EXPORTING)
        return started

    # ------------------------------------------------------------------ poll

    def poll(
        self, now: datetime, poll_id: str, budget_sec: float = BACKUP_POLL_BUDGET_SEC
    ) -> PollReport:
        """Finish started exports: read each operation; a failed one is marked failed;
        a finished one is copied into every other region, verified there, and marked
        complete; one unfinished past the deadline raises the backup alert (resolved
        by the first poll that finds none), and past the interrupted limit is
        cancelled and failed. Work stops after ``budget_sec`` (the next run resumes)."""
        exports = self._store.exports
        report = PollReport()
        if exports is None:
            return report
        deadline = time.monotonic() + budget_sec
        for record in sorted(self._catalog.exporting(), key=lambda r: r.backup_id):
            if time.monotonic() > deadline:
                report.running.append(record.backup_id)
                continue
            try:
                outcome = self._poll_one(exports, record, now, deadline)
            except DependencyUnavailable:
                raise  # a stalled dependency: the run stops here, skipped (nothing marked)
            except Exception as exc:  # an API error on one backup: the others still run
                log.exception("backup %s: poll failed", record.backup_id)
                outcome = "running"
                # kept on the entry: the stuck alert names it if it lasts
                problem = f"poll: {describe_error(exc)}"[:1000]
                current = self._catalog.get(record.backup_id) or record
                self._catalog.advance(
                    current.model_copy(update={"error": problem}), BackupStatus.EXPORTING
                )
            getattr(report, outcome).append(record.backup_id)
            if outcome == "running" and policy.export_stuck(record, now):
                report.stuck.append(record.backup_id)
        stuck = [r for r in self._catalog.exporting() if r.backup_id in report.stuck]
        check = policy.exports_check(stuck, now)
        self._catalog.apply_alerts(policy.promise_alerts([check], poll_id), now)
        if stuck:
            log.warning("backup poll %s: %s", poll_id, check.detail)
        return report

    def _poll_one(
        self, exports: ExportPort, record: BackupRecord, now: datetime, deadline: float
    ) -> str:
        """One exporting backup moved on as far as it goes: ``completed``, ``failed``
        or ``running``."""
        operation = record.operations.get(exports.export_region)
        if operation is None:
            operation = exports.find(record.backup_id)
            if operation is None:
                if policy.export_stuck(record, now):
                    failed = mark(
                        record,
                        BackupStatus.FAILED,
                        error=f"the export never started ({record.error or 'no operation'})",
                    )
                    self._catalog.advance(failed, BackupStatus.EXPORTING)
                    return "failed"
                return "running"
            record = self._record_operation(record, exports.export_region, operation)
        progress = exports.progress(operation)
        if not progress.done:
            if policy.export_abandoned(record, now):
                exports.cancel(operation)
                failed = mark(
                    record,
                    BackupStatus.FAILED,
                    error=f"export {operation} still {progress.state} after "
                    f"{policy.export_age_sec(record, now):.0f}s: cancelled",
                )
                self._catalog.advance(failed, BackupStatus.EXPORTING)
                return "failed"
            return "running"
        if progress.error is not None or progress.state != "SUCCESSFUL":
            failed = mark(
                record,
                BackupStatus.FAILED,
                error=f"export {operation} {progress.state}: {progress.error or 'no error given'}"[
                    :1000
                ],
            )
            self._catalog.advance(failed, BackupStatus.EXPORTING)
            return "failed"
        if not exports.replicate(record.backup_id, deadline):
            return "running"
        done = mark(
            record,
            BackupStatus.COMPLETE,
            completed_at=progress.end_time or now,
            locations=exports.locations(record.backup_id),
            document_count=progress.documents,
            size_bytes=progress.size_bytes,
            error=None,
        )
        problems = [
            p for region in self._store.regions if (p := read_problem(self._store, done, region))
        ]
        if problems:
            # copies are made again (only what differs) by the next run; past the deadline
            # the alert says so
            self._catalog.advance(
                record.model_copy(update={"error": "; ".join(problems)[:1000]}),
                BackupStatus.EXPORTING,
            )
            return "running"
        self._catalog.advance(done, BackupStatus.EXPORTING)
        return "completed"

    def housekeeping(self, now: datetime) -> list[str]:
        """Mark interrupted backups failed (removing their partial files) and delete
        backups past retention. Returns the ids retention expired."""
        records = self._catalog.all()
        for stuck in policy.interrupted_backups(records, now):
            self._store.delete(stuck)
            self._catalog.save(mark(stuck, BackupStatus.FAILED, error="interrupted"))
        expired: list[str] = []
        for old in policy.expired_backups(self._catalog.all(), now):
            self._store.delete(old)
            self._catalog.save(mark(old, BackupStatus.EXPIRED))
            expired.append(old.backup_id)
        return expired

    # ------------------------------------------------ verification and drills

    def verify(self, now: datetime, verification_id: str) -> VerificationReport:
        """Check every promise; write the report, and an alert when one is broken
        (:meth:`functions.backup.verification.Verification.verify`)."""
        return self._verification.verify(now, verification_id)

    def status(self, now: datetime) -> BackupStatusView:
        return self._verification.status(now)

    def drill(self, req: RestoreDrillRequest, change: Change) -> DrillRecord:
        """Restore into a scratch target, check, time, clean up, and record
        (:meth:`functions.backup.drills.Drills.drill`)."""
        return self._drills.drill(req, change)
