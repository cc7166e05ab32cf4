"""The ops dashboard and its charts answer stale while Firestore stalls: the dashboard's
Firestore part is the instance's last-known copy, DDoS mode (Redis) is read now. The real
emulator, paused (SIGSTOP) as ``pack391 chaos firestore-pause`` pauses it, and the real
Redis, through the callable protocol (docs/reliability.md, "Stale answers")."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from functions.ops.wiring import ops_service
from shared import collections
from shared.firestore import get_db
from shared.models.scaling import IsolationState
from shared.stale import STALE_READ_WAIT_SEC
from tests.conftest import Backends, Caller, Pauser
from tests.ops.helpers import ddos_mode_on, register_service
from tests.shared.stale_helpers import (
    EARLY_SEC,
    SLACK_SEC,
    assert_unavailable,
    ok,
    short_budget,  # noqa: F401 (the fixture, by name)
    timed,
)

pytestmark = pytest.mark.usefixtures("short_budget")

DASHBOARD = "pack391_getOpsDashboard"
HISTORY = "pack391_getHistoricalMetrics"
CHARTS = {"range": "1h", "fields": ["activeUsers", "payoutQueue.failed"]}
"""What the page asks for its charts (a few of their fields)."""
FROM_FIRESTORE = ("live", "openAlerts", "services", "deployments", "loadTests", "backups",
                  "markets")  # fmt: skip
"""The dashboard's parts read from Firestore (kept as the copy)."""


def deployment(version: str, at: datetime) -> None:
    get_db().collection(collections.DEPLOYMENTS).document(version).set(
        {"version": version, "environment": "production", "phase": "progressing",
         "trafficPercent": 25, "createdAt": at}
    )  # fmt: skip


def test_dashboard_answers_stale_during_a_pause_and_fresh_after(
    caller: Caller, backends: Backends, firestore_paused: Pauser
) -> None:
    now = datetime.now(UTC)
    register_service("api-gateway", IsolationState.NONE, instances=4)
    ops_service().update(now, "r0")
    deployment("v1", now)
    ok(
        caller,
        "pack391_updateMarketControl",
        {"country": "PL", "config": {"launchStatus": "public"}},
    )
    warm_started = time.monotonic()
    warm = ok(caller, DASHBOARD, {}, role="ops")
    warm_charts = ok(caller, HISTORY, CHARTS, role="ops")
    assert (warm["stale"], warm["staleAgeSec"], warm["ddos"]["modeActive"]) == (False, None, False)
    with firestore_paused():
        ddos_mode_on(backends.redis_url, now + timedelta(minutes=10), "flood")
        during, took = timed(caller, DASHBOARD, {}, role="ops")
        since_warm = time.monotonic() - warm_started
        charts, took_charts = timed(caller, HISTORY, CHARTS, role="ops")
        other_range, took_other = timed(caller, HISTORY, {**CHARTS, "range": "24h"}, role="ops")
    dash = during.result
    assert took < STALE_READ_WAIT_SEC + SLACK_SEC, f"answered after {took:.2f}s"
    assert dash["stale"] is True
    assert STALE_READ_WAIT_SEC - EARLY_SEC <= dash["staleAgeSec"] <= since_warm
    for part in FROM_FIRESTORE:
        if part == "live":  # the same snapshot, its age counted to now
            assert dash["live"]["at"] == warm["live"]["at"]
            assert dash["live"]["metrics"] == warm["live"]["metrics"]
            assert dash["live"]["ageSec"] > warm["live"]["ageSec"]
        else:
            assert dash[part] == warm[part], part
    assert [d["version"] for d in dash["deployments"]["items"]] == ["v1"]
    # Redis answered: DDoS mode is read now, not from the copy
    assert (dash["ddos"]["modeActive"], dash["ddos"]["modeReason"]) == (True, "flood")
    assert dash["generatedAt"] > warm["generatedAt"]
    # the page loads the dashboard and its charts together: both answer
    assert took_charts < STALE_READ_WAIT_SEC + SLACK_SEC, f"answered after {took_charts:.2f}s"
    assert charts.result["stale"] is True and charts.result["staleAgeSec"] > 0
    assert {k: v for k, v in charts.result.items() if not k.startswith("stale")} == {
        k: v for k, v in warm_charts.items() if not k.startswith("stale")
    }
    assert_unavailable(other_range, took_other)  # a range never read: no copy

    deployment("v2", datetime.now(UTC))
    started = time.monotonic()
    after = ok(caller, DASHBOARD, {}, role="ops")
    assert time.monotonic() - started < 2 * STALE_READ_WAIT_SEC, "the next call answers normally"
    assert (after["stale"], after["staleAgeSec"]) == (False, None)
    assert [d["version"] for d in after["deployments"]["items"]] == ["v2", "v1"]
    after_charts = ok(caller, HISTORY, CHARTS, role="ops")
    assert (after_charts["stale"], after_charts["staleAgeSec"]) == (False, None)


def test_dashboard_without_a_copy_answers_unavailable(
    caller: Caller, firestore_paused: Pauser
) -> None:
    with firestore_paused():
        answer, took = timed(caller, DASHBOARD, {}, role="ops")
    assert_unavailable(answer, took)
