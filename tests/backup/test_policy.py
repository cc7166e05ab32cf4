"""The backup policy: literal tables, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.backup import policy
from functions.backup.policy import PitrState
from shared.alerts.policy import AlertSpec
from shared.models.backup import BackupBackend, BackupRecord, BackupStatus, CheckStatus

NOW = datetime(2026, 11, 27, 12, 30, 45, 500000, tzinfo=UTC)


def rec(
    backup_id: str,
    age_h: float,
    status: BackupStatus = BackupStatus.COMPLETE,
    regions: tuple[str, ...] = ("us-central1", "europe-west1", "asia-northeast1"),
) -> BackupRecord:
    at = NOW - timedelta(hours=age_h)
    return BackupRecord(
        backup_id=backup_id,
        backend=BackupBackend.LOGICAL,
        status=status,
        snapshot_time=at,
        started_at=at,
        locations={r: f"/b/{r}/{backup_id}" for r in regions},
    )


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        (BackupBackend.MANAGED, datetime(2026, 11, 27, 12, 30, tzinfo=UTC)),
        (BackupBackend.LOGICAL, NOW),
    ],
)
def test_snapshot_time(backend: BackupBackend, expected: datetime) -> None:
    assert policy.snapshot_time(backend, NOW) == expected


def test_backup_id_sorts_by_time() -> None:
    assert policy.backup_id(NOW, "abc123") == "20261127T123045Z-abc123"


OLD = "is older than the 7-day point-in-time recovery window"


@pytest.mark.parametrize(
    ("offset_sec", "problem"),
    [
        (None, None),
        (-3600, None),
        (0, None),
        (1, "must not be in the future"),
        (10 * 365 * 86400, "must not be in the future"),
        # 7 days back is 12:30:45.5; a clone is taken at the whole minute
        (-7 * 86400 + 15, None),  # 12:31:00.5 -> 12:31:00, within
        (-7 * 86400, OLD),  # 12:30:45.5 itself, but its minute 12:30:00 is not
        (-7 * 86400 - 1, OLD),
        (-30 * 86400, OLD),
        (-2000 * 365 * 86400, OLD),
    ],
)
def test_point_in_time(offset_sec: int | None, problem: str | None) -> None:
    when = None if offset_sec is None else NOW + timedelta(seconds=offset_sec)
    assert policy.point_in_time_problem(when, NOW) == problem


@pytest.mark.parametrize(
    ("age_h", "status"),
    [
        (0.0, CheckStatus.OK),
        (1.0, CheckStatus.OK),
        (1.25, CheckStatus.OK),
        (1.26, CheckStatus.BROKEN),
        (30.0, CheckStatus.BROKEN),
    ],
)
def test_freshness(age_h: float, status: CheckStatus) -> None:
    assert policy.freshness_check("us-central1", rec("a", age_h), NOW).status is status


def test_freshness_without_a_backup_is_broken() -> None:
    check = policy.freshness_check("us-central1", None, NOW)
    assert (check.status, check.detail) == (CheckStatus.BROKEN, "no complete backup")


def test_latest_complete_ignores_running_failed_and_other_regions() -> None:
    records = [
        rec("old", 5),
        rec("running", 0.1, BackupStatus.RUNNING),
        rec("failed", 0.2, BackupStatus.FAILED),
        rec("elsewhere", 0.3, regions=("europe-west1",)),
        rec("good", 1),
    ]
    assert (r := policy.latest_complete(records, "us-central1")) and r.backup_id == "good"
    assert (r := policy.latest_complete(records, "europe-west1")) and r.backup_id == "elsewhere"


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (PitrState(supported=True, enabled=True, retention_sec=604800), CheckStatus.OK),
        (PitrState(supported=True, enabled=False), CheckStatus.BROKEN),
        (PitrState(supported=False, enabled=False), CheckStatus.BROKEN),
    ],
)
def test_pitr(state: PitrState, status: CheckStatus) -> None:
    assert policy.pitr_check(state).status is status


@pytest.mark.parametrize(
    ("state", "latest_age_h", "expected"),
    [
        (PitrState(True, True), 5.0, 45.5),
        (PitrState(True, False), 0.5, 1800.0),
        (PitrState(False, False), 2.0, 7200.0),
        (PitrState(False, False), None, None),
        (PitrState(True, True, earliest_version_time=NOW + timedelta(minutes=1)), 1.0, None),
    ],
)
def test_measured_rpo(state: PitrState, latest_age_h: float | None, expected: float | None) -> None:
    latest = None if latest_age_h is None else NOW - timedelta(hours=latest_age_h)
    assert policy.measured_rpo_sec(state, latest, NOW) == expected


def test_retention_keeps_recent_and_the_newest_three() -> None:
    records = [
        rec("fresh", 1),
        rec("month", 24 * 29),
        rec("expired-1", 24 * 31),
        rec("expired-2", 24 * 40),
        rec("failed-old", 24 * 45, BackupStatus.FAILED),
        rec("running-old", 24 * 45, BackupStatus.RUNNING),
    ]
    assert [r.backup_id for r in policy.expired_backups(records, NOW)] == [
        "expired-2",
        "failed-old",
    ]
    only_old = [rec(f"o{i}", 24 * (40 + i)) for i in range(5)]
    assert [r.backup_id for r in policy.expired_backups(only_old, NOW)] == ["o3", "o4"]
    assert policy.retention_check(records, NOW).status is CheckStatus.BROKEN
    assert policy.retention_check(records[:3], NOW).status is CheckStatus.OK


@pytest.mark.parametrize(
    ("status", "age_h", "interrupted"),
    [
        (BackupStatus.RUNNING, 1.9, False),
        (BackupStatus.RUNNING, 2.1, True),
        (BackupStatus.COMPLETE, 9.0, False),
    ],
)
def test_interrupted(status: BackupStatus, age_h: float, interrupted: bool) -> None:
    found = policy.interrupted_backups([rec("x", age_h, status)], NOW)
    assert bool(found) is interrupted


@pytest.mark.parametrize(("duration", "ok"), [(60.0, True), (900.0, True), (900.5, False)])
def test_within_rto(duration: float, ok: bool) -> None:
    assert policy.within_rto(duration) is ok


def test_projected_rto() -> None:
    assert policy.projected_rto_sec(1_000_000, 5000.0) == 200.0


def test_readable_and_problems() -> None:
    good = policy.readable_check("us-central1", rec("a", 0), None)
    bad = policy.readable_check("us-central1", rec("a", 0), "part parts/x failed")
    assert (good.status, bad.status) == (CheckStatus.OK, CheckStatus.BROKEN)
    assert policy.problems([good, bad]) == ["readable:us-central1: part parts/x failed"]


def test_drill_ids_and_tags() -> None:
    drill_id = policy.drill_id(NOW, "0a1b2c3d4e5f")
    assert drill_id == "drill-20261127T123045Z-0a1b2c3d4e5f"
    assert policy.drill_tag(drill_id) == "0a1b2c3d4e5f"


def test_a_check_that_could_not_run_is_broken_with_its_error() -> None:
    enabled = PitrState(supported=True, enabled=True, retention_sec=604800)
    assert policy.pitr_check(enabled).status is CheckStatus.OK
    pitr = policy.pitr_check(enabled, "Forbidden: 403 GET ...")
    assert (pitr.status, pitr.detail) == (
        CheckStatus.BROKEN,
        "cannot read the setting: Forbidden: 403 GET ...",
    )
    retention = policy.retention_check([], NOW, "Forbidden: 403 DELETE ...")
    assert retention.status is CheckStatus.BROKEN
    assert retention.detail == "housekeeping failed: Forbidden: 403 DELETE ..."


# ------------------------------------- managed exports: started, then polled


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 27, 12, 2, 0, tzinfo=UTC),  # the first retry
        datetime(2026, 11, 27, 12, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_every_attempt_of_an_hour_gets_the_hours_one_id(moment: datetime) -> None:
    slot = policy.backup_slot(moment)
    assert slot == datetime(2026, 11, 27, 12, tzinfo=UTC)
    backup_id = policy.slot_backup_id(slot)
    assert backup_id == policy.slot_backup_id(datetime(2026, 11, 27, 12, tzinfo=UTC))
    assert backup_id.startswith("20261127T120000Z-") and len(backup_id) == 23
    assert backup_id != policy.slot_backup_id(datetime(2026, 11, 27, 13, tzinfo=UTC))


@pytest.mark.parametrize(
    ("status", "age_min", "stuck", "abandoned"),
    [
        (BackupStatus.EXPORTING, 44, False, False),
        (BackupStatus.EXPORTING, 46, True, False),
        (BackupStatus.EXPORTING, 121, True, True),
        (BackupStatus.COMPLETE, 500, False, False),
        (BackupStatus.RUNNING, 500, False, False),
    ],
)
def test_stuck_and_abandoned_exports(
    status: BackupStatus, age_min: int, stuck: bool, abandoned: bool
) -> None:
    record = rec("x", age_min / 60, status)
    assert policy.export_stuck(record, NOW) is stuck
    assert policy.export_abandoned(record, NOW) is abandoned


def test_the_exports_promise() -> None:
    ok = policy.exports_check([], NOW)
    assert (ok.name, ok.status) == ("exports", CheckStatus.OK)
    stuck = rec("20261127T110000Z-abcdef", 1.0, BackupStatus.EXPORTING)
    broken = policy.exports_check([stuck], NOW)
    assert broken.status is CheckStatus.BROKEN
    assert broken.detail == "20261127T110000Z-abcdef unfinished after 3600s (deadline 2700s)"
    (alert,) = policy.promise_alerts([broken], "poll-1")
    assert isinstance(alert, AlertSpec) and alert.dedup_key == "backup:promise:exports"
