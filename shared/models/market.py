"""Market soft-launch controls: requests, documents and answers."""

from __future__ import annotations

import enum
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
)

from shared.countries import is_country_code
from shared.models import RequestModel, WireModel
from shared.thresholds import MARKET_REASON_MAX_CHARS


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
    traffic_limit: Annotated[StrictInt, Field(gt=0)] | None = None
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
    expected_version: Annotated[StrictInt, Field(ge=0)] | None = None
    """When given, the update applies only if the market is still at this version."""


class GetMarketControlsRequest(RequestModel):
    country: CountryCode | None = None
    """Only this market (default: every configured market)."""


class EmergencyPauseRequest(RequestModel):
    country: CountryCode | None = None
    """The market to pause or resume; absent means every market at once."""
    paused: StrictBool
    reason: Reason


class CheckMarketAccessRequest(RequestModel):
    country: CountryCode
    signup: StrictBool = False
    """True when the caller is signing up: an admission is counted."""


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
    """``pack391_markets/{country}/admissions/{uid}``."""

    uid: str
    country: str
    admitted_at: datetime
    influencer: bool = False


class MarketView(MarketDoc):
    current_users: int


class MarketControlsView(WireModel):
    markets: list[MarketView]
    all_markets_paused: bool
    all_markets_paused_reason: str | None = None


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
