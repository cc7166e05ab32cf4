"""``pack391 migrate-alerts`` against the Firestore emulator: the pure mapping, then the
migration run twice (idempotent), then the migrated alerts living by the new rules."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import collections, thresholds
from shared.alerts.store import AlertStore
from shared.audit import Change
from shared.firestore import get_db
from shared.models.alerts import AlertDoc
from stack.cli.migrate_alerts import add_parser, run
from stack.migrate_alerts import convert_alert, migrate
from tests.conftest import Backends

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)

LEGACY_DDOS = {
    "source": "ddos",
    "kind": "traffic_spike",
    "severity": "critical",
    "title": "DDoS: traffic spike",
    "evidence": {},
    "status": "open",
    "openedAt": T0,
}
LEGACY_OPS = {
    "source": "ops",
    "kind": "failed_payouts",
    "severity": "high",
    "title": "Failed payouts",
    "evidence": {"value": 11},
    "status": "open",
    "openedAt": T0,
    "rule": "failed_payouts",
    "threshold": 10.0,
    "value": 11.0,
    "notifyOpen": {"state": "sent", "attempts": 1},
}


def test_convert_alert_table() -> None:
    ddos = convert_alert("ddos_1_traffic_spike", LEGACY_DDOS, NOW)
    assert ddos is not None and ddos.active
    assert (ddos.dedup_key, ddos.fields["resolveOnAcknowledge"]) == (
        "legacy:ddos_1_traffic_spike",
        True,
    )
    assert ddos.fields["notifyOpen"]["state"] == "disabled"  # never announced now
    ops = convert_alert("ops_failed_payouts_x", LEGACY_OPS, NOW)
    assert ops is not None and (ops.dedup_key, ops.active) == ("ops:failed_payouts", True)
    assert ops.fields["resolveOnAcknowledge"] is False
    assert ops.fields["notifyOpen"] == {"state": "sent", "attempts": 1}  # kept
    done = convert_alert(
        "ops_old",
        {**LEGACY_OPS, "status": "resolved", "resolvedAt": T0 + timedelta(minutes=3)},
        NOW,
    )
    assert done is not None and not done.active
    assert (done.fields["durationSec"], done.fields["resolvedBy"]) == (180.0, "system")
    assert done.fields["expireAt"] == T0 + timedelta(
        minutes=3, days=thresholds.ALERT_RETENTION_DAYS
    )
    assert convert_alert("new", {**LEGACY_DDOS, "dedupKey": "ddos:mode"}, NOW) is None


def docs(name: str) -> dict[str, dict[str, Any]]:
    return {s.id: s.to_dict() or {} for s in get_db().collection(name).stream()}


def test_migration_is_idempotent_and_migrated_alerts_resolve(backends: Backends) -> None:
    db = get_db()
    for i, kind in enumerate(("isolated", "recovered")):
        db.collection(collections.LEGACY_SCALING_ALERTS).document(f"s{i}").set(
            {
                "serviceId": "api-gateway",
                "kind": kind,
                "at": T0 + timedelta(minutes=i),
                "errorRatePct": 4.0,
                "thresholdPct": 1.5,
                "message": f"api-gateway {kind}",
            }
        )
    db.collection(collections.LEGACY_BACKUP_ALERTS).document("b1").set({"problems": ["pitr"]})
    alerts = db.collection(collections.ALERTS)
    alerts.document("ddos_1_traffic_spike").set(LEGACY_DDOS)
    alerts.document("ops_failed_payouts_x").set(LEGACY_OPS)
    alerts.document("backup_v1").set(
        {**LEGACY_DDOS, "source": "backup", "kind": "backup_promise_broken", "status": "resolved"}
    )

    first = migrate(db, NOW)
    assert (first.events_copied, first.alerts_converted, len(first.keys_claimed)) == (2, 3, 2)
    assert sorted(first.keys_claimed) == ["legacy:ddos_1_traffic_spike", "ops:failed_payouts"]
    events = docs(collections.SCALING_EVENTS)
    assert sorted(events) == ["s0", "s1"] and events["s0"]["kind"] == "isolated"
    for alert_id, data in docs(collections.ALERTS).items():
        assert AlertDoc.model_validate(data).dedup_key is not None, alert_id
    before = docs(collections.ALERTS)

    # a second run changes nothing (the CLI entry point this time)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["migrate-alerts", "--delete-old"])
    assert args.func is run and run(args) == 0
    assert docs(collections.ALERTS) == before
    assert docs(collections.SCALING_EVENTS) == events
    assert docs(collections.LEGACY_SCALING_ALERTS) == {}
    assert docs(collections.LEGACY_BACKUP_ALERTS) == {}

    # the ops rule resolves its migrated alert by its key; a legacy alert of another area
    # resolves when a human acknowledges it
    store = AlertStore(db, notify=lambda: False)
    assert store.resolve("ops:failed_payouts", NOW) == "ops_failed_payouts_x"
    change = Change("olga", "ops.alert.acknowledge", None, "req", NOW)
    doc, changed = store.acknowledge("ddos_1_traffic_spike", change)
    assert changed and doc is not None and (doc.status, doc.resolved_by) == ("resolved", "olga")
    assert store.open_alerts() == []
