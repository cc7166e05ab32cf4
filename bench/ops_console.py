"""Benchmark: what the ops console's polling costs Firestore, against polling the whole
dashboard as often.

    ./venv/bin/python -m bench.ops_console [--runs 7] [--audit 500]

Starts its own Firestore emulator, seeds the app's source collections
(:class:`stack.ops_seed.SeedSpec`), ten minutes of live-metrics runs (so the alert rules
have raised alerts) and ``--audit`` audit-log entries, then measures each read the page
makes, ``--runs`` times (median wall time), counting Firestore RPCs and the documents
streamed back (what Firestore bills as reads) with the gRPC interceptor of
:mod:`bench.ops_metrics`:

- ``live``: ``pack391_getOpsLive`` without an etag (the first poll, or after a change),
  on an instance that has read the activity at this version before (its memo);
- ``activityRead``: what such an answer adds on an instance that has not: the 25 newest
  audit entries;
- ``liveNotModified``: the same with the etag it returned (every poll while nothing
  changes: the function reads the parts and the activity's version, then answers only
  ``notModified``);
- ``timeline``: ``pack391_getOpsTimeline`` over 60 minutes;
- ``dashboard``: ``pack391_getOpsDashboard``, the peer: what the page would read if it
  polled the whole dashboard for liveness.

Then one operator's hour at the page's cadence (live every 5 s, timeline and dashboard
every 60 s) against polling the dashboard every 5 s. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from bench.ops_metrics import PROJECT, counting_client, measure
from functions.ops.console import ConsoleService
from functions.ops.console_store import ConsoleRepository
from functions.ops.metrics_source import AggregateMetricsSource
from functions.ops.policy import alert_rules
from functions.ops.service import OpsService
from functions.ops.store import OpsRepository
from functions.ops.wiring import panels
from shared import collections
from shared.alerts.notifier import WebhookNotifier, deliver
from shared.alerts.store import AlertStore
from shared.models.audit import AuditEntry
from shared.thresholds import LIVE_ACTIVITY_ITEMS
from stack.ops_seed import SeedSpec, seed
from stack.platform import datastores

LIVE_EVERY_SEC, TIMELINE_EVERY_SEC, DASHBOARD_EVERY_SEC = 5, 60, 60
"""The page's cadence (hosting/ops/app.js: LIVE_MS, TIMELINE_MS, DASHBOARD_MS)."""


def seed_audit(db: firestore.Client, count: int, now: datetime) -> None:
    batch = db.batch()
    for i in range(count):
        entry = AuditEntry(
            actor_uid=f"admin-{i % 7}",
            actor_email=f"admin{i % 7}@example.com",
            action="market.update",
            target=f"pack391_markets/C{i % 50}",
            before={"launchStatus": "soft_launch"},
            after={"launchStatus": "public"},
            reason=f"change {i}",
            request_id=f"r{i}",
            at=now - timedelta(seconds=7 * i),
        )
        batch.set(db.collection(collections.AUDIT_LOG).document(), entry.to_doc())
        if i % 400 == 399:
            batch.commit()
            batch = db.batch()
    batch.commit()


def run(runs: int, audit: int) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="pack391-bench-console-"))
    child, host = datastores.start_firestore_emulator(PROJECT, log_dir)
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        client = counting_client()
        writer = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        now = datetime.now(UTC)
        seed(writer, SeedSpec(), now)
        seed_audit(writer, audit, now)
        alerts = AlertStore(client, notify=lambda: False)
        dashboard = OpsService(
            AggregateMetricsSource(client),
            OpsRepository(client, alerts),
            alerts,
            partial(deliver, alerts, WebhookNotifier("")),
            panels(client),
            lambda: True,
            lambda: (False, None, None),
            alert_rules(),
        )
        for minutes in range(-10, 1):
            dashboard.update(now + timedelta(minutes=minutes), f"run{minutes}")
        console = ConsoleService(
            AlertStore(client),
            OpsRepository(client),
            ConsoleRepository(client),
            panels(client).deployments,
            lambda: (False, None, None),
        )
        at = now + timedelta(seconds=30)
        first = console.live(None, at)
        results = {
            "live": measure(client, runs, lambda: console.live(None, at)),
            "activityRead": measure(
                client, runs, lambda: ConsoleRepository(client).activity(LIVE_ACTIVITY_ITEMS)
            ),
            "liveNotModified": measure(client, runs, lambda: console.live(first.etag, at)),
            "timeline": measure(client, runs, lambda: console.timeline(60, at)),
            "dashboard": measure(client, runs, lambda: dashboard.dashboard(at)),
        }
        if not console.live(first.etag, at).not_modified:
            raise SystemExit("the etag changed with nothing changed")
        per_hour = 3600
        reads = {name: r["documentsStreamed"] for name, r in results.items()}
        console_hour = (
            per_hour // LIVE_EVERY_SEC * reads["liveNotModified"]
            + per_hour // TIMELINE_EVERY_SEC * reads["timeline"]
            + per_hour // DASHBOARD_EVERY_SEC * reads["dashboard"]
        )
        naive_hour = per_hour // LIVE_EVERY_SEC * reads["dashboard"]
        return {
            "auditEntries": audit,
            "openAlerts": len(first.alerts or []),
            **results,
            "oneOperatorHour": {
                "consoleDocumentsRead": console_hour,
                "dashboardEvery5sDocumentsRead": naive_hour,
                "consoleOverDashboardEvery5s": round(console_hour / max(naive_hour, 1), 3),
                "liveOverDashboardTime": round(
                    results["liveNotModified"]["wallSecMedian"]
                    / results["dashboard"]["wallSecMedian"],
                    3,
                ),
            },
        }
    finally:
        child.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="measured calls of each read")
    parser.add_argument("--audit", type=int, default=500, help="audit-log entries seeded")
    args = parser.parse_args()
    print(json.dumps(run(args.runs, args.audit), indent=2))


if __name__ == "__main__":
    main()
