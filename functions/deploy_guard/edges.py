"""Zero-downtime deployment guard: the ``pack391_*`` edges.

Each edge parses, authorizes and calls the guard that :mod:`functions.deploy_guard.wiring`
builds (its ports chosen by ``PACK391_DEPLOY_BACKEND``: Cloud Run traffic, Cloud
Monitoring and the Firestore Admin API when deployed; the local split in Redis and the
pushed metrics under the local stack).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from firebase_functions import https_fn, tasks_fn
from firebase_functions.options import RetryConfig

from functions.deploy_guard.wiring import deploy_guard
from shared import thresholds as t
from shared.auth import Role
from shared.config import (
    MAX_INSTANCES_SCHEDULED,
)
from shared.edge import (
    CallContext,
    ScheduledContext,
    callable_function,
    parse_request,
    scheduled_function,
)
from shared.edge_errors import to_https_error
from shared.models.deploy import (
    ControlRequest,
    DeploymentList,
    DeploymentStatus,
    JudgeTickRequest,
    PinTrafficRequest,
    PinTrafficResult,
    RevisionMetricsRequest,
    RevisionMetricsResult,
    RollbackRequest,
    StartRequest,
    StartResult,
    StatusRequest,
    ValidateRequest,
    ValidationReport,
)

log = logging.getLogger("pack391.deploy")

MONITOR_SCHEDULE = "* * * * *"
"""``pack391_monitorDeployment`` runs every minute."""


@callable_function(role=Role.ADMIN, request=ValidateRequest)
def pack391_preDeployValidator(ctx: CallContext, req: ValidateRequest) -> ValidationReport:
    """Six pre-deploy gates; the stored report lets ``startDeployment`` run."""
    return deploy_guard().validate(req, ctx.change("deploy.validate", None))


@callable_function(role=Role.ADMIN, request=StartRequest, timeout_sec=t.DEPLOY_CALL_TIMEOUT_SEC)
def pack391_startDeployment(ctx: CallContext, req: StartRequest) -> StartResult:
    """Start a canary (one active deployment per environment)."""
    return deploy_guard().start(req, ctx.change("deploy.start", req.reason))


@scheduled_function(
    schedule=MONITOR_SCHEDULE,
    # Retried once, 10 s later: a retry carries the same schedule time, so it judges the
    # same minute in the same per-deployment-and-minute transaction (no double step);
    # without it a failed minute is never judged and the canary waits.
    retry_count=1,
    min_backoff_seconds=10,
    max_backoff_seconds=10,
    max_doublings=0,
    timeout_sec=t.DEPLOY_MONITOR_TIMEOUT_SEC,
)
def pack391_monitorDeployment(ctx: ScheduledContext) -> None:
    """Every minute: judge, advance or roll back every active deployment. The clock is the
    schedule time (the top of the minute): the judged window is the minute before it."""
    done = deploy_guard().monitor(ctx.schedule_time)
    log.info("deploy monitor %s: %s", ctx.request_id, {d.deployment_id: d.phase for d in done})


@callable_function(role=Role.ADMIN, request=RollbackRequest, timeout_sec=t.DEPLOY_CALL_TIMEOUT_SEC)
def pack391_rollbackController(ctx: CallContext, req: RollbackRequest) -> DeploymentStatus:
    """100 % back to the stable revisions, with the reason recorded."""
    dep = deploy_guard().rollback(
        req.deployment_id, req.reason, ctx.change("deploy.rollback", req.reason)
    )
    return DeploymentStatus.model_validate(dep.model_dump())


@callable_function(role=Role.OPS, request=StatusRequest)
def pack391_getDeploymentStatus(
    ctx: CallContext, req: StatusRequest
) -> DeploymentStatus | DeploymentList:
    """One deployment's phase, step, traffic, analyses and history; or the recent ones."""
    return deploy_guard().status(req)


@callable_function(role=Role.ADMIN, request=ControlRequest, timeout_sec=t.DEPLOY_CALL_TIMEOUT_SEC)
def pack391_controlDeployment(ctx: CallContext, req: ControlRequest) -> DeploymentStatus:
    """A human's promote, pause, resume or abort."""
    dep = deploy_guard().control(req, ctx.change(f"deploy.{req.action.value}", req.reason))
    return DeploymentStatus.model_validate(dep.model_dump())


@callable_function(
    role=Role.ADMIN, request=PinTrafficRequest, timeout_sec=t.DEPLOY_CALL_TIMEOUT_SEC
)
def pack391_pinTraffic(ctx: CallContext, req: PinTrafficRequest) -> PinTrafficResult:
    """Before ``firebase deploy``: pin each service's traffic to its serving revision, so the
    new revision lands at 0 %."""
    return deploy_guard().pin(req, ctx.change("deploy.pin_traffic", None))


@callable_function(role=Role.OPS, request=RevisionMetricsRequest)
def pack391_reportRevisionMetrics(
    ctx: CallContext, req: RevisionMetricsRequest
) -> RevisionMetricsResult:
    """Local stack: a revision (or its sidecar) pushes one sample for the canary judge.
    Deployed, the judge reads Cloud Monitoring and this answers FAILED_PRECONDITION."""
    return deploy_guard().report_revision(req, ctx.now)


def judge_tick(data: Any) -> dict[str, Any]:
    """The body of ``pack391JudgeDeployment``: one link of the fast judge's chain."""
    req = parse_request(JudgeTickRequest, data)
    dep = deploy_guard().tick(req.deployment_id, req.at)
    return {"deploymentId": req.deployment_id, "phase": dep.phase.value if dep else None}


@tasks_fn.on_task_dispatched(
    # one attempt: a failed link is followed by the next tick (scheduled first) and by the
    # minute monitor; a retry would judge a stale window late
    retry_config=RetryConfig(max_attempts=1),
    # the judging and one rollback write fit (15 + 20 s); a link that finds a split still to
    # apply pushes it with the callables' retries
    timeout_sec=t.DEPLOY_CALL_TIMEOUT_SEC,
    # background work, like the scheduled functions: one link per live canary every 10 s
    max_instances=MAX_INSTANCES_SCHEDULED,
)
def pack391JudgeDeployment(req: https_fn.CallableRequest[Any]) -> Any:
    """While a canary is live, every 10 s: roll it back on a conclusive breach of the window
    since the previous minute began (task-queue function: Cloud Tasks invokes it, and IAM
    limits its invokers to the runtime service account)."""
    request_id = uuid.uuid4().hex
    try:
        return judge_tick(req.data)
    except Exception as exc:  # the one catch-all, as in shared.edge
        raise to_https_error(exc, request_id) from exc
