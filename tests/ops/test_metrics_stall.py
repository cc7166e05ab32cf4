"""The every-minute metrics update while Firestore stalls: the run answers within its budget,
is recorded as skipped, writes nothing (no snapshot, no history point, no 0 for a count it
could not read, no alert rule run on it), and the next run after the stall writes the real
values. The emulator is paused with SIGSTOP (``firestore_paused``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.ops.metrics_source import AggregateMetricsSource
from shared import collections
from shared.edge_budget import skipped_runs
from shared.errors import DependencyUnavailable
from shared.firestore import get_db
from stack.ops_seed import SeedSpec, seed
from tests.conftest import Caller, Pauser
from tests.ops.helpers import docs
from tests.ops.test_ops_functions import trigger

UPDATE = "pack391_updateLiveMetrics"

BUDGET_MS = 1500
"""The run's budget here (``PACK391_BUDGET_SCHEDULED_MS``; 45 s in production)."""

SLACK_SEC = 1.5
"""What a skipped run may take beyond its budget: the client library's last retry pause
after the deadline, the pool's other queries ending at the same deadline, and a shared
2-core machine."""


def written() -> dict[str, Any]:
    """Everything the update writes: the live snapshot, the history, the rules' state."""
    return {
        "live": docs(collections.OPS_METRICS),
        "history": docs(collections.OPS_METRICS_HISTORY),
        "rules": docs(collections.OPS_ALERT_RULES),
        "alerts": docs(collections.ALERTS),
    }


def test_a_stalled_update_writes_nothing_and_the_next_one_writes_the_real_values(
    caller: Caller, firestore_paused: Pauser, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(get_db(), SeedSpec(), datetime.now(UTC))
    assert trigger(caller, UPDATE) == 200  # a snapshot and the rules' state exist
    before = written()
    monkeypatch.setenv("PACK391_BUDGET_SCHEDULED_MS", str(BUDGET_MS))
    monkeypatch.setenv("PACK391_FIRESTORE_STEP_MAX_MS", str(BUDGET_MS))

    with firestore_paused():
        started = time.monotonic()
        status = trigger(caller, UPDATE)
        took = time.monotonic() - started
    assert status == 200  # skipped: Cloud Scheduler does not retry into the stall
    assert took < BUDGET_MS / 1000 + SLACK_SEC, f"the run took {took:.2f}s"
    assert skipped_runs()[UPDATE]["dependency"] == "firestore"
    assert written() == before  # the last snapshot stands, with its age; nothing zeroed

    started = time.monotonic()
    assert trigger(caller, UPDATE) == 200
    assert time.monotonic() - started < 10
    live = caller.call("pack391_getLiveMetrics", role="ops").result
    assert 0 <= live["ageSec"] < 10
    assert live["metrics"]["payoutQueue"]["failed"] == 11  # the seeded value, not a 0


def test_the_counts_are_all_or_none_within_the_budget(
    caller: Caller, firestore_paused: Pauser
) -> None:
    """The 15 aggregations run on a thread pool: the run's budget must follow them there,
    or each would wait for the client library's own deadline (60 s and retries)."""
    from shared import deadline

    source = AggregateMetricsSource(get_db())
    with firestore_paused():
        started = time.monotonic()
        with deadline.budget(BUDGET_MS / 1000, UPDATE), pytest.raises(DependencyUnavailable):
            source.counts(datetime.now(UTC))
        took = time.monotonic() - started
    assert took < BUDGET_MS / 1000 + SLACK_SEC, f"the counts took {took:.2f}s"
