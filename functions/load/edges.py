"""Load & stress testing (pack391-load): the ``pack391_*`` edges.

``pack391_runLoadTest`` records a run and fans its shards out (Cloud Tasks to the
task-queue function ``pack391ExecuteLoadTest`` in production and under the Firebase
CLI's emulators, worker processes in the local stack); each shard writes per-second
HdrHistograms that ``pack391_getLoadTestResults`` merges exactly.

``pack391ExecuteLoadTest`` is the one exception to the ``pack391_*`` naming: the Python
SDK names a task-queue function's Cloud Tasks queue after the function, and queue ids
allow only letters, digits and hyphens, so Cloud Tasks and its emulator refuse an
underscore (firebase-tools #11034, #7884). Every enqueuer takes the name from
``functions.load.gcp.TASK_FUNCTION``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from firebase_functions import https_fn, tasks_fn
from firebase_functions.options import MemoryOption, RateLimits, RetryConfig

from functions.load.wiring import load_service
from shared import thresholds as t
from shared.auth import Role
from shared.edge import CallContext, callable_function, parse_request, to_wire
from shared.edge_errors import to_https_error
from shared.models.load import (
    AbortLoadTestRequest,
    AbortLoadTestResult,
    CleanupLoadTestsRequest,
    CleanupLoadTestsResult,
    ExecuteShardRequest,
    GetLoadTestResultsRequest,
    LoadTestResults,
    RunLoadTestRequest,
    RunLoadTestResult,
)
from shared.options import redis_secrets, runtime_service_account

log = logging.getLogger("pack391.load")

TASK_TIMEOUT_SEC = 1800
"""The task-queue function's limit (the most Cloud Functions allows an HTTP task)."""


@callable_function(role=Role.ADMIN, request=RunLoadTestRequest)
def pack391_runLoadTest(ctx: CallContext, req: RunLoadTestRequest) -> RunLoadTestResult:
    """Validate (allowlist, global RPS cap), record the run (audited), dispatch its shards.
    ``scenarioId`` runs a spec scenario; ``fromMetrics`` a recorded window's per-minute
    rates and mixes, scaled (load shaped like production, :mod:`functions.load.recorded`)."""
    fm = req.from_metrics
    target = req.scenario_id if fm is None else f"fromMetrics:{fm.start}/{fm.end}x{fm.scale}"
    change = ctx.change("loadtest.run", target)
    return load_service().start(req, change)


@callable_function(role=Role.OPS, request=GetLoadTestResultsRequest)
def pack391_getLoadTestResults(ctx: CallContext, req: GetLoadTestResultsRequest) -> LoadTestResults:
    """Status, progress, summary and verdicts, timeline, heatmap, crash map, failover log."""
    return load_service().results(req.run_id)


@callable_function(role=Role.ADMIN, request=AbortLoadTestRequest)
def pack391_abortLoadTest(ctx: CallContext, req: AbortLoadTestRequest) -> AbortLoadTestResult:
    """Stop every shard of a run (within ``LOAD_TEST_ABORT_WITHIN_SEC``). Audited."""
    change = ctx.change("loadtest.abort", req.reason)
    return load_service().abort(req.run_id, change)


@callable_function(role=Role.ADMIN, request=CleanupLoadTestsRequest)
def pack391_cleanupLoadTests(
    ctx: CallContext, req: CleanupLoadTestsRequest
) -> CleanupLoadTestsResult:
    """Remove runs (one, or those older than N days) and their tagged synthetic data."""
    change = ctx.change("loadtest.cleanup", None)
    return load_service().cleanup(req, change)


def execute_shard(data: Any) -> dict[str, Any]:
    """The body of ``pack391ExecuteLoadTest``: what the local dispatcher's worker
    processes call directly."""
    req = parse_request(ExecuteShardRequest, data)
    result: dict[str, Any] = to_wire(load_service().execute(req))
    return result


@tasks_fn.on_task_dispatched(
    retry_config=RetryConfig(max_attempts=1),
    rate_limits=RateLimits(max_concurrent_dispatches=t.LOAD_TEST_MAX_SHARDS),
    timeout_sec=TASK_TIMEOUT_SEC,
    memory=MemoryOption.GB_1,
    # one shard per instance, one vCPU each: a shard paces its requests in real
    # time, and 80 shards sharing one CPU (the gen2 default concurrency) would not
    concurrency=1,
    cpu=1,
    # the bill's ceiling: never more instances than shards may run at once
    max_instances=t.LOAD_TEST_MAX_SHARDS,
    # only the runtime account (Cloud Tasks calls with its OIDC token) may invoke it. The
    # SDK 0.6.0 does not write a task queue's invoker into the manifest, so firebase deploy
    # does not grant it: `pack391 bootstrap` binds roles/run.invoker on the service itself
    invoker=[runtime_service_account()],
    # the shard records its progress in Redis: the AUTH string when Redis needs one
    secrets=redis_secrets(),
)
def pack391ExecuteLoadTest(req: https_fn.CallableRequest[Any]) -> Any:
    """One shard of a run (task-queue function: Cloud Tasks invokes it, and IAM limits
    invokers to the queue; one attempt, since a retried shard would double its load)."""
    request_id = uuid.uuid4().hex
    try:
        return execute_shard(req.data)
    except Exception as exc:  # the one catch-all, as in shared.edge
        raise to_https_error(exc, request_id) from exc
