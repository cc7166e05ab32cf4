"""Traffic protection (the spec's pack391-ddos): the ``pack391_*`` edges."""

from __future__ import annotations

import ipaddress
import logging

from functions.ddos.service import SHIELD_KIND_AUTH, SHIELD_KIND_WALLET
from functions.ddos.wiring import protection_service
from shared.auth import Role
from shared.config import ESTABLISHED_MIN_AGE_MIN, HOT_MIN_INSTANCES
from shared.edge import CallContext, ScheduledContext, callable_function, scheduled_function
from shared.errors import InvalidInput, PermissionDenied
from shared.models.ddos import (
    AllowlistResult,
    AuthFailureRequest,
    CheckRateLimitRequest,
    CleanupReport,
    DDoSStatsView,
    GeoThrottleDoc,
    GetDDoSStatsRequest,
    LiftBlockRequest,
    LiftBlockResult,
    PanicRequest,
    PanicView,
    RateDecisionView,
    SetAllowlistRequest,
    SetGeoThrottleRequest,
    ShieldView,
    WalletAttemptRequest,
)
from shared.ratelimit.client import ClientInfo, fingerprint, source_key
from shared.ratelimit.limiter import Subject
from shared.ratelimit.middleware import default_limiter, front_door, subject_of
from shared.ratelimit.policy import EndpointClass

log = logging.getLogger("pack391.ddos")

DETECT_SCHEDULE = "* * * * *"
CLEANUP_SCHEDULE = "0 * * * *"


def _subject(ctx: CallContext, req: CheckRateLimitRequest) -> Subject:
    """Whom a check is about: the caller, or (for a trusted service) the user it names,
    counted once, under that user's own address (the service itself was not counted at
    the front door: it is a principal, not an address)."""
    if req.subject is None:
        return subject_of(ctx.raw_request, ctx.caller.uid, ctx.caller.claims, ctx.now)
    if not ctx.caller.is_service:
        raise PermissionDenied(
            "only a trusted service (service: true) may ask about another subject"
        )
    try:
        ip = ipaddress.ip_address(req.subject.ip)
    except ValueError:
        raise InvalidInput("subject.ip", "must be an IPv4 or IPv6 address") from None
    client = ClientInfo(
        source_key(str(ip), front_door().ipv6_prefix),
        req.subject.country,
        fingerprint({"user-agent": req.subject.user_agent}),
    )
    return Subject(
        req.subject.uid, client, established=bool(req.subject.uid) and req.subject.established
    )


@callable_function(
    role=Role.USER,
    request=CheckRateLimitRequest,
    rate_limit=None,
    min_instances=HOT_MIN_INSTANCES,  # on every app request's path: no cold starts
)
def pack391_checkRateLimit(ctx: CallContext, req: CheckRateLimitRequest) -> RateDecisionView:
    """Count one request of ``endpointClass`` for the caller (or, for a trusted service,
    for ``subject``) and say whether it may proceed."""
    own = req.subject is None and ctx.caller.is_service  # a service asking about itself
    decision = default_limiter().decide(
        req.endpoint_class, _subject(ctx, req), ctx.now, service=own
    )
    return RateDecisionView(
        allowed=decision.allowed,
        remaining=decision.remaining,
        retry_after_sec=decision.retry_after_sec,
        reset_sec=decision.reset_sec,
        reason=decision.reason.value,
        limit=decision.limit,
        endpoint_class=decision.endpoint_class,
    )


@callable_function(role=Role.USER, request=WalletAttemptRequest, rate_limit=EndpointClass.GENERAL)
def pack391_walletBruteForceShield(ctx: CallContext, req: WalletAttemptRequest) -> ShieldView:
    """A client's own report of a wallet PIN attempt: it feeds only the caller's window
    (5 failures block the caller, never the address; see pack391_recordAuthFailure)."""
    subject = subject_of(ctx.raw_request, ctx.caller.uid)
    return protection_service().record_attempt(
        SHIELD_KIND_WALLET, ctx.caller.uid, subject.client.ip, req.attempt == "failure", ctx.now
    )


@callable_function(role=Role.SERVICE, request=AuthFailureRequest, rate_limit=EndpointClass.GENERAL)
def pack391_recordAuthFailure(ctx: CallContext, req: AuthFailureRequest) -> ShieldView:
    """For a trusted backend (``service: true``): a failed attempt it observed server-side.
    Feeds the user's server window and the address's window of distinct failing accounts
    (the credential-stuffing signature); the answer says whether the user (or the address)
    is now blocked."""
    if req.uid is None and req.account is None:
        raise InvalidInput("account", "name the account: uid or account is required")
    try:
        ip = ipaddress.ip_address(req.ip)
    except ValueError:
        raise InvalidInput("ip", "must be an IPv4 or IPv6 address") from None
    kind = SHIELD_KIND_WALLET if req.kind == "wallet" else SHIELD_KIND_AUTH
    return protection_service().record_server_failure(
        kind,
        req.uid,
        source_key(str(ip), front_door().ipv6_prefix),
        ctx.now,
        account=req.account,
    )


@callable_function(role=Role.USER, request=PanicRequest)
def pack391_panicEscalation(ctx: CallContext, req: PanicRequest) -> PanicView:
    """A 5-minute priority-lane pass for the caller (a few per day), if the caller is an
    established account (``FAILED_PRECONDITION`` saying why otherwise)."""
    return protection_service().panic_pass(ctx.caller, ctx.now, ESTABLISHED_MIN_AGE_MIN.value * 60)


@callable_function(role=Role.ADMIN, request=SetGeoThrottleRequest)
def pack391_setGeoThrottle(ctx: CallContext, req: SetGeoThrottleRequest) -> GeoThrottleDoc:
    """Set a country's limit multiplier and region-wide cap (applies within the cache TTL)."""
    change = ctx.change("ddos.geo_throttle", req.reason)
    return protection_service().set_geo(req, change)


@callable_function(role=Role.OPS, request=GetDDoSStatsRequest)
def pack391_getDDoSStats(ctx: CallContext, req: GetDDoSStatsRequest) -> DDoSStatsView:
    """Current mode, blocks, top offenders, denials, detections, geo rules."""
    return protection_service().stats(ctx.now)


@callable_function(role=Role.ADMIN, request=LiftBlockRequest)
def pack391_liftBlock(ctx: CallContext, req: LiftBlockRequest) -> LiftBlockResult:
    """Lift every block on an address or a user (DDoS and brute force), or end DDoS mode,
    now; audited. Offence history stays, so a repeat offence still escalates."""
    change = ctx.change(f"ddos.lift.{req.scope.value}", req.reason)
    return protection_service().lift(req, change)


@callable_function(role=Role.ADMIN, request=SetAllowlistRequest)
def pack391_setAllowlist(ctx: CallContext, req: SetAllowlistRequest) -> AllowlistResult:
    """Add or remove an address or network that DDoS auto-mitigation never blocks (adding
    an address lifts its DDoS block); audited."""
    change = ctx.change(f"ddos.allowlist.{req.action}", req.reason)
    return protection_service().set_allowlist(req, change)


@scheduled_function(
    schedule=DETECT_SCHEDULE,
    # Retried once, 10 s later, in the same minute: detections are keyed by minute and kind
    # (a re-run never duplicates) and every run already re-judges the minute before, so a
    # repeat is safe; a lost run during an attack delays mitigation by a minute.
    retry_count=1,
    min_backoff_seconds=10,
    max_backoff_seconds=10,
    max_doublings=0,
)
def pack391_detectDDoS(ctx: ScheduledContext) -> None:
    """Judge the last minute's traffic; auto-mitigate critical attacks."""
    report = protection_service().detect(ctx.now)
    log.info("detectDDoS %s: %s", ctx.request_id, report)


@scheduled_function(
    schedule=CLEANUP_SCHEDULE,
    # Retried: deleting the mirrors of expired blocks is idempotent; 1, 2, 4 min.
    retry_count=3,
    min_backoff_seconds=60,
    max_backoff_seconds=600,
    max_doublings=2,
)
def pack391_cleanupExpiredBlocks(ctx: ScheduledContext) -> None:
    """Remove the Firestore mirrors of blocks that have expired."""
    report = CleanupReport(removed=protection_service().cleanup(ctx.now))
    log.info("cleanupExpiredBlocks %s: %s", ctx.request_id, report)
