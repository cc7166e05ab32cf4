"""Service-level objectives: the ``pack391_*`` edges."""

from __future__ import annotations

import logging
from typing import Any

from functions.slo.wiring import slo_service
from shared.auth import Role
from shared.edge import CallContext, ScheduledContext, callable_function, scheduled_function
from shared.models.slo import GetSloStatusRequest, LiftSloActionRequest, LiftSloActionResult

log = logging.getLogger("pack391.slo")

EVALUATE_SCHEDULE = "* * * * *"
"""``pack391_evaluateSlos`` runs every minute."""


@scheduled_function(
    schedule=EVALUATE_SCHEDULE,
    # idempotent per minute (the state's minute): one retry 10 s later, inside the minute
    retry_count=1,
    min_backoff_seconds=10,
    max_backoff_seconds=10,
    max_doublings=0,
)
def pack391_evaluateSlos(ctx: ScheduledContext) -> None:
    """Roll the minute that ended two minutes ago into the budgets: burn rates, alerts,
    the actions and their snapshot (docs/slo.md)."""
    report = slo_service().evaluate(ctx.now)
    log.info("slo evaluate %s: %s", ctx.request_id, report)


@callable_function(role=Role.OPS, request=GetSloStatusRequest)
def pack391_getSloStatus(ctx: CallContext, req: GetSloStatusRequest) -> dict[str, Any]:
    """Every scope's objectives, burn rates and 30-day budget, and the actions in force
    (``{"state": null}`` before the evaluator's first run)."""
    state = slo_service().status()
    if state is None:
        return {"state": None}
    shown = state.model_dump(mode="json", by_alias=True, exclude={"days"})
    return {"state": shown}


@callable_function(role=Role.OPS, request=LiftSloActionRequest)
def pack391_liftSloAction(ctx: CallContext, req: LiftSloActionRequest) -> LiftSloActionResult:
    """Hold one automatic action off for ``minutes`` (0: remove the lift), audited; the
    rate limiter and admissions see it at once."""
    verb = "lifted" if req.minutes else "unlifted"
    after = slo_service().lift(
        req.action, req.minutes, ctx.change(f"slo.{req.action.value}.{verb}", req.reason)
    )
    return LiftSloActionResult(
        action=req.action,
        state=after.actions.get(req.action),
        lift=after.lifts.get(req.action),
    )
