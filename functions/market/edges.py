"""Market soft-launch controls: the ``pack391_*`` edges.

Each edge parses, authorizes (the role is in its decorator) and calls the service.
"""

from __future__ import annotations

import logging

from functions.market.policy import applicant_of
from functions.market.wiring import market_service
from shared.auth import Role
from shared.config import HOT_MIN_INSTANCES, MARKET_SIGNUP_IDENTITY, STALE_MAX_SEC
from shared.edge import CallContext, ScheduledContext, callable_function, scheduled_function
from shared.errors import InvalidInput, PermissionDenied
from shared.models.market import (
    CheckMarketAccessRequest,
    EmergencyPauseRequest,
    EmergencyPauseResult,
    GetMarketControlsRequest,
    MarketAccess,
    MarketControlsView,
    ReleaseMarketAdmissionsRequest,
    ReleaseMarketAdmissionsResult,
    UpdateMarketControlRequest,
    UpdateMarketControlResult,
)
from shared.ratelimit.middleware import client_of

log = logging.getLogger("pack391.market")

SYNC_SCHEDULE = "* * * * *"
"""``pack391_syncMarkets`` runs every minute."""


@callable_function(role=Role.ADMIN, request=UpdateMarketControlRequest)
def pack391_updateMarketControl(
    ctx: CallContext, req: UpdateMarketControlRequest
) -> UpdateMarketControlResult:
    """Change a market's launch controls (partial update, versioned, audited)."""
    return market_service().update_market(req, ctx.change("market.update", req.reason))


@callable_function(role=Role.OPS, request=GetMarketControlsRequest)
def pack391_getMarketControls(
    ctx: CallContext, req: GetMarketControlsRequest
) -> MarketControlsView:
    """Every configured market (or one) with its version and current user count; while
    Firestore stalls, the instance's last-known answer marked ``stale`` (at most
    ``PACK391_STALE_MAX_SEC`` old)."""
    return market_service().controls(req.country, STALE_MAX_SEC.value)


@callable_function(role=Role.ADMIN, request=EmergencyPauseRequest)
def pack391_emergencyPauseMarkets(
    ctx: CallContext, req: EmergencyPauseRequest
) -> EmergencyPauseResult:
    """Pause (or resume) one market, or every market at once, from the next enforcement call."""
    action = "market.emergency_pause" if req.paused else "market.emergency_resume"
    return market_service().emergency_pause(req.country, req.paused, ctx.change(action, req.reason))


@callable_function(
    role=Role.USER,
    request=CheckMarketAccessRequest,
    min_instances=HOT_MIN_INSTANCES,  # on every signup's path: no cold starts
)
def pack391_checkMarketAccess(ctx: CallContext, req: CheckMarketAccessRequest) -> MarketAccess:
    """For the caller: is signup admitted in ``country`` (counted when ``signup``; for the
    country the front door reports, when it reports one), and are payments, payouts and
    marketing enabled there. ``activate`` with ``uid``: an app backend (``service: true``)
    that saw the user finish onboarding makes their pending admission active (audited)."""
    if req.activate:
        if not ctx.caller.is_service:
            raise PermissionDenied(
                "activate: only an app backend (a service principal, ID token claim "
                "service: true) activates an admission, for the user it names (uid), once "
                "it has seen that user complete onboarding; the user's own app cannot"
            )
        if req.uid is None:
            raise InvalidInput("uid", "name the user whose admission becomes active")
        return market_service().admission.activate(
            req.country, req.uid, ctx.change("market.activate", None)
        )
    return market_service().admission.check_access(
        req.country,
        applicant_of(ctx.caller.uid, ctx.caller.claims),
        req.signup,
        MARKET_SIGNUP_IDENTITY.value,
        ctx.now,
        client_of(ctx.raw_request).country if req.signup else None,
    )


@callable_function(role=Role.ADMIN, request=ReleaseMarketAdmissionsRequest)
def pack391_releaseMarketAdmissions(
    ctx: CallContext, req: ReleaseMarketAdmissionsRequest
) -> ReleaseMarketAdmissionsResult:
    """Free market places: the named admissions, or the pending ones (audited)."""
    return market_service().releases.release(
        req, ctx.change("market.release_admissions", req.reason)
    )


@scheduled_function(
    schedule=SYNC_SCHEDULE,
    # Retried once, 10 s later: a reconciliation (release expired, re-apply, restore) is
    # idempotent, and after a Redis failover the sooner admissions are restored the
    # sooner checkMarketAccess counts right again.
    retry_count=1,
    min_backoff_seconds=10,
    max_backoff_seconds=10,
    max_doublings=0,
)
def pack391_syncMarkets(ctx: ScheduledContext) -> None:
    """Release expired pending admissions, re-apply stored market changes to Redis and
    restore lost admissions."""
    report = market_service().releases.sync(ctx.now)
    log.info("market sync %s: %s", ctx.request_id, report)
