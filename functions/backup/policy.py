"""Disaster-recovery decisions: pure functions of data and ``now``, no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.alerts.policy import AlertChange, AlertResolve, AlertSpec
from shared.errors import Pack391Error
from shared.models.alerts import AlertSource, Severity
from shared.models.backup import (
    BackupBackend,
    BackupRecord,
    BackupStatus,
    CheckResult,
    CheckStatus,
    DrillGate,
    DrillRecord,
    DrillVerdict,
)
from shared.models.deploy import GateStatus
from shared.thresholds import (
    BACKUP_EXPORT_DEADLINE_SEC,
    BACKUP_FRESHNESS_SLACK_SEC,
    BACKUP_INTERRUPTED_AFTER_SEC,
    BACKUP_INTERVAL_SEC,
    BACKUP_RETENTION_DAYS,
    BACKUP_RETENTION_MIN_KEEP_COUNT,
    BACKUP_SNAPSHOT_ALIGN_SEC,
    RPO_SEC,
    RTO_SEC,
)


def backup_id(now: datetime, suffix: str) -> str:
    """``20260101T120000Z-1a2b3c``: sorts by time; ``suffix`` (6 hex) makes it unique."""
    return f"{now:%Y%m%dT%H%M%SZ}-{suffix}"


def backup_slot(moment: datetime) -> datetime:
    """The backup interval (the hour) ``moment`` falls in: its start."""
    return align_down(moment, BACKUP_INTERVAL_SEC)


def slot_backup_id(slot: datetime) -> str:
    """The one backup id of an hour (``20260101T120000Z-<6 hex of the hour>``): every
    attempt of that hour's run (Cloud Scheduler's retries) computes the same id, so the
    catalog entry claimed under it is the one export of the hour."""
    return backup_id(slot, hashlib.sha256(slot.isoformat().encode()).hexdigest()[:6])


def drill_id(now: datetime, suffix: str) -> str:
    """``drill-20260101T120000Z-0a1b2c3d4e5f``: sorts by time; ``suffix`` (12 hex, from
    the server's random source, never from the request) makes it unique and names the
    drill's scratch clone (:func:`drill_tag`)."""
    return f"drill-{now:%Y%m%dT%H%M%SZ}-{suffix}"


def drill_tag(drill_id: str) -> str:
    """The random part of a drill id: the managed backend clones into ``drill-<tag>``
    (a valid database id: lowercase letters, digits, hyphens)."""
    return drill_id.rsplit("-", 1)[-1]


PITR_WINDOW_SEC = 7 * 24 * 60 * 60
"""How far back Firestore point-in-time recovery reaches: 7 days, Firestore's fixed
version retention with PITR enabled. A clone at an older minute is refused by the Admin
API, so it is refused here first, naming the field."""


def point_in_time_problem(point_in_time: datetime | None, now: datetime) -> str | None:
    """Why a requested restore point cannot be used, or None.

    The clone is taken at the point's whole minute (:data:`BACKUP_SNAPSHOT_ALIGN_SEC`),
    so that minute, not the point itself, must lie within the PITR window."""
    if point_in_time is None:
        return None
    if point_in_time > now:
        return "must not be in the future"
    oldest = now - timedelta(seconds=PITR_WINDOW_SEC)
    # compared before aligning: 0001-01-01T00:00:00+01:00 has no whole minute to align to
    if point_in_time < oldest or align_down(point_in_time, BACKUP_SNAPSHOT_ALIGN_SEC) < oldest:
        return f"is older than the {PITR_WINDOW_SEC // 86400}-day point-in-time recovery window"
    return None


def snapshot_time(backend: BackupBackend, now: datetime) -> datetime:
    """The instant a backup captures.

    Managed exports need a past, minute-aligned ``snapshot_time``; a logical backup
    reads every page at exactly ``now`` (Firestore's ``readTime``, microseconds)."""
    if backend is BackupBackend.MANAGED:
        return align_down(now, BACKUP_SNAPSHOT_ALIGN_SEC)
    return now


def align_down(moment: datetime, step_sec: int) -> datetime:
    """``moment`` floored to a whole multiple of ``step_sec`` since the epoch."""
    epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch - (epoch % step_sec), tz=moment.tzinfo)


def latest_complete(records: Iterable[BackupRecord], region: str) -> BackupRecord | None:
    """The newest complete backup that has a copy in ``region``."""
    candidates = [r for r in records if r.status is BackupStatus.COMPLETE and region in r.locations]
    return max(candidates, key=lambda r: r.snapshot_time, default=None)


def freshness_check(region: str, latest: BackupRecord | None, now: datetime) -> CheckResult:
    """Is there a complete backup younger than the interval plus slack in ``region``?"""
    limit = BACKUP_INTERVAL_SEC + BACKUP_FRESHNESS_SLACK_SEC
    name = f"fresh:{region}"
    if latest is None:
        return CheckResult(name=name, status=CheckStatus.BROKEN, detail="no complete backup")
    age = (now - latest.snapshot_time).total_seconds()
    status = CheckStatus.OK if age <= limit else CheckStatus.BROKEN
    return CheckResult(
        name=name,
        status=status,
        detail=f"latest {latest.backup_id} is {age:.0f}s old (limit {limit}s)",
    )


def readable_check(region: str, latest: BackupRecord | None, problem: str | None) -> CheckResult:
    """The verdict on reading back ``region``'s latest copy; ``problem`` None means it read."""
    name = f"readable:{region}"
    if latest is None:
        return CheckResult(name=name, status=CheckStatus.BROKEN, detail="nothing to read")
    if problem is not None:
        return CheckResult(name=name, status=CheckStatus.BROKEN, detail=problem)
    return CheckResult(
        name=name,
        status=CheckStatus.OK,
        detail=f"{latest.backup_id}: {latest.document_count} documents, every part intact",
    )


@dataclass(frozen=True)
class PitrState:
    """Point-in-time recovery as the database reports it."""

    supported: bool
    """False where the backend cannot have PITR (the emulator)."""
    enabled: bool
    retention_sec: float | None = None
    earliest_version_time: datetime | None = None


def pitr_check(state: PitrState, problem: str | None = None) -> CheckResult:
    """The 1-minute RPO is promised by PITR: it must be enabled on the database.
    ``problem``: reading the setting failed (the promise cannot be confirmed)."""
    if problem is not None:
        return CheckResult(
            name="pitr", status=CheckStatus.BROKEN, detail=f"cannot read the setting: {problem}"
        )
    if not state.supported:
        return CheckResult(
            name="pitr",
            status=CheckStatus.BROKEN,
            detail="point-in-time recovery is not available on this database (emulator): "
            "the RPO is the backup interval",
        )
    if not state.enabled:
        return CheckResult(
            name="pitr", status=CheckStatus.BROKEN, detail="point-in-time recovery is disabled"
        )
    return CheckResult(
        name="pitr",
        status=CheckStatus.OK,
        detail=f"enabled, versions kept {state.retention_sec or 0:.0f}s",
    )


def measured_rpo_sec(
    pitr: PitrState, latest_snapshot: datetime | None, now: datetime
) -> float | None:
    """The data a disaster at ``now`` would lose, in seconds.

    With PITR the database can be cloned at any whole minute still retained, so the
    loss is the time since the last whole minute (at most :data:`RPO_SEC`). Without
    it, everything since the newest complete backup."""
    if pitr.supported and pitr.enabled:
        if pitr.earliest_version_time is not None and pitr.earliest_version_time > now:
            return None
        return (now - align_down(now, RPO_SEC)).total_seconds()
    if latest_snapshot is None:
        return None
    return (now - latest_snapshot).total_seconds()


def expired_backups(records: Sequence[BackupRecord], now: datetime) -> list[BackupRecord]:
    """Complete backups past retention (never the newest
    :data:`BACKUP_RETENTION_MIN_KEEP_COUNT`), and failed ones past retention too."""
    cutoff = now - timedelta(days=BACKUP_RETENTION_DAYS)
    complete = sorted(
        (r for r in records if r.status is BackupStatus.COMPLETE),
        key=lambda r: r.snapshot_time,
        reverse=True,
    )
    kept = {r.backup_id for r in complete[:BACKUP_RETENTION_MIN_KEEP_COUNT]}
    return [
        r
        for r in records
        if r.status in (BackupStatus.COMPLETE, BackupStatus.FAILED)
        and r.backup_id not in kept
        and r.snapshot_time < cutoff
    ]


def interrupted_backups(records: Iterable[BackupRecord], now: datetime) -> list[BackupRecord]:
    """Backups still ``running`` long after they started: they will never finish."""
    limit = timedelta(seconds=BACKUP_INTERRUPTED_AFTER_SEC)
    return [r for r in records if r.status is BackupStatus.RUNNING and now - r.started_at > limit]


def export_age_sec(record: BackupRecord, now: datetime) -> float:
    return (now - record.started_at).total_seconds()


def export_stuck(record: BackupRecord, now: datetime) -> bool:
    """An export still unfinished (or never started) past :data:`BACKUP_EXPORT_DEADLINE_SEC`."""
    return (
        record.status is BackupStatus.EXPORTING
        and export_age_sec(record, now) > BACKUP_EXPORT_DEADLINE_SEC
    )


def export_abandoned(record: BackupRecord, now: datetime) -> bool:
    """An export unfinished past :data:`BACKUP_INTERRUPTED_AFTER_SEC`: cancelled and failed."""
    return (
        record.status is BackupStatus.EXPORTING
        and export_age_sec(record, now) > BACKUP_INTERRUPTED_AFTER_SEC
    )


def exports_check(stuck: Sequence[BackupRecord], now: datetime) -> CheckResult:
    """The promise that every hour's export finishes (and is copied) within its deadline:
    broken while one is stuck (its alert, ``backup:promise:exports``, is raised by the
    poll and resolved by the first poll that finds none)."""
    if stuck:
        detail = "; ".join(
            f"{r.backup_id} unfinished after {export_age_sec(r, now):.0f}s"
            + (f" ({r.error})" if r.error else "")
            for r in stuck
        )
        return CheckResult(
            name="exports",
            status=CheckStatus.BROKEN,
            detail=f"{detail} (deadline {BACKUP_EXPORT_DEADLINE_SEC}s)",
        )
    return CheckResult(
        name="exports",
        status=CheckStatus.OK,
        detail=f"no export unfinished past {BACKUP_EXPORT_DEADLINE_SEC}s",
    )


def retention_check(
    remaining: Sequence[BackupRecord], now: datetime, problem: str | None = None
) -> CheckResult:
    """After retention ran, nothing it should have removed is left. ``problem``: the
    housekeeping (retention, interrupted backups) failed."""
    if problem is not None:
        return CheckResult(
            name="retention", status=CheckStatus.BROKEN, detail=f"housekeeping failed: {problem}"
        )
    overdue = expired_backups(remaining, now)
    if overdue:
        ids = ", ".join(r.backup_id for r in overdue)
        return CheckResult(
            name="retention", status=CheckStatus.BROKEN, detail=f"past retention: {ids}"
        )
    return CheckResult(
        name="retention",
        status=CheckStatus.OK,
        detail=f"nothing older than {BACKUP_RETENTION_DAYS} days beyond the newest "
        f"{BACKUP_RETENTION_MIN_KEEP_COUNT}",
    )


def problems(checks: Iterable[CheckResult]) -> list[str]:
    """The broken promises, one line each."""
    return [f"{c.name}: {c.detail}" for c in checks if c.status is CheckStatus.BROKEN]


def latest_per_region(
    records: Sequence[BackupRecord], regions: Sequence[str]
) -> Mapping[str, BackupRecord | None]:
    return {region: latest_complete(records, region) for region in regions}


def projected_rto_sec(documents: int, docs_per_sec: float) -> float:
    """Restore time for ``documents`` at a measured rate."""
    return documents / docs_per_sec


def within_rto(duration_sec: float) -> bool:
    return duration_sec <= RTO_SEC


DRILL_GATES_ALERT_KEY = "backup:drill:data-gates"
"""One alert for the drills' data gates: raised by a drill whose restored data fails a
gate, resolved by the next drill whose restored data passes them all."""


def drill_verdict(restored: bool, gates: Sequence[DrillGate]) -> DrillVerdict:
    """A drill fails when the restore (or its count) failed, and also when the restored
    data fails a gate a release must pass: a copy a release could not go out on proves
    no recovery. A skipped gate (nothing to judge) does not fail it."""
    if not restored:
        return DrillVerdict.RESTORE_FAILED
    if any(g.status is GateStatus.FAIL for g in gates):
        return DrillVerdict.DATA_GATES_FAILED
    return DrillVerdict.PASSED


def gate_line(gate: DrillGate) -> str:
    """``payout_anomalies fail: 10.0% > 5.0%`` (a rate), ``database_indexes pass: 0 ...``."""
    if gate.value is None:
        return f"{gate.name} {gate.status.value}: {gate.detail}"
    op = ">" if gate.status is GateStatus.FAIL else "<="
    unit = gate.unit if gate.unit == "%" else f" {gate.unit}"
    return f"{gate.name} {gate.status.value}: {gate.value:g}{unit} {op} {gate.threshold:g}{unit}"


def gates_summary(gates: Sequence[DrillGate], moment: datetime | None) -> str:
    """The data gates in one line, for the drill's detail."""
    if not gates:
        return "data gates: not run"
    at = "" if moment is None else f" at {moment.isoformat()}"
    return f"data gates{at}: " + "; ".join(gate_line(g) for g in gates)


def unchecked_gate(database: str, problem: str) -> DrillGate:
    """The data check itself could not run: a failed gate (the copy was not proven)."""
    return DrillGate(
        name="data_gates",
        status=GateStatus.FAIL,
        database=database,
        detail=f"the data gates could not run: {problem}"[:500],
    )


def drill_alerts(drill: DrillRecord) -> list[AlertChange]:
    """A drill whose restored data fails a gate raises the drill alert (each such drill
    updates it); one whose data passes resolves it; a failed restore judged no data and
    changes nothing."""
    if drill.verdict is DrillVerdict.DATA_GATES_FAILED:
        failed = [g for g in drill.gates if g.status is GateStatus.FAIL]
        problem = "; ".join(gate_line(g) for g in failed)
        return [
            AlertSpec(
                source=AlertSource.BACKUP,
                kind="backup_drill_data_gates_failed",
                dedup_key=DRILL_GATES_ALERT_KEY,
                severity=Severity.HIGH,
                title=f"Backups: the data restored by drill {drill.drill_id} fails {problem}",
                evidence={
                    "check": "drill:data_gates",
                    "problem": f"drill:data_gates: {problem}",
                    "drillId": drill.drill_id,
                    "source": drill.source,
                    "dataMoment": None
                    if drill.data_moment is None
                    else iso_micro(drill.data_moment),
                    "failed": [g.model_dump(mode="json", by_alias=True) for g in failed],
                },
            )
        ]
    if drill.verdict is DrillVerdict.PASSED:
        return [
            AlertResolve(
                DRILL_GATES_ALERT_KEY,
                f"drill {drill.drill_id}: the restored data passes the data gates",
            )
        ]
    return []


def describe_error(exc: BaseException) -> str:
    """An error for a report or a drill: our own errors' message, or the type and text
    of anything else (a Google API error's text carries its HTTP status)."""
    if isinstance(exc, Pack391Error):
        return exc.message
    return f"{type(exc).__name__}: {exc}"[:500]


def mark(record: BackupRecord, status: BackupStatus, **changes: Any) -> BackupRecord:
    """``record`` moved to ``status``, with ``changes`` (field names) applied."""
    return record.model_copy(update={"status": status, **changes})


def promise_alert_key(check_name: str) -> str:
    """One alert per promise (``fresh:<region>``, ``readable:<region>``, ``pitr``,
    ``retention``) while it stays broken."""
    return f"backup:promise:{check_name}"


def promise_alerts(checks: Iterable[CheckResult], verification_id: str) -> list[AlertChange]:
    """A verification's alerts: each broken promise raises (or updates) its alert; each
    kept promise resolves its alert if one is active (verification passes again)."""
    out: list[AlertChange] = []
    for check in checks:
        key = promise_alert_key(check.name)
        if check.status is CheckStatus.BROKEN:
            out.append(
                AlertSpec(
                    source=AlertSource.BACKUP,
                    kind="backup_promise_broken",
                    dedup_key=key,
                    severity=Severity.HIGH,
                    title=f"Backups: promise {check.name} broken: {check.detail}",
                    evidence={
                        "verificationId": verification_id,
                        "check": check.name,
                        "problem": f"{check.name}: {check.detail}",
                    },
                )
            )
        else:
            out.append(AlertResolve(key, f"verification {verification_id}: {check.detail}"))
    return out


def iso_micro(moment: datetime) -> str:
    """RFC 3339 with microseconds (Firestore's ``readTime``, a manifest's snapshot time)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
