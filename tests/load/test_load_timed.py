"""The load-test functions end to end on real time (make test's quiet lane): every scenario
passes its thresholds scaled down, and an abort stops every shard within two seconds.
Both judge real latencies and timings, so they run with a core of their own."""

from __future__ import annotations

import time

import pytest
from google.cloud.firestore import FieldFilter

from functions.load.local import wait_local_workers
from functions.load.service import wait_for
from functions.load.wiring import load_service
from shared import collections
from shared.firestore import get_db
from shared.thresholds import LOAD_TEST_SCENARIOS
from stack.constants import LOAD_TEST_ABORT_WITHIN_SEC
from tests.conftest import Caller
from tests.load.test_load_functions import run

pytestmark = pytest.mark.serial  # a quiet core: real latencies and timings


def test_every_scenario_passes_end_to_end_scaled_down(caller: Caller, sandbox_url: str) -> None:
    shards = {scenario: 1 for scenario in LOAD_TEST_SCENARIOS} | {"swipe_load": 2}
    runs = {
        scenario: run(caller, scenario, sandbox_url, rps=12, durationSec=3, shards=shards[scenario])
        for scenario in LOAD_TEST_SCENARIOS
    }
    wait_local_workers(60)
    for scenario, run_id in runs.items():
        res = caller.call("pack391_getLoadTestResults", {"runId": run_id}, role="ops")
        assert res.status == 200, res.body
        out = res.result
        summary = out["summary"]
        assert out["status"] == "completed", (scenario, out["status"])
        assert summary["verdict"] == "pass", (scenario, summary)
        assert summary["requests"] == summary["scheduled"] > 0
        assert summary["errors"] == 0 and summary["dropped"] == 0
        assert out["progress"]["shardsDone"] == shards[scenario]
        assert (
            out["progress"]["elapsedSec"] == 3.0 and out["progress"]["sent"] == summary["requests"]
        )
        assert len(out["timeline"]) == 3
        assert sum(map(sum, out["heatmap"]["counts"])) == summary["completed"]
        assert out["crashMap"] == []
        assert set(summary["endpoints"]) <= {name for name, _ in load_plan_mix(scenario)}
    # synthetic data is tagged with its run
    swipes = get_db().collection(collections.LOAD_SANDBOX_COLLECTIONS[0]).stream()
    assert {(s.to_dict() or {})["loadRunId"] for s in swipes} == {runs["swipe_load"]}


def load_plan_mix(scenario: str) -> tuple[tuple[str, float], ...]:
    from functions.load.scenarios import MIXES

    return MIXES[scenario]


def test_abort_stops_every_shard_within_two_seconds(caller: Caller, sandbox_url: str) -> None:
    run_id = run(caller, "live_calls", sandbox_url, rps=20, durationSec=60, shards=2)
    service = load_service()
    deadline = time.monotonic() + 20
    while service.results(run_id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    res = caller.call("pack391_abortLoadTest", {"runId": run_id, "reason": "enough"})
    assert res.result["status"] == "aborting"
    wait_local_workers(30)
    final = wait_for(service, run_id, 10)
    assert final.status == "aborted"
    shards = get_db().collection(collections.LOAD_RUNS).document(run_id).collection("shards")
    written = [shard.to_dict() or {} for shard in shards.stream()]
    assert len(written) == 2  # both shards ran and recorded their end
    for data in written:
        assert data["status"] == "aborted"
        assert data["abortLatencySec"] < LOAD_TEST_ABORT_WITHIN_SEC
    assert final.summary["elapsedSec"] < 20
    audit = (
        get_db()
        .collection(collections.AUDIT_LOG)
        .where(filter=FieldFilter("action", "==", "loadtest.abort"))
    )
    assert len(list(audit.stream())) == 1
