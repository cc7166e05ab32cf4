"""A restore drill runs the pre-deploy gates' data checks on the restored copy: business
data with known rates is seeded before the backup's moment, backed up, changed in the
source afterwards (the drill must not see that), and drilled. The drill reports each
gate's value, threshold, verdict and window (ending at the data's moment), and the index
gate on the restored database's id, through the real FirestoreAdminClient against the
Admin API fake (which keeps indexes per database, and gives a clone its source's).

Both backends: logical (restored into the drill database of the Firestore emulator) and
managed (a clone, whose documents the fake copies into the emulator)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.backup.documents import FirestoreDocuments
from functions.backup.logical import LogicalBackupStore
from functions.backup.managed import ManagedBackupStore
from functions.backup.policy import DRILL_GATES_ALERT_KEY
from functions.backup.service import BackupService
from functions.backup.store import BackupCatalog
from functions.backup.wiring import admin_client
from functions.deploy_guard.api import INDEX_FILE, RestoredDataGates
from functions.deploy_guard.readers import load_index_specs
from shared import collections
from shared.audit import Change
from shared.firestore import get_db
from shared.models.backup import DrillGate, DrillRecord, DrillVerdict, RestoreDrillRequest
from shared.models.deploy import GateStatus
from tests.backup.test_managed import BUCKETS, complete_backup, storage_client
from tests.conftest import PROJECT, Backends, Caller
from tests.fakes import cloud_storage
from tests.fakes.cloud_storage import FakeCloudStorage
from tests.fakes.firestore_admin import FakeFirestoreAdmin, serve

SPECS = load_index_specs(INDEX_FILE)
WINDOW = timedelta(minutes=15)
PASS, FAIL, SKIPPED = GateStatus.PASS, GateStatus.FAIL, GateStatus.SKIPPED
RATES = {"payouts": "payout_anomalies", "tokens": "token_mismatches", "auth": "auth_system"}

PASSING = {"payouts": (100, 2), "tokens": (100, 1), "auth": (100, 2)}
"""(events, bad) in the window: 2 %, 1 %, 2 % against 5 %, 2 %, 3 %."""
FAILING = {"payouts": (20, 4), "tokens": (50, 5), "auth": (10, 0)}
"""20 % and 10 % fail; the auth rate (0 %) passes."""


def seed_business(base: datetime, shape: dict[str, tuple[int, int]], tag: str = "a") -> int:
    """``shape``'s events five minutes before ``base`` (in the window), and bad events
    outside it on both sides: 30 minutes before, and dated 5 minutes after."""
    db = get_db()
    batch = db.batch()
    written = 0
    where = {
        "payouts": (collections.PAYOUTS, "createdAt", "anomaly"),
        "tokens": (collections.TOKEN_TRANSACTIONS, "at", "mismatch"),
        "auth": (collections.AUTH_EVENTS, "at", "failed"),
    }
    for kind, (total, bad) in shape.items():
        collection, at_field, flag = where[kind]
        events = [(base - timedelta(minutes=5), i < bad) for i in range(total)]
        events += [(base - timedelta(minutes=30), True)] * 5
        events += [(base + timedelta(minutes=5), True)] * 5
        for i, (at, is_bad) in enumerate(events):
            ref = db.collection(collection).document(f"{tag}{kind}{i:03d}")
            batch.set(ref, {at_field: at, flag: is_bad, "revision": "api-00001", "status": "paid"})
            written += 1
    batch.commit()
    return written


def spoil_source(base: datetime) -> None:
    """After the backup: bad events in the window, in the source only."""
    db = get_db()
    batch = db.batch()
    for i in range(40):
        at = base - timedelta(minutes=1)
        batch.set(
            db.collection(collections.PAYOUTS).document(f"late{i}"),
            {"createdAt": at, "anomaly": True},
        )
    batch.commit()


def gates_of(drill: DrillRecord) -> dict[str, DrillGate]:
    return {g.name: g for g in drill.gates}


def assert_rates(
    drill: DrillRecord, shape: dict[str, tuple[int, int]], moment: datetime, database: str
) -> None:
    gates = gates_of(drill)
    thresholds = {"payouts": 5.0, "tokens": 2.0, "auth": 3.0}
    for kind, (total, bad) in shape.items():
        g = gates[RATES[kind]]
        rate = round(100.0 * bad / total, 3)
        assert (g.value, g.threshold, g.unit) == (rate, thresholds[kind], "%"), g
        assert g.status is (FAIL if rate > thresholds[kind] else PASS), g
        assert (g.window_start, g.window_end) == (moment - WINDOW, moment), g
        assert g.database == database and g.detail == f"{bad} of {total} events"
    assert drill.data_moment == moment


def index_lists(admin: FakeFirestoreAdmin) -> list[str]:
    return [r.path for r in admin.requests if r.method == "GET" and r.path.endswith("/indexes")]


def drill_alert() -> dict[str, Any] | None:
    for snap in get_db().collection(collections.ALERTS).stream():
        doc = snap.to_dict() or {}
        if doc.get("dedupKey") == DRILL_GATES_ALERT_KEY:
            return doc
    return None


def change(now: datetime, request: str = "req-1") -> Change:
    return Change("admin-1", "backup.restore_drill", "data drill", request, now)


# ------------------------------------------------------------------------ logical


@pytest.fixture
def admin() -> Iterator[FakeFirestoreAdmin]:
    yield from serve(PROJECT)


@pytest.fixture
def logical(store: LogicalBackupStore, admin: FakeFirestoreAdmin) -> BackupService:
    gates = RestoredDataGates(PROJECT, get_db, admin_client(admin.url), INDEX_FILE)
    return BackupService(store, BackupCatalog(get_db()), gates)


def test_a_logical_drill_judges_the_restored_copy_at_the_backups_moment(
    logical: BackupService, admin: FakeFirestoreAdmin, source: FirestoreDocuments
) -> None:
    admin.create_database("drill-t")
    admin.declare_indexes("drill-t", SPECS)  # the drill database has the indexes deployed
    base = datetime.now(UTC)
    seeded = seed_business(base, PASSING)
    record = logical.backup(datetime.now(UTC))
    assert record.document_count == seeded
    spoil_source(record.snapshot_time)  # 40 anomalies more in the source: not in the copy
    drill = logical.drill(RestoreDrillRequest(backupId=record.backup_id), change(datetime.now(UTC)))
    assert drill.verdict is DrillVerdict.PASSED and drill.ok and drill.within_rto
    assert_rates(drill, PASSING, record.snapshot_time, "drill-t")
    index = gates_of(drill)["database_indexes"]
    assert (index.status, index.value, index.threshold) == (PASS, 0, 0)
    assert index.database == "drill-t"
    assert index_lists(admin) == [
        f"v1/projects/{PROJECT}/databases/drill-t/collectionGroups/-/indexes"
    ]
    assert "passed: restored and counted" in drill.detail
    assert "payout_anomalies pass: 2% <= 5%" in drill.detail
    assert source.with_database("drill-t").is_empty()  # judged before the cleanup
    assert drill_alert() is None


def test_a_logical_drill_whose_copy_fails_the_gates_fails_and_alerts_until_one_passes(
    logical: BackupService, admin: FakeFirestoreAdmin
) -> None:
    admin.create_database("drill-t")
    admin.declare_indexes("(default)", SPECS)  # deployed to the source only
    base = datetime.now(UTC)
    seed_business(base, FAILING)
    record = logical.backup(datetime.now(UTC))
    drill = logical.drill(RestoreDrillRequest(backupId=record.backup_id), change(datetime.now(UTC)))
    assert drill.verdict is DrillVerdict.DATA_GATES_FAILED
    assert not drill.ok and drill.within_rto and drill.cleaned_up  # restored in time
    assert_rates(drill, FAILING, record.snapshot_time, "drill-t")
    index = gates_of(drill)["database_indexes"]
    assert (index.status, index.value, index.database) == (FAIL, len(SPECS), "drill-t")
    assert f"{len(SPECS)} of {len(SPECS)} declared indexes not READY" in index.detail
    alert = drill_alert()
    assert alert is not None and alert["status"] == "open" and alert["severity"] == "high"
    assert alert["evidence"]["drillId"] == drill.drill_id
    assert "payout_anomalies fail: 20% > 5%" in alert["title"]
    assert "auth_system" not in alert["title"]  # it passed

    # the indexes deployed to the drill database, and good data: the next drill resolves it
    admin.declare_indexes("drill-t", SPECS)
    get_db().recursive_delete(get_db().collection(collections.PAYOUTS))
    get_db().recursive_delete(get_db().collection(collections.TOKEN_TRANSACTIONS))
    seed_business(datetime.now(UTC), PASSING, tag="b")
    second = logical.backup(datetime.now(UTC))
    again = logical.drill(
        RestoreDrillRequest(backupId=second.backup_id), change(datetime.now(UTC), "req-2")
    )
    assert again.verdict is DrillVerdict.PASSED, again.detail
    alert = drill_alert()
    assert alert is not None and alert["status"] == "resolved"


def test_a_check_that_cannot_read_is_a_failed_gate_not_a_lost_drill(
    logical: BackupService, admin: FakeFirestoreAdmin
) -> None:
    admin.create_database("drill-t")
    admin.errors["list_indexes"] = 403
    seed_business(datetime.now(UTC), PASSING)
    record = logical.backup(datetime.now(UTC))
    drill = logical.drill(RestoreDrillRequest(backupId=record.backup_id), change(datetime.now(UTC)))
    index = gates_of(drill)["database_indexes"]
    assert index.status is FAIL and index.detail.startswith("could not list indexes")
    assert (
        drill.verdict is DrillVerdict.DATA_GATES_FAILED and drill.documents == record.document_count
    )
    assert gates_of(drill)["payout_anomalies"].status is PASS


# ------------------------------------------------------------------------ managed

NOW = datetime(2026, 11, 27, 21, 0, 7, 250000, tzinfo=UTC)
MOMENT = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
"""The managed backup's snapshot (minute-aligned), which the clone is taken at."""


@pytest.fixture
def gcs() -> Iterator[FakeCloudStorage]:
    yield from cloud_storage.serve()


@pytest.fixture
def fake(gcs: FakeCloudStorage, backends: Backends) -> Iterator[FakeFirestoreAdmin]:
    """The Admin fake; its clones hold the emulator's documents under the clone's id."""
    source = FirestoreDocuments.for_environment(PROJECT)

    def clone(target: str) -> None:
        copy = source.with_database(target)
        for page in source.pages(None, None, 500):
            copy.commit(
                [
                    {
                        "update": {
                            "name": copy.documents_path + "/" + source.relative(d["name"]),
                            "fields": d.get("fields", {}),
                        }
                    }
                    for d in page
                ]
            )

    def delete(target: str) -> None:
        source.with_database(target).delete_everything()

    for admin in serve(PROJECT):
        admin.storage = gcs
        admin.on_clone = clone
        admin.on_delete = delete
        yield admin


@pytest.fixture
def managed(fake: FakeFirestoreAdmin, gcs: FakeCloudStorage) -> BackupService:
    store = ManagedBackupStore(
        admin_client(fake.url), PROJECT, BUCKETS, timeout_sec=2.0, storage=storage_client(gcs)
    )
    gates = RestoredDataGates(PROJECT, get_db, admin_client(fake.url), INDEX_FILE)
    return BackupService(store, BackupCatalog(get_db()), gates)


def managed_drill(
    service: BackupService, fake: FakeFirestoreAdmin, shape: dict[str, tuple[int, int]]
) -> tuple[DrillRecord, str]:
    # the clone holds the seeded events and the catalog's entry of the backup
    fake.export_documents = seed_business(MOMENT, shape) + 1
    backup = complete_backup(service, NOW)
    drill = service.drill(RestoreDrillRequest(backupId=backup.backup_id), change(NOW))
    clone = next(r for r in fake.requests if r.path.endswith("databases:clone"))
    return drill, clone.body["databaseId"]


def test_a_managed_drill_judges_the_clone_which_has_its_sources_indexes(
    managed: BackupService, fake: FakeFirestoreAdmin
) -> None:
    fake.declare_indexes("(default)", SPECS)
    drill, clone_id = managed_drill(managed, fake, PASSING)
    assert drill.verdict is DrillVerdict.PASSED and drill.ok, drill.detail
    assert_rates(drill, PASSING, MOMENT, clone_id)
    index = gates_of(drill)["database_indexes"]
    assert (index.status, index.value, index.database) == (PASS, 0, clone_id)
    assert index_lists(fake) == [
        f"v1/projects/{PROJECT}/databases/{clone_id}/collectionGroups/-/indexes"
    ]
    assert clone_id not in fake.databases and clone_id not in fake.indexes  # cleaned up


def test_a_managed_drill_whose_clone_fails_the_gates_is_reported_and_alerts(
    managed: BackupService, fake: FakeFirestoreAdmin
) -> None:
    fake.declare_indexes("(default)", SPECS[1:])
    fake.declare_indexes("(default)", SPECS[:1], state="CREATING")  # the clone copies it so
    drill, clone_id = managed_drill(managed, fake, FAILING)
    assert drill.verdict is DrillVerdict.DATA_GATES_FAILED and not drill.ok
    assert drill.within_rto and drill.cleaned_up
    assert_rates(drill, FAILING, MOMENT, clone_id)
    index = gates_of(drill)["database_indexes"]
    assert (index.status, index.value, index.database) == (FAIL, 1, clone_id)
    first = SPECS[0]
    assert first["collectionGroup"] in index.detail
    alert = drill_alert()
    assert alert is not None and alert["status"] == "open"
    assert alert["evidence"]["dataMoment"] == "2026-11-27T21:00:00.000000Z"


def test_the_window_of_a_point_in_time_drill_ends_at_that_time(
    managed: BackupService, fake: FakeFirestoreAdmin
) -> None:
    fake.declare_indexes("(default)", SPECS)
    seed_business(MOMENT, FAILING)
    when = MOMENT - timedelta(minutes=4, seconds=30)  # cloned at 20:55:00
    drill = managed.drill(RestoreDrillRequest.model_validate({"pointInTime": when}), change(NOW))
    at = datetime(2026, 11, 27, 20, 55, tzinfo=UTC)
    assert drill.data_moment == at and drill.source.startswith("pitr:")
    payouts = gates_of(drill)["payout_anomalies"]
    # the events of 20:55:00 are not before the moment: only the 20:30 ones are out too
    assert (payouts.window_start, payouts.window_end) == (at - WINDOW, at)
    assert (payouts.status, payouts.value) == (SKIPPED, None)
    assert payouts.detail == "no payouts in the window"


def test_the_wired_drill_reports_the_gates_through_the_function(
    caller: Caller, configured: Path
) -> None:
    seed_business(datetime.now(UTC), FAILING)
    assert caller.trigger("pack391_backupFirestore") == 200
    drill = caller.call("pack391_restoreDrill", {"reason": "data drill"}).result
    assert drill["verdict"] == "data_gates_failed" and drill["ok"] is False
    assert drill["withinRto"] and drill["cleanedUp"]
    gates = {g["name"]: g for g in drill["gates"]}
    assert (gates["payout_anomalies"]["value"], gates["payout_anomalies"]["status"]) == (
        20.0,
        "fail",
    )
    assert gates["auth_system"]["status"] == "pass"
    assert gates["payout_anomalies"]["windowEnd"] == drill["dataMoment"]
    assert gates["payout_anomalies"]["database"] == "drill-fn"
    # the emulator needs no index: the index gate is skipped there, and says why
    assert gates["database_indexes"]["status"] == "skipped"
    status = caller.call("pack391_getBackupStatus", {}, role="ops").result
    assert status["lastDrill"]["gates"] == drill["gates"]
    alert = drill_alert()
    assert alert is not None and alert["status"] == "open"
