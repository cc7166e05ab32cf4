"""Market soft-launch controls: requests, documents and answers."""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from shared.countries import is_country_code
from shared.errors import InvalidInput
from shared.models import RequestModel, WireModel
from shared.thresholds import (
    MARKET_REASON_MAX_CHARS,
    MARKET_RELEASE_MAX_UIDS_COUNT,
    MARKET_UID_MAX_CHARS,
)


class LaunchStatus(enum.StrEnum):
    """Where a market is in its launch. Closed: these five and no others."""

    NOT_STARTED = "not_started"
    """No signups; the default for every market nobody has configured."""
    INFLUENCER_ONLY = "influencer_only"
    """Only users whose token has the ``influencer: true`` claim may sign up."""
    SOFT_LAUNCH = "soft_launch"
    """Anyone may sign up while the market has fewer users than ``trafficLimit``."""
    PUBLIC = "public"
    """Open to everyone."""
    PAUSED = "paused"
    """Closed to signups, payments, payouts and marketing (a planned pause)."""


class AdmissionReason(enum.StrEnum):
    """Why a signup was or was not admitted."""

    ADMITTED = "admitted"
    ALREADY_ADMITTED = "already_admitted"
    NOT_STARTED = "not_started"
    PAUSED = "paused"
    EMERGENCY_PAUSED = "emergency_paused"
    ALL_MARKETS_PAUSED = "all_markets_paused"
    INFLUENCERS_ONLY = "influencers_only"
    TRAFFIC_LIMIT_REACHED = "traffic_limit_reached"
    NOT_REQUESTED = "not_requested"
    """The call asked about features only (``signup: false``)."""
    IDENTITY_REQUIRED = "identity_required"
    """The account may not take a limited place (``influencer_only``, ``soft_launch``)
    under ``PACK391_MARKET_SIGNUP_IDENTITY``: anonymous, or (``verified``) neither a
    verified email nor a phone number. Nothing was counted; sign in properly and retry."""
    ACTIVATED = "activated"
    """Answer to ``activate: true``: the user's admission is active and never expires."""
    PAUSED_BUDGET = "paused_budget"
    """Soft-launch admissions are paused while the platform's error budget burns (the
    ``admissions_pause`` action of ``pack391_evaluateSlos``, enforced). Nothing was
    counted; users already admitted keep their place; retry later."""


def _normalise_country(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _check_country(value: str) -> str:
    if not is_country_code(value):
        raise ValueError("must be an ISO 3166-1 alpha-2 country code such as 'PL' or 'US'")
    return value


CountryCode = Annotated[
    StrictStr, BeforeValidator(_normalise_country), AfterValidator(_check_country)
]
"""An ISO 3166-1 alpha-2 code; lower case and surrounding spaces are accepted."""

Reason = Annotated[StrictStr, Field(min_length=1, max_length=MARKET_REASON_MAX_CHARS)]


class MarketConfigPatch(RequestModel):
    """The fields to change; absent fields keep their value. Only ``trafficLimit`` may be null
    (no limit)."""

    launch_status: LaunchStatus | None = None
    traffic_limit: Annotated[StrictInt, Field(gt=0, le=10**10)] | None = None
    payments_enabled: StrictBool | None = None
    payouts_enabled: StrictBool | None = None
    marketing_enabled: StrictBool | None = None

    @field_validator(
        "launch_status", "payments_enabled", "payouts_enabled", "marketing_enabled", mode="after"
    )
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null (leave the field out to keep its value)")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields the caller gave, by Python name."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class UpdateMarketControlRequest(RequestModel):
    country: CountryCode
    config: MarketConfigPatch
    reason: Reason | None = None
    expected_version: Annotated[StrictInt, Field(ge=0, le=10**12)] | None = None
    """When given, the update applies only if the market is still at this version."""


class GetMarketControlsRequest(RequestModel):
    country: CountryCode | None = None
    """Only this market (default: every configured market)."""


class EmergencyPauseRequest(RequestModel):
    country: CountryCode | None = None
    """The market to pause or resume; absent means every market at once."""
    paused: StrictBool
    reason: Reason


_RESERVED_ID = re.compile(r"__.*__", re.DOTALL)


def _check_document_id(value: str) -> str:
    if "/" in value:
        raise ValueError("may not contain '/'")
    if value in (".", "..") or _RESERVED_ID.fullmatch(value):
        raise ValueError("is a reserved Firestore id ('.', '..', '__...__'), not a user id")
    return value


Uid = Annotated[
    StrictStr,
    Field(min_length=1, max_length=MARKET_UID_MAX_CHARS),
    AfterValidator(_check_document_id),
]
"""A Firebase Auth uid, usable as a Firestore document id."""


class CheckMarketAccessRequest(RequestModel):
    country: CountryCode
    """The market asked about. For a signup it must be the country the front door reports
    when it reports one (``FAILED_PRECONDITION``, ``reason: "country_mismatch"``
    otherwise); under a front door that reports none (``google``, ``direct``) it is the
    client's word."""
    signup: StrictBool = False
    """True when the caller is signing up: an admission is counted (soft launch: a
    pending one, see ``activate``). A soft-launch place is one per user across markets
    (``FAILED_PRECONDITION``, ``reason: "admitted_elsewhere"``, when the user holds one
    in another market)."""
    activate: StrictBool = False
    """True when an app backend (a caller with the ``service: true`` claim) has seen the
    user named by ``uid`` finish onboarding: their pending admission becomes active
    (kept for good; audited). ``PERMISSION_DENIED`` for any other caller;
    ``FAILED_PRECONDITION`` when the user is not admitted."""
    uid: Uid | None = None
    """With ``activate``: the user whose admission becomes active."""

    @model_validator(mode="after")
    def _one_action(self) -> CheckMarketAccessRequest:
        if self.signup and self.activate:
            # raised as is (not a ValueError) so the error names its field
            raise InvalidInput("activate", "sign up first, then activate: not both in one call")
        if self.uid is not None and not self.activate:
            raise InvalidInput(
                "uid", "only with activate: true (an app backend activating a user's admission)"
            )
        return self


class ReleaseMarketAdmissionsRequest(RequestModel):
    country: CountryCode
    uids: (
        Annotated[list[Uid], Field(min_length=1, max_length=MARKET_RELEASE_MAX_UIDS_COUNT)] | None
    ) = None
    """The admissions to release (default: every pending one, with ``pendingOnly``)."""
    pending_only: StrictBool = False
    """Release only admissions still pending (never activated)."""
    reason: Reason

    @model_validator(mode="after")
    def _something_named(self) -> ReleaseMarketAdmissionsRequest:
        if self.uids is None and not self.pending_only:
            raise InvalidInput(
                "uids", "name the admissions to release, or set pendingOnly to release pending ones"
            )
        return self


class MarketConfig(WireModel):
    """The soft-launch controls of one market."""

    launch_status: LaunchStatus = LaunchStatus.NOT_STARTED
    traffic_limit: int | None = None
    payments_enabled: bool = False
    payouts_enabled: bool = False
    marketing_enabled: bool = False


class MarketDoc(MarketConfig):
    """``pack391_markets/{country}`` (and each entry of its ``versions``)."""

    country: str
    version: int = 0
    """0 for a market nobody has configured; +1 on every change."""
    emergency_paused: bool = False
    updated_at: datetime | None = None
    updated_by: str | None = None
    reason: str | None = None


class GlobalMarketsDoc(WireModel):
    """``pack391_config/markets``: the all-markets emergency switch."""

    all_paused: bool = False
    version: int = 0
    reason: str | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None


class AdmissionDoc(WireModel):
    """``pack391_markets/{country}/admissions/{uid}``.

    A soft-launch admission is *pending* (``pendingUntil`` set) until the user
    activates it (``activatedAt`` set, ``pendingUntil`` removed); a pending admission
    whose ``pendingUntil`` has passed is released by ``pack391_syncMarkets``.
    Admissions into other launch stages are never pending."""

    uid: str
    country: str
    admitted_at: datetime
    influencer: bool = False
    pending_until: datetime | None = None
    activated_at: datetime | None = None

    def to_doc(self) -> dict[str, object]:
        """Absent fields stay absent: only pending admissions have ``pendingUntil`` (the
        field the expiry query ranges over)."""
        return self.model_dump(mode="python", by_alias=True, exclude_none=True)


class MarketMemberDoc(WireModel):
    """``pack391_market_members/{uid}``: the one soft-launch place a user holds, across
    markets. Created in the transaction that records a soft-launch admission, deleted in
    the transaction that releases it; a signup into another soft-launch market reads it
    in its own transaction, so two concurrent signups of one user in two markets yield
    one place."""

    uid: str
    country: str
    """The market whose soft-launch place the user holds."""
    admitted_at: datetime

    def to_doc(self) -> dict[str, object]:
        return self.model_dump(mode="python", by_alias=True, exclude_none=True)


class MarketView(MarketDoc):
    current_users: int


class MarketControlsView(WireModel):
    markets: list[MarketView]
    all_markets_paused: bool
    all_markets_paused_reason: str | None = None
    stale: bool = False
    """True: Firestore did not answer within a short wait and this is the instance's
    last-known answer (docs/reliability.md, "Stale answers")."""
    stale_age_sec: float | None = None
    """How old the stale answer is, in seconds (at most ``PACK391_STALE_MAX_SEC``); None
    when fresh."""


class UpdateMarketControlResult(WireModel):
    market: MarketDoc
    changed: bool
    previous_version: int
    enforced: bool
    """False when the change is stored but Redis could not be updated yet: the
    every-minute sync applies it, and until then enforcement fails closed."""


class EmergencyPauseResult(WireModel):
    scope: str
    paused: bool
    version: int
    enforced: bool


class MarketAccess(WireModel):
    """What a user flow may do in a market right now."""

    country: str
    launch_status: LaunchStatus
    signup_admitted: bool
    reason: AdmissionReason
    payments_enabled: bool
    payouts_enabled: bool
    marketing_enabled: bool
    current_users: int
    traffic_limit: int | None
    pending_until: datetime | None = None
    """Set when this call admitted the caller into a soft-launch market: activate
    (``activate: true``) before then, or the place is released."""
    activated_at: datetime | None = None
    """Set by ``activate: true``: when the caller's admission became active."""


class ReleaseMarketAdmissionsResult(WireModel):
    country: str
    released: int
    uids: list[str]
    """The uids whose admission was released (their places are free again)."""
    skipped: list[str]
    """Named uids not released: not admitted, or (``pendingOnly``) already active."""
    more: bool
    """``pendingOnly`` without uids: more pending admissions remain; call again."""
