"""The admission path: ``checkMarketAccess`` (may this user sign up here, and which flows
are on), its slots in Redis and its records in Firestore, and the activation that keeps
an admission for good. Built by :class:`functions.market.service.MarketService` with the
same ports."""

from __future__ import annotations

import logging
from datetime import datetime

import redis

from functions.market.policy import (
    ActivationVerdict,
    Applicant,
    MarketState,
    admitted_elsewhere,
    budget_pause,
    decide_activation,
    decide_signup,
    features_enabled,
    holds_one_place,
    parse_signup_identity,
    pending_until,
    signup_country,
)
from functions.market.ports import (
    AdmissionRecords,
    AdmitOutcome,
    EnforcementSnapshot,
    MarketEnforcement,
    MarketRecords,
    RecordOutcome,
)
from shared.audit import Change
from shared.errors import BackendUnavailable, DependencyUnavailable, FailedPrecondition
from shared.models.market import (
    AdmissionDoc,
    AdmissionReason,
    GlobalMarketsDoc,
    MarketAccess,
    MarketDoc,
)
from shared.models.slo import SloAction

log = logging.getLogger("pack391.market")

_ADMIT_ATTEMPTS = 5
"""Re-decisions allowed when the config changes between read and admission."""


class MarketAdmission:
    """Signups and activations: read the mirrors in Redis (loading them from Firestore
    when absent), decide with the policy, take the slot in Redis, record it in Firestore."""

    def __init__(
        self, markets: MarketRecords, admissions: AdmissionRecords, store: MarketEnforcement
    ) -> None:
        self._markets = markets
        self._admissions = admissions
        self._store = store

    def check_access(
        self,
        country: str,
        applicant: Applicant,
        signup: bool,
        identity_rule: str,
        now: datetime,
        front_door_country: str | None = None,
    ) -> MarketAccess:
        """May ``applicant`` sign up in ``country`` (counted when ``signup``), and which
        money and marketing flows are on there now. ``identity_rule`` is the value of
        ``PACK391_MARKET_SIGNUP_IDENTITY``; it is parsed (and an invalid value refused
        as a configuration error) only for signups, so feature checks keep working.
        ``front_door_country``: the country the front door reports for the request (None
        when it reports none); a signup for another country is refused
        (:func:`~functions.market.policy.signup_country`)."""
        try:
            return self._check_access(
                country, applicant, signup, identity_rule, now, front_door_country
            )
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(
                "market enforcement is unavailable (Redis)", dependency="redis"
            ) from exc

    def _check_access(
        self,
        country: str,
        applicant: Applicant,
        signup: bool,
        identity_rule: str,
        now: datetime,
        front_door_country: str | None,
    ) -> MarketAccess:
        rule = parse_signup_identity(identity_rule) if signup else None
        if signup:
            country = signup_country(country, front_door_country)
        for _ in range(_ADMIT_ATTEMPTS):
            market, switch, snap = self._enforcement_state(country, applicant.uid)
            state = MarketState(
                market,
                switch.all_paused,
                snap.is_member,
                snap.member_count,
                budget_pause(snap.slo_actions),
            )
            if rule is None:
                return _access(state, False, AdmissionReason.NOT_REQUESTED)
            decision = decide_signup(state, applicant, rule)
            if not decision.admit or decision.reason is AdmissionReason.ALREADY_ADMITTED:
                return _access(state, decision.admit, decision.reason)
            exclusive = holds_one_place(market.launch_status)
            if exclusive:
                # refused before Redis: a user holding a place elsewhere never takes this
                # market's last slot, even for the moment the transaction below would take
                held = self._held_place(applicant.uid)
                if held is not None and held != country:
                    raise admitted_elsewhere(country, held)
            outcome = self._store.admit(
                country, applicant.uid, decision.capacity, market.version, switch.version
            )
            if outcome == AdmitOutcome.STALE:
                continue
            if outcome == AdmitOutcome.AT_CAPACITY:
                return _access(state, False, AdmissionReason.TRAFFIC_LIMIT_REACHED)
            if outcome == AdmitOutcome.ALREADY_MEMBER:
                return _access(state, True, AdmissionReason.ALREADY_ADMITTED)
            counted = MarketState(market, switch.all_paused, True, state.current_users + 1)
            admission = AdmissionDoc(
                uid=applicant.uid,
                country=country,
                admitted_at=now,
                influencer=applicant.influencer,
                pending_until=pending_until(market.launch_status, now),
            )
            recorded = self._persist_admission(admission, exclusive)
            if recorded.held_elsewhere is not None:
                # a concurrent signup of this user in another market won the transaction:
                # give this market's slot back
                self._store.remove_member(country, applicant.uid)
                raise admitted_elsewhere(country, recorded.held_elsewhere)
            if not recorded.recorded:
                # Firestore already records this user (Redis had lost them): the set now
                # holds them again, and their admission is kept as it was.
                return _access(counted, True, AdmissionReason.ALREADY_ADMITTED)
            if decision.budget_shadowed:
                log.info(
                    "slo shadow: admissions_pause would have refused %s's signup in %s",
                    applicant.uid,
                    country,
                )
                self._store.count_slo_shadow(SloAction.ADMISSIONS_PAUSE, now)
            return _access(
                counted, True, AdmissionReason.ADMITTED, pending_until=admission.pending_until
            )
        raise BackendUnavailable(f"market {country} config kept changing; try again")

    def _held_place(self, uid: str) -> str | None:
        from google.api_core import exceptions as gexc  # here: not loaded at a cold start

        try:
            return self._admissions.held_place(uid)
        except DependencyUnavailable:
            raise  # the call's budget ran out on Firestore: said as it is
        except gexc.GoogleAPIError as exc:
            raise BackendUnavailable(
                "could not read the user's market place; try again", dependency="firestore"
            ) from exc

    def _persist_admission(self, admission: AdmissionDoc, exclusive: bool) -> RecordOutcome:
        """Record the admission: a soft-launch one (``exclusive``) with the user's
        per-user document in one transaction
        (:meth:`AdmissionRepository.record_exclusive_admission`), others as they are."""
        from google.api_core import exceptions as gexc  # here: not loaded at a cold start

        try:
            if exclusive:
                return self._admissions.record_exclusive_admission(admission)
            return RecordOutcome(recorded=self._admissions.record_admission(admission))
        except DependencyUnavailable:
            # No answer within the call's budget: the commit may still land (a deadline
            # says nothing about a commit already sent). Give the slot back all the same:
            # Redis behind Firestore is what the minute sync repairs, and the caller's
            # retry finds the place and says already admitted; a slot kept for a commit
            # that never landed would hold the place for good (AdmissionRelease.release_uids).
            self._store.remove_member(admission.country, admission.uid)
            raise
        except gexc.GoogleAPIError as exc:
            # Not recorded, so not admitted: give the slot back.
            self._store.remove_member(admission.country, admission.uid)
            raise BackendUnavailable(
                "could not record the admission; try again", dependency="firestore"
            ) from exc

    def activate(self, country: str, uid: str, change: Change) -> MarketAccess:
        """An app backend (a service principal) saw ``uid`` finish onboarding: their
        (pending) admission becomes active and is never released by expiry; audited
        (``change``: the service, the action, the request) in the same transaction.
        Idempotent (an active admission changes nothing and is not audited again);
        ``FAILED_PRECONDITION`` when ``uid`` has no admission in ``country``."""
        now = change.now

        def mutate(current: AdmissionDoc | None) -> AdmissionDoc | None:
            verdict = decide_activation(current)
            if verdict is ActivationVerdict.NOT_ADMITTED or current is None:
                raise FailedPrecondition(
                    f"{uid} is not admitted in {country}: the user signs up first "
                    "({signup: true}); an admission not activated in time is released",
                    reason="not_admitted",
                    uid=uid,
                )
            if verdict is ActivationVerdict.ALREADY_ACTIVE:
                return None
            return current.model_copy(update={"pending_until": None, "activated_at": now})

        before, after = self._admissions.update_admission(country, uid, mutate, change)
        admission = after or before
        try:
            market, switch, snap = self._enforcement_state(country, uid)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(
                "market enforcement is unavailable (Redis)", dependency="redis"
            ) from exc
        state = MarketState(market, switch.all_paused, True, snap.member_count)
        return _access(
            state,
            True,
            AdmissionReason.ACTIVATED,
            activated_at=admission.activated_at if admission else now,
        )

    def _enforcement_state(
        self, country: str, uid: str
    ) -> tuple[MarketDoc, GlobalMarketsDoc, EnforcementSnapshot]:
        snap = self._store.read(country, uid)
        if snap.market is None or snap.global_switch is None:
            self.hydrate(country)
            snap = self._store.read(country, uid)
        if snap.market is None or snap.global_switch is None:
            raise BackendUnavailable(
                f"market {country} could not be loaded into Redis", dependency="redis"
            )
        return snap.market, snap.global_switch, snap

    def hydrate(self, country: str) -> int:
        """Load a market's record from Firestore into Redis: members first, then the
        config mirror (whose presence tells enforcement the market is loaded).
        Returns how many members were missing from Redis."""
        restored = self._store.add_members(country, self._admissions.admitted_uids(country))
        self._store.mirror_market(self._markets.get(country) or MarketDoc(country=country))
        self._store.mirror_global(self._markets.get_global())
        return restored


def _access(
    state: MarketState,
    admitted: bool,
    reason: AdmissionReason,
    *,
    pending_until: datetime | None = None,
    activated_at: datetime | None = None,
) -> MarketAccess:
    payments, payouts, marketing = features_enabled(state.market, state.all_paused)
    return MarketAccess(
        country=state.market.country,
        launch_status=state.market.launch_status,
        signup_admitted=admitted,
        reason=reason,
        payments_enabled=payments,
        payouts_enabled=payouts,
        marketing_enabled=marketing,
        current_users=state.current_users,
        traffic_limit=state.market.traffic_limit,
        pending_until=pending_until,
        activated_at=activated_at,
    )
