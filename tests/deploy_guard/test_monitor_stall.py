"""The deploy monitor while Firestore stalls: a
healthy canary is not promoted (nor rolled back) by a run that cannot read its state; the
run answers within its budget, is recorded as skipped, moves no traffic, and the next run
after the stall judges the same minute and steps as it would have. The emulator is
paused with SIGSTOP (``firestore_paused``)."""

from __future__ import annotations

import contextlib
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import pytest

from functions.deploy_guard.gcp import CloudRunTraffic
from functions.deploy_guard.readers import BusinessMetrics
from functions.deploy_guard.wiring import deploy_guard
from shared import deadline
from shared.audit import Change
from shared.edge_budget import skipped_runs
from shared.errors import DependencyUnavailable
from shared.firestore import get_db
from stack.platform.scheduler import scheduler_headers
from tests.conftest import Backends, Caller, Pauser
from tests.deploy_guard.test_deploy_functions import (
    NEW,
    OLD,
    SERVICE,
    healthy_minute,
    landed,
    next_minute,
    platform,
    start,
)
from tests.deploy_guard.test_gcp_adapters import (
    REGION,
    _healthy_minute,
    _start_canary,
    cloud_run,
    gcp_guard,
)
from tests.fakes.cloud_run import SERVICE as SERVICE_PATH
from tests.fakes.cloud_run import FakeCloudRun
from tests.fakes.http_api import Recorded

MONITOR = "pack391_monitorDeployment"

BUDGET_MS = 1500
"""``PACK391_BUDGET_SCHEDULED_MS`` here: the monitor's Firestore steps wait at most this
long (``shared.firestore.step``; 10 s in production)."""

SLACK_SEC = 1.5
"""What a skipped run may take beyond one step's budget: the client library's last retry
pause after the deadline, and the scheduling of a shared 2-core machine."""


def run_monitor(app: flask.Flask, backends: Backends, at: datetime) -> tuple[int, float]:
    started = time.monotonic()
    response = app.test_client().post(
        f"/{backends.project}/us-central1/{MONITOR}",
        data=b"{}",
        headers=scheduler_headers(MONITOR, "us-central1", at),
    )
    return response.status_code, time.monotonic() - started


def stored(dep_id: str) -> dict[str, Any]:
    dep = deploy_guard().p.store.get(dep_id)
    assert dep is not None
    return dep.model_dump(mode="json")


__all__ = ["cloud_run", "landed"]  # fixtures: see their modules


@pytest.mark.usefixtures("landed")
def test_a_stalled_run_promotes_nothing_and_the_next_run_judges_the_minute(
    caller: Caller,
    app: flask.Flask,
    backends: Backends,
    firestore_paused: Pauser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dep_id = start(caller)["deploymentId"]
    assert platform().observe(SERVICE, "").shares == {OLD: 95, NEW: 5}
    t0 = next_minute()
    healthy_minute(t0)  # a minute that passes: a run that judged it would step to 25 %
    before = stored(dep_id)
    monkeypatch.setenv("PACK391_BUDGET_SCHEDULED_MS", str(BUDGET_MS))
    monkeypatch.setenv("PACK391_FIRESTORE_STEP_MAX_MS", str(BUDGET_MS))

    with firestore_paused():
        status, took = run_monitor(app, backends, t0 + timedelta(minutes=1))
    assert status == 200  # skipped, not failed: Cloud Scheduler does not retry into the stall
    assert took < BUDGET_MS / 1000 + SLACK_SEC, f"the run took {took:.2f}s"
    assert skipped_runs()[MONITOR]["dependency"] == "firestore"
    assert stored(dep_id) == before  # not judged, not stepped, not rolled back
    assert platform().observe(SERVICE, "").shares == {OLD: 95, NEW: 5}

    status, took = run_monitor(app, backends, t0 + timedelta(minutes=1, seconds=20))
    assert status == 200 and took < 10, f"the run after the stall took {took:.2f}s"
    after = stored(dep_id)
    assert (after["phase"], after["traffic_percent"], after["applied_percent"]) == (
        "progressing",
        25,
        25,
    )
    assert [a["verdict"] for a in after["analyses"]] == ["pass"]
    assert platform().observe(SERVICE, "").shares == {OLD: 75, NEW: 25}


def test_the_judges_business_counts_fail_within_a_step_never_answering_zero(
    backends: Backends, firestore_paused: Pauser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the judge reads of Firestore besides the deployment (payout anomalies, token
    mismatches, auth failures per revision): under a stall, a count is an error after one
    step's budget, never a 0 the judge would take for a clean canary (the monitor then
    stops before its decision's transaction: the test above)."""
    monkeypatch.setenv("PACK391_BUDGET_SCHEDULED_MS", str(BUDGET_MS))
    monkeypatch.setenv("PACK391_FIRESTORE_STEP_MAX_MS", str(BUDGET_MS))
    reads = BusinessMetrics(get_db())
    end = next_minute()
    assert reads.window(NEW, end - timedelta(minutes=1), end).payouts == 0  # answers at all
    with firestore_paused():
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable) as stalled:
            reads.window(NEW, end - timedelta(minutes=1), end)
        took = time.monotonic() - started
    assert stalled.value.dependency == "firestore"
    assert took < BUDGET_MS / 1000 + SLACK_SEC, f"the count took {took:.2f}s"


def test_a_stall_after_the_traffic_change_leaves_the_split_to_record_and_converges(
    cloud_run: tuple[FakeCloudRun, CloudRunTraffic],
    backends: Backends,
    firestore_paused: Pauser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The step to 25 % is committed (the decision's transaction) and Cloud Run takes it;
    then Firestore stops answering before ``appliedPercent`` is recorded. Left: Cloud Run
    serves 75/25, the deployment says 25 % wanted, 5 % applied. The run stops there (no
    other step, no rollback); the next run sends the same split again (idempotent),
    records it, and judges nothing twice."""
    fake, traffic = cloud_run
    guard = gcp_guard(traffic)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    deployment_id = _start_canary(fake, guard, Change("admin-1", "test", "t", "r1", now))
    at = now + timedelta(minutes=2)
    _healthy_minute(at)
    monkeypatch.setenv("PACK391_BUDGET_SCHEDULED_MS", str(BUDGET_MS))
    monkeypatch.setenv("PACK391_FIRESTORE_STEP_MAX_MS", str(BUDGET_MS))

    with contextlib.ExitStack() as stall:

        def patch_then_stall(req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
            answer = fake._update(req, m)
            stall.enter_context(firestore_paused())  # resumed when the stack closes
            return answer

        fake.api.on("PATCH", SERVICE_PATH, patch_then_stall)
        started = time.monotonic()
        with deadline.budget(60, MONITOR), pytest.raises(DependencyUnavailable):
            guard.monitor(at)
        took = time.monotonic() - started
    assert took < BUDGET_MS / 1000 + SLACK_SEC + 1, f"the run took {took:.2f}s"  # + the PATCH
    assert traffic.observe("api", REGION).shares == {"api-00001": 75, "api-00002": 25}
    dep = guard.p.store.get(deployment_id)
    assert dep is not None
    assert (dep.phase, dep.traffic_percent, dep.applied_percent) == ("progressing", 25, 5)
    assert (dep.step, len(dep.analyses)) == (1, 1)

    fake.api.on("PATCH", SERVICE_PATH, fake._patch_service)
    guard.monitor(at + timedelta(seconds=20))  # the next run, same minute
    dep = guard.p.store.get(deployment_id)
    assert dep is not None
    assert (dep.phase, dep.traffic_percent, dep.applied_percent) == ("progressing", 25, 25)
    assert (dep.step, len(dep.analyses)) == (1, 1)  # not judged twice
    assert traffic.observe("api", REGION).shares == {"api-00001": 75, "api-00002": 25}
