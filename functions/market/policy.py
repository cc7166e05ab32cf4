"""Market admission and config rules: pure functions of data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidInput
from shared.models.market import AdmissionReason, LaunchStatus, MarketConfig, MarketDoc


@dataclass(frozen=True)
class MarketState:
    """What enforcement reads, in one round trip, before deciding."""

    market: MarketDoc
    all_paused: bool
    already_admitted: bool
    current_users: int


@dataclass(frozen=True)
class AdmissionDecision:
    """The verdict for one signup.

    ``admit`` with ``capacity`` None admits unconditionally; with a number, only
    while the market has fewer than ``capacity`` users (checked atomically by the
    store, which may still say :attr:`AdmissionReason.TRAFFIC_LIMIT_REACHED`).
    """

    admit: bool
    reason: AdmissionReason
    capacity: int | None = None


def closed_reason(market: MarketDoc, all_paused: bool) -> AdmissionReason | None:
    """Why the market is closed to everything (signups and money flows), or None."""
    if all_paused:
        return AdmissionReason.ALL_MARKETS_PAUSED
    if market.emergency_paused:
        return AdmissionReason.EMERGENCY_PAUSED
    if market.launch_status is LaunchStatus.PAUSED:
        return AdmissionReason.PAUSED
    return None


def decide_signup(state: MarketState, influencer: bool) -> AdmissionDecision:
    """May this user sign up in this market?

    Order: any pause closes the market; ``not_started`` admits nobody; a user
    already admitted stays admitted (never counted twice); ``influencer_only``
    admits influencers; ``soft_launch`` admits while under ``trafficLimit``;
    ``public`` admits everyone.
    """
    closed = closed_reason(state.market, state.all_paused)
    if closed is not None:
        return AdmissionDecision(False, closed)
    status = state.market.launch_status
    if status is LaunchStatus.NOT_STARTED:
        return AdmissionDecision(False, AdmissionReason.NOT_STARTED)
    if state.already_admitted:
        return AdmissionDecision(True, AdmissionReason.ALREADY_ADMITTED)
    if status is LaunchStatus.INFLUENCER_ONLY:
        if influencer:
            return AdmissionDecision(True, AdmissionReason.ADMITTED)
        return AdmissionDecision(False, AdmissionReason.INFLUENCERS_ONLY)
    if status is LaunchStatus.SOFT_LAUNCH:
        limit = state.market.traffic_limit
        if limit is None:  # apply_patch forbids it; an old document may still hold it
            return AdmissionDecision(False, AdmissionReason.TRAFFIC_LIMIT_REACHED)
        if state.current_users >= limit:
            return AdmissionDecision(False, AdmissionReason.TRAFFIC_LIMIT_REACHED)
        return AdmissionDecision(True, AdmissionReason.ADMITTED, capacity=limit)
    return AdmissionDecision(True, AdmissionReason.ADMITTED)


def features_enabled(market: MarketDoc, all_paused: bool) -> tuple[bool, bool, bool]:
    """(payments, payouts, marketing) enabled right now: all off while any pause holds."""
    if closed_reason(market, all_paused) is not None:
        return (False, False, False)
    return (market.payments_enabled, market.payouts_enabled, market.marketing_enabled)


def apply_patch(current: MarketConfig, changes: dict[str, Any]) -> MarketConfig:
    """The config after a partial update; rejects a combination that cannot be enforced."""
    if not changes:
        raise InvalidInput("config", "give at least one field to change")
    merged = current.model_copy(update=changes)
    if merged.launch_status is LaunchStatus.SOFT_LAUNCH and merged.traffic_limit is None:
        raise InvalidInput("config.trafficLimit", "required (a positive integer) for soft_launch")
    return MarketConfig.model_validate(merged.model_dump())


def config_of(doc: MarketDoc) -> MarketConfig:
    """The controls part of a market document."""
    return MarketConfig.model_validate(doc.model_dump(include=set(MarketConfig.model_fields)))
