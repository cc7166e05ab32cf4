"""Traffic protection: requests, documents and answers."""

from __future__ import annotations

import enum
import ipaddress
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from shared.models import RequestModel, WireModel
from shared.models.alerts import Severity
from shared.models.market import CountryCode, Reason
from shared.thresholds import GEO_MULTIPLIER_MAX


class EndpointClass(enum.StrEnum):
    """The classes of endpoint a request is counted under, each with its own limit."""

    AUTH = "auth"
    WALLET = "wallet"
    PAYMENT = "payment"
    AI = "ai"
    SWIPE = "swipe"
    GENERAL = "general"
    STAFF = "staff"
    """Ops and admin callers of ops and admin functions (their own per-user bucket)."""
    SERVICE = "service"
    """A trusted app backend's own calls (``service: true``): per principal, never per
    egress address."""


class SubjectOverride(RequestModel):
    """Whom a trusted service asks about (only callers with the ``service: true`` claim)."""

    uid: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None
    ip: Annotated[StrictStr, Field(min_length=2, max_length=45)]
    country: CountryCode | None = None
    user_agent: Annotated[StrictStr, Field(max_length=512)] = ""
    established: StrictBool = False
    """The service vouches that the user is established (a registered account signed in
    for at least ``PACK391_ESTABLISHED_MIN_AGE_MIN``): it then counts among the users
    behind its address."""


class CheckRateLimitRequest(RequestModel):
    endpoint_class: EndpointClass
    subject: SubjectOverride | None = None

    @field_validator("endpoint_class")
    @classmethod
    def _not_staff(cls, value: EndpointClass) -> EndpointClass:
        if value in (EndpointClass.STAFF, EndpointClass.SERVICE):
            raise ValueError(f"{value.value} is not a class callers may ask about")
        return value


class RateDecisionView(WireModel):
    allowed: bool
    remaining: int
    retry_after_sec: float
    reset_sec: float
    reason: str
    limit: int
    endpoint_class: EndpointClass


class WalletAttemptRequest(RequestModel):
    attempt: Literal["failure", "success"]


class AuthFailureRequest(RequestModel):
    """A failure a trusted backend observed (a wrong PIN, a bad password)."""

    kind: Literal["auth", "wallet"]
    ip: Annotated[StrictStr, Field(min_length=2, max_length=45)]
    """The client address the backend saw the attempt from (as its own front door says)."""
    uid: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None
    """The account's uid, when the attempt named an existing account."""
    account: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None
    """Otherwise a stable id of the login name tried (for example its salted hash): the
    address scope counts distinct accounts."""


class ShieldView(WireModel):
    blocked: bool
    attempts_left: int
    blocked_until: datetime | None


class PanicRequest(RequestModel):
    """No fields: a pass is only ever for the caller."""


class PanicView(WireModel):
    granted: bool
    expires_at: datetime | None
    passes_left_today: int


class SetGeoThrottleRequest(RequestModel):
    country: CountryCode
    multiplier: Annotated[StrictFloat, Field(gt=0, le=GEO_MULTIPLIER_MAX)] = 1.0
    region_cap_per_min: Annotated[StrictInt, Field(gt=0, le=10**9)] | None = None
    reason: Reason


class GeoThrottleDoc(WireModel):
    """``pack391_geo_throttles/{country}``."""

    country: str
    multiplier: float = 1.0
    region_cap_per_min: int | None = None
    version: int = 0
    reason: str | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None


class BlockScope(enum.StrEnum):
    USER = "user"
    IP = "ip"


class BlockKind(enum.StrEnum):
    BRUTE_FORCE = "brute_force"
    """Too many failed wallet/auth attempts; blocks the auth, wallet and payment classes."""
    DDOS = "ddos"
    """A flooding source blocked by auto-mitigation; blocks every class."""


class BlockDoc(WireModel):
    """``pack391_blocks/{id}``: a block held in Redis, mirrored for audit and stats."""

    scope: BlockScope
    subject: str
    kind: BlockKind
    reason: str
    offence: int = 1
    blocked_at: datetime
    expires_at: datetime
    evidence: dict[str, Any] = Field(default_factory=dict)
    """Why: the detection, the address's rate and users, the blast radius."""
    lifted_at: datetime | None = None
    lifted_by: str | None = None


class PanicPassDoc(WireModel):
    """``pack391_panic_passes/{id}``: one activation."""

    uid: str
    granted_at: datetime
    expires_at: datetime


class DetectionKind(enum.StrEnum):
    TRAFFIC_SPIKE = "traffic_spike"
    DISTRIBUTED_ATTACK = "distributed_attack"
    BOT_SWARM = "bot_swarm"
    SINGLE_SOURCE_FLOOD = "single_source_flood"


class DetectionDoc(WireModel):
    """``pack391_ddos_detections/{minute}_{kind}``."""

    minute: datetime
    kind: DetectionKind
    severity: Severity
    evidence: dict[str, Any]
    mitigated: bool
    blocked_sources: list[str] = Field(default_factory=list)
    blocked_users: list[str] = Field(default_factory=list)
    held: list[dict[str, Any]] = Field(default_factory=list)
    """Actions not taken because of their blast radius (or an allowlist): ``{action,
    target, blastRadiusPct, evidence}``; each held one is in the alert too."""
    detected_at: datetime


class DDoSModeView(WireModel):
    active: bool
    until: datetime | None = None
    reason: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    limit_factor: float
    lockdown_until: datetime | None = None
    """While set, every request without a valid token is refused at the front door."""


class OffenderView(WireModel):
    ip: str
    requests: int


class AllowlistEntryDoc(WireModel):
    """``pack391_ddos_allowlist/{id}``: an address or network never blocked automatically."""

    entry: str
    """An IP address or a CIDR network, normalised."""
    reason: str
    added_by: str
    added_at: datetime


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError("must be an IPv4/IPv6 address or CIDR network") from None


class SetAllowlistRequest(RequestModel):
    action: Literal["add", "remove"]
    entry: Annotated[StrictStr, Field(min_length=2, max_length=49), AfterValidator(_network)]
    reason: Reason


class AllowlistResult(WireModel):
    entry: str
    action: str
    changed: bool
    lifted: list[str]
    """Blocks lifted because the address is now allowlisted (``ddos:ip:<addr>``)."""
    allowlist: list[AllowlistEntryDoc]


class LiftScope(enum.StrEnum):
    IP = "ip"
    USER = "user"
    DDOS_MODE = "ddos_mode"


class LiftBlockRequest(RequestModel):
    scope: LiftScope
    subject: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = Field(
        default=None, validate_default=True
    )
    """The address (scope ip) or uid (scope user); none for ddos_mode."""
    reason: Reason

    @field_validator("subject", mode="after")
    @classmethod
    def _subject_fits_scope(cls, value: str | None, info: ValidationInfo) -> str | None:
        scope = info.data.get("scope")
        if scope is None:
            return value  # the scope's own error is reported
        if scope is LiftScope.DDOS_MODE:
            if value is not None:
                raise ValueError("must be absent for scope ddos_mode")
            return None
        if value is None:
            raise ValueError(f"required for scope {scope.value}")
        if scope is LiftScope.IP:
            text = value.strip()
            try:
                return str(ipaddress.ip_address(text))
            except ValueError:
                pass
            try:  # an IPv6 client is blocked as its /64: the key as shown by the stats
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError("must be an IPv4 or IPv6 address (or an IPv6 /64)") from None
            if network.version != 6:
                raise ValueError("must be an IPv4 or IPv6 address (or an IPv6 /64)")
            return str(network)
        return value


class LiftBlockResult(WireModel):
    scope: LiftScope
    subject: str | None
    lifted: list[str]
    """What was active and is now lifted: ``ddos``, ``brute_force``, ``ddos_mode``."""
    mirrors_updated: int


class GetDDoSStatsRequest(RequestModel):
    """No fields: the stats as of now."""


class DDoSStatsView(WireModel):
    mode: DDoSModeView
    blocks: list[BlockDoc]
    top_offenders: list[OffenderView]
    requests_last_hour: dict[str, int]
    denied_last_hour: dict[str, int]
    denied_by_reason_last_hour: dict[str, int]
    bot_scores_last_hour: dict[str, int] = Field(default_factory=dict)
    """Requests by Cloudflare's bot score bucket (``1``, ``2-29``, ``30-99``), where your
    zone sent a proven score (cloudflare mode with Bot Management)."""
    shadow_denied_last_hour: dict[str, int]
    near_limit_last_hour: dict[str, int]
    panic_passes_used_last_hour: int
    redis_failures_last_hour: int
    panic_activations_last_24h: int
    recent_detections: list[DetectionDoc]
    geo_throttles: list[GeoThrottleDoc]
    allowlist: list[AllowlistEntryDoc] = Field(default_factory=list)


class CleanupReport(WireModel):
    removed: int
