"""Market admission and config rules: pure functions of data and ``now``, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.errors import FailedPrecondition, InvalidInput
from shared.models.market import (
    AdmissionDoc,
    AdmissionReason,
    LaunchStatus,
    MarketConfig,
    MarketDoc,
)
from shared.models.slo import ActionsSnapshot, SloAction
from shared.thresholds import MARKET_ADMISSION_PENDING_SEC

SIGNUP_IDENTITY_PARAM = "PACK391_MARKET_SIGNUP_IDENTITY"


class SignupIdentity(enum.StrEnum):
    """Which accounts may take a limited place (``influencer_only``, ``soft_launch``):
    the values of ``PACK391_MARKET_SIGNUP_IDENTITY``."""

    VERIFIED = "verified"
    """Not anonymous, and a verified email (``email_verified: true``) or a phone number
    (a non-empty ``phone_number`` claim) in the ID token. The default."""
    SIGNED_IN = "signed_in"
    """Any account that is not anonymous."""
    ANY = "any"
    """Any signed-in account, anonymous ones included (the old behaviour)."""


def parse_signup_identity(raw: str) -> SignupIdentity:
    """The configured rule; a value that is not one of the three is a configuration
    error (``FAILED_PRECONDITION`` naming the param), never a silent default."""
    value = raw.strip().lower()
    try:
        return SignupIdentity(value)
    except ValueError:
        allowed = ", ".join(rule.value for rule in SignupIdentity)
        raise FailedPrecondition(
            f"{SIGNUP_IDENTITY_PARAM} must be one of {allowed}, not {raw!r}: fix the "
            "functions' configuration",
            param=SIGNUP_IDENTITY_PARAM,
        ) from None


@dataclass(frozen=True)
class Applicant:
    """Who is asking for a place, as far as the ID token tells."""

    uid: str
    influencer: bool = False
    anonymous: bool = False
    """Signed in with Firebase's anonymous provider."""
    verified: bool = False
    """A verified email or a phone number: some cost to make many of."""


def applicant_of(uid: str, claims: Mapping[str, Any]) -> Applicant:
    """An :class:`Applicant` from verified ID-token claims. Only exact values count:
    ``email_verified`` must be ``true``, ``phone_number`` a non-empty string."""
    firebase = claims.get("firebase")
    provider = firebase.get("sign_in_provider") if isinstance(firebase, Mapping) else None
    phone = claims.get("phone_number")
    return Applicant(
        uid=uid,
        influencer=claims.get("influencer") is True,
        anonymous=provider == "anonymous",
        verified=claims.get("email_verified") is True
        or (isinstance(phone, str) and phone.strip() != ""),
    )


def identity_allows(rule: SignupIdentity, applicant: Applicant) -> bool:
    """May this account take a limited place under ``rule``?"""
    if rule is SignupIdentity.ANY:
        return True
    if applicant.anonymous:
        return False
    return rule is SignupIdentity.SIGNED_IN or applicant.verified


class BudgetPause(enum.Enum):
    """What the error budgets' ``admissions_pause`` action does to soft-launch signups."""

    NONE = "none"
    SHADOW = "shadow"
    """Wanted in shadow mode: admit as usual, count each admission it would have refused."""
    ENFORCE = "enforce"
    """Refuse new soft-launch admissions (:attr:`AdmissionReason.PAUSED_BUDGET`)."""


def budget_pause(snapshot: ActionsSnapshot | None) -> BudgetPause:
    """The ``admissions_pause`` action as the snapshot says (none: no pause)."""
    if snapshot is None:
        return BudgetPause.NONE
    if snapshot.enforced(SloAction.ADMISSIONS_PAUSE) is not None:
        return BudgetPause.ENFORCE
    if snapshot.shadowed(SloAction.ADMISSIONS_PAUSE) is not None:
        return BudgetPause.SHADOW
    return BudgetPause.NONE


@dataclass(frozen=True)
class MarketState:
    """What enforcement reads, in one round trip, before deciding."""

    market: MarketDoc
    all_paused: bool
    already_admitted: bool
    current_users: int
    budget_pause: BudgetPause = BudgetPause.NONE
    """The error budgets' admissions pause (:func:`budget_pause`)."""


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
    budget_shadowed: bool = False
    """A soft-launch admission the error budgets' pause would have refused (shadow mode):
    counted once it is made."""


def closed_reason(market: MarketDoc, all_paused: bool) -> AdmissionReason | None:
    """Why the market is closed to everything (signups and money flows), or None."""
    if all_paused:
        return AdmissionReason.ALL_MARKETS_PAUSED
    if market.emergency_paused:
        return AdmissionReason.EMERGENCY_PAUSED
    if market.launch_status is LaunchStatus.PAUSED:
        return AdmissionReason.PAUSED
    return None


def decide_signup(
    state: MarketState, applicant: Applicant, rule: SignupIdentity
) -> AdmissionDecision:
    """May this user sign up in this market?

    Order: any pause closes the market; ``not_started`` admits nobody; a user
    already admitted stays admitted (never counted twice); ``influencer_only``
    admits influencers; in ``influencer_only`` and ``soft_launch`` (the stages with
    limited places) the account must also pass the identity ``rule``, influencers
    included; ``soft_launch`` admits while under ``trafficLimit`` and the error budgets'
    admissions pause is not enforced (in shadow mode the admission is marked
    ``budget_shadowed``); ``public`` admits everyone (there is no place to squat).
    """
    closed = closed_reason(state.market, state.all_paused)
    if closed is not None:
        return AdmissionDecision(False, closed)
    status = state.market.launch_status
    if status is LaunchStatus.NOT_STARTED:
        return AdmissionDecision(False, AdmissionReason.NOT_STARTED)
    if state.already_admitted:
        return AdmissionDecision(True, AdmissionReason.ALREADY_ADMITTED)
    if status is LaunchStatus.INFLUENCER_ONLY and not applicant.influencer:
        return AdmissionDecision(False, AdmissionReason.INFLUENCERS_ONLY)
    if status is LaunchStatus.PUBLIC:
        return AdmissionDecision(True, AdmissionReason.ADMITTED)
    if not identity_allows(rule, applicant):
        return AdmissionDecision(False, AdmissionReason.IDENTITY_REQUIRED)
    if status is LaunchStatus.INFLUENCER_ONLY:
        return AdmissionDecision(True, AdmissionReason.ADMITTED)
    if status is LaunchStatus.SOFT_LAUNCH:
        if state.budget_pause is BudgetPause.ENFORCE:
            return AdmissionDecision(False, AdmissionReason.PAUSED_BUDGET)
        limit = state.market.traffic_limit
        if limit is None:  # apply_patch forbids it; an old document may still hold it
            return AdmissionDecision(False, AdmissionReason.TRAFFIC_LIMIT_REACHED)
        if state.current_users >= limit:
            return AdmissionDecision(False, AdmissionReason.TRAFFIC_LIMIT_REACHED)
        shadowed = state.budget_pause is BudgetPause.SHADOW
        return AdmissionDecision(
            True, AdmissionReason.ADMITTED, capacity=limit, budget_shadowed=shadowed
        )
    return AdmissionDecision(True, AdmissionReason.ADMITTED)


def signup_country(stated: str, front_door: str | None) -> str:
    """The market a signup is for: the client's ``stated`` country, which must be the one
    the front door reports when it reports one (``load-balancer``: its client-region
    header; ``cloudflare``: ``CF-IPCountry``). A mismatch is refused, naming both, rather
    than silently counted in the front door's market: the client asked about one market,
    and admitting it into another would answer a question it did not ask (and a place
    taken by a VPN or a roaming phone in the wrong market is a place someone lost).
    Without a front-door country (``google``, ``direct``: a plain ``firebase deploy``
    gives none) the stated country is all there is, and is used as it is."""
    if front_door is None or front_door == stated:
        return stated
    raise FailedPrecondition(
        f"signup for {stated} refused: the request comes from {front_door} (as the front "
        f"door reports it); sign up for {front_door}, or from {stated}",
        reason="country_mismatch",
        country=stated,
        frontDoorCountry=front_door,
    )


def holds_one_place(status: LaunchStatus) -> bool:
    """Does an admission into a market at ``status`` take the user's one place across
    markets? Soft-launch places do (they are the scarce, self-service ones). Influencer
    places are granted by a claim an admin sets, and public ones are unlimited."""
    return status is LaunchStatus.SOFT_LAUNCH


def admitted_elsewhere(country: str, held: str) -> FailedPrecondition:
    """The answer to a soft-launch signup in ``country`` by a user holding a place in
    ``held``: one soft-launch place per user, across markets."""
    return FailedPrecondition(
        f"you hold a soft-launch place in {held}: one place per user across markets, so "
        f"none in {country} (the place in {held} is freed when it is released or expires "
        "unactivated)",
        reason="admitted_elsewhere",
        country=country,
        heldCountry=held,
    )


def pending_until(status: LaunchStatus, now: datetime) -> datetime | None:
    """When an admission made now into a market at ``status`` expires unless activated:
    soft-launch places are pending for :data:`MARKET_ADMISSION_PENDING_SEC`; others
    never expire (influencer places are granted by claim, public ones are unlimited)."""
    if status is LaunchStatus.SOFT_LAUNCH:
        return now + timedelta(seconds=MARKET_ADMISSION_PENDING_SEC)
    return None


class ActivationVerdict(enum.Enum):
    """What ``activate: true`` does with the caller's admission."""

    NOT_ADMITTED = "not_admitted"
    """No admission: nothing to activate (``FAILED_PRECONDITION``)."""
    ALREADY_ACTIVE = "already_active"
    """Activated before: nothing changes (the call is idempotent)."""
    ACTIVATE = "activate"
    """Pending (or from a stage that never expires): mark it active now."""


def decide_activation(admission: AdmissionDoc | None) -> ActivationVerdict:
    """An admission is the user's until it is released: a pending one whose
    ``pendingUntil`` has passed but that the sync has not released yet may still be
    activated (the release re-checks in its transaction and keeps it)."""
    if admission is None:
        return ActivationVerdict.NOT_ADMITTED
    if admission.activated_at is not None:
        return ActivationVerdict.ALREADY_ACTIVE
    return ActivationVerdict.ACTIVATE


def is_expired(admission: AdmissionDoc, now: datetime) -> bool:
    """A pending admission whose time to activate has passed: the sync releases it."""
    return (
        admission.activated_at is None
        and admission.pending_until is not None
        and admission.pending_until <= now
    )


def is_pending(admission: AdmissionDoc) -> bool:
    """Not activated yet and due to expire (what ``pendingOnly`` releases)."""
    return admission.activated_at is None and admission.pending_until is not None


def admin_may_release(admission: AdmissionDoc, pending_only: bool) -> bool:
    """Does an admin release (``pack391_releaseMarketAdmissions``) take this admission?"""
    return is_pending(admission) if pending_only else True


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
