"""Market orchestration: read through the ports, decide with the policy, write back.

``MarketService.check_access`` is the enforcement function user flows call
(directly in this bundle, or through ``pack391_checkMarketAccess`` from the app
and other bundles).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from functions.market.policy import (
    ActivationVerdict,
    Applicant,
    MarketState,
    admin_may_release,
    admitted_elsewhere,
    apply_patch,
    config_of,
    decide_activation,
    decide_signup,
    features_enabled,
    holds_one_place,
    is_expired,
    parse_signup_identity,
    pending_until,
    signup_country,
)
from functions.market.ports import (
    AdmitOutcome,
    EnforcementSnapshot,
    MarketEnforcement,
    MarketRecords,
    RecordOutcome,
    ReleaseOutcome,
)
from shared.audit import Change
from shared.errors import BackendUnavailable, FailedPrecondition
from shared.models.market import (
    AdmissionDoc,
    AdmissionReason,
    EmergencyPauseResult,
    GlobalMarketsDoc,
    MarketAccess,
    MarketControlsView,
    MarketDoc,
    MarketView,
    ReleaseMarketAdmissionsRequest,
    ReleaseMarketAdmissionsResult,
    UpdateMarketControlRequest,
    UpdateMarketControlResult,
)
from shared.thresholds import MARKET_RELEASE_MAX_UIDS_COUNT, MARKET_RELEASE_PAGE_COUNT

log = logging.getLogger("pack391.market")

_ADMIT_ATTEMPTS = 5
"""Re-decisions allowed when the config changes between read and admission."""


@dataclass(frozen=True)
class SyncReport:
    markets: int
    mirrored: int
    members_restored: int
    redis_ahead: list[str]
    """Markets whose Redis set holds more users than Firestore records (left alone:
    it only makes admission stricter; see docs)."""
    released: int = 0
    """Pending admissions whose ``pendingUntil`` had passed, released (both stores)."""


class MarketService:
    def __init__(self, repo: MarketRecords, store: MarketEnforcement) -> None:
        self._repo = repo
        self._store = store

    # ------------------------------------------------------------------ admin

    def update_market(
        self, req: UpdateMarketControlRequest, change: Change
    ) -> UpdateMarketControlResult:
        patch = req.config.changes()

        def mutate(current: MarketDoc) -> dict[str, Any] | None:
            if req.expected_version is not None and req.expected_version != current.version:
                raise FailedPrecondition(
                    f"market {req.country} is at version {current.version}, "
                    f"not {req.expected_version}: re-read it and retry",
                    currentVersion=current.version,
                )
            before = config_of(current)
            after = apply_patch(before, patch)
            if after == before:
                return None
            return after.model_dump()

        before, after = self._repo.update(req.country, mutate, change)
        if after is None:
            return UpdateMarketControlResult(
                market=before, changed=False, previous_version=before.version, enforced=True
            )
        return UpdateMarketControlResult(
            market=after,
            changed=True,
            previous_version=before.version,
            enforced=self._mirror_market(after),
        )

    def emergency_pause(
        self, country: str | None, paused: bool, change: Change
    ) -> EmergencyPauseResult:
        if country is None:
            switch, _ = self._repo.set_all_paused(paused, change)
            return EmergencyPauseResult(
                scope="all",
                paused=paused,
                version=switch.version,
                enforced=self._mirror_global(switch),
            )

        def mutate(current: MarketDoc) -> dict[str, Any] | None:
            return None if current.emergency_paused == paused else {"emergency_paused": paused}

        before, after = self._repo.update(country, mutate, change)
        doc = after or before
        enforced = self._mirror_market(after) if after is not None else True
        return EmergencyPauseResult(
            scope=country, paused=paused, version=doc.version, enforced=enforced
        )

    def controls(self, country: str | None) -> MarketControlsView:
        if country is None:
            docs = self._repo.list_markets()
        else:
            doc = self._repo.get(country)
            docs = [doc if doc is not None else MarketDoc(country=country)]
        switch = self._repo.get_global()
        views = [
            MarketView(**doc.model_dump(), current_users=self._repo.count_admissions(doc.country))
            for doc in docs
        ]
        return MarketControlsView(
            markets=views,
            all_markets_paused=switch.all_paused,
            all_markets_paused_reason=switch.reason if switch.all_paused else None,
        )

    # ------------------------------------------------------------ enforcement

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
            raise BackendUnavailable("market enforcement is unavailable (Redis)") from exc

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
            state = MarketState(market, switch.all_paused, snap.is_member, snap.member_count)
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
            return _access(
                counted, True, AdmissionReason.ADMITTED, pending_until=admission.pending_until
            )
        raise BackendUnavailable(f"market {country} config kept changing; try again")

    def _held_place(self, uid: str) -> str | None:
        from google.api_core import exceptions as gexc  # here: not loaded at a cold start

        try:
            return self._repo.held_place(uid)
        except gexc.GoogleAPIError as exc:
            raise BackendUnavailable("could not read the user's market place; try again") from exc

    def _persist_admission(self, admission: AdmissionDoc, exclusive: bool) -> RecordOutcome:
        """Record the admission: a soft-launch one (``exclusive``) with the user's
        per-user document in one transaction (:meth:`MarketRepository.record_exclusive_admission`),
        others as they are."""
        from google.api_core import exceptions as gexc  # here: not loaded at a cold start

        try:
            if exclusive:
                return self._repo.record_exclusive_admission(admission)
            return RecordOutcome(recorded=self._repo.record_admission(admission))
        except gexc.GoogleAPIError as exc:
            # Not recorded, so not admitted: give the slot back.
            self._store.remove_member(admission.country, admission.uid)
            raise BackendUnavailable("could not record the admission; try again") from exc

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

        before, after = self._repo.update_admission(country, uid, mutate, change)
        admission = after or before
        try:
            market, switch, snap = self._enforcement_state(country, uid)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable("market enforcement is unavailable (Redis)") from exc
        state = MarketState(market, switch.all_paused, True, snap.member_count)
        return _access(
            state,
            True,
            AdmissionReason.ACTIVATED,
            activated_at=admission.activated_at if admission else now,
        )

    # ---------------------------------------------------------------- release

    def release(
        self, req: ReleaseMarketAdmissionsRequest, change: Change
    ) -> ReleaseMarketAdmissionsResult:
        """An admin frees places: the named admissions (only the pending ones with
        ``pendingOnly``), or up to :data:`MARKET_RELEASE_MAX_UIDS_COUNT` pending ones of
        the market. One transaction, one audit entry listing what was released."""
        more = False
        if req.uids is not None:
            uids = list(dict.fromkeys(req.uids))  # once each, in the order given
        else:
            uids = self._repo.pending_admissions(req.country, MARKET_RELEASE_MAX_UIDS_COUNT + 1)
            more = len(uids) > MARKET_RELEASE_MAX_UIDS_COUNT
            uids = uids[:MARKET_RELEASE_MAX_UIDS_COUNT]
        note = {"pendingOnly": req.pending_only, "requested": req.uids}
        outcome = self._release(
            req.country,
            uids,
            lambda admission: admin_may_release(admission, req.pending_only),
            change,
            note,
        )
        released = [a.uid for a in outcome.released]
        return ReleaseMarketAdmissionsResult(
            country=req.country,
            released=len(released),
            uids=released,
            skipped=outcome.kept + outcome.missing,
            more=more,
        )

    def release_expired(self, country: str, now: datetime) -> int:
        """Release every pending admission of ``country`` whose ``pendingUntil`` has
        passed, a page at a time; returns how many were released."""
        released = 0
        while True:
            page = self._repo.expired_admissions(country, now, MARKET_RELEASE_PAGE_COUNT)
            if not page:
                return released
            outcome = self._release(country, page, lambda a: is_expired(a, now))
            released += len(outcome.released)
            if len(page) < MARKET_RELEASE_PAGE_COUNT or not outcome.released:
                # a short page was the last; a page that released nothing (every one
                # activated meanwhile) must not loop: the next minute looks again
                return released

    def _release(
        self,
        country: str,
        uids: list[str],
        may_release: Callable[[AdmissionDoc], bool],
        change: Change | None = None,
        audit_note: dict[str, Any] | None = None,
    ) -> ReleaseOutcome:
        """Free the places of ``uids`` that ``may_release`` accepts, in both stores.

        Order: Redis first, then Firestore, then Redis again. The minute sync restores
        Redis from Firestore (a member Redis lacks is re-added), but it cannot tell a
        Redis member with no admission record from a signup still being written, so it
        leaves a Redis set that is *ahead* of Firestore alone: a member left in Redis
        after its admission was deleted would hold the place for good. Removing from
        Redis first means a crash at any point leaves Redis at worst *behind* Firestore,
        which the next sync repairs (re-adding the member, and releasing it again when
        it is expired). After the Firestore transaction, which re-reads each admission
        and decides on what it reads, the kept ones (activated meanwhile, or not
        pending) go back into the set, and the released ones are removed once more in
        case a concurrent sync re-added them in between. A uid with no admission record
        stays out of the set: if its signup was still being written, the sync re-adds it.
        """
        if not uids:
            return ReleaseOutcome()
        self._store.remove_members(country, uids)
        # A failure here changed nothing in Firestore; the next sync puts the members back.
        outcome = self._repo.release_admissions(country, uids, may_release, change, audit_note)
        if outcome.kept:
            self._store.add_members(country, outcome.kept)
        if outcome.released:
            self._store.remove_members(country, [a.uid for a in outcome.released])
        return outcome

    def _enforcement_state(
        self, country: str, uid: str
    ) -> tuple[MarketDoc, GlobalMarketsDoc, EnforcementSnapshot]:
        snap = self._store.read(country, uid)
        if snap.market is None or snap.global_switch is None:
            self.hydrate(country)
            snap = self._store.read(country, uid)
        if snap.market is None or snap.global_switch is None:
            raise BackendUnavailable(f"market {country} could not be loaded into Redis")
        return snap.market, snap.global_switch, snap

    def hydrate(self, country: str) -> int:
        """Load a market's record from Firestore into Redis: members first, then the
        config mirror (whose presence tells enforcement the market is loaded).
        Returns how many members were missing from Redis."""
        restored = self._store.add_members(country, self._repo.admitted_uids(country))
        self._store.mirror_market(self._repo.get(country) or MarketDoc(country=country))
        self._store.mirror_global(self._repo.get_global())
        return restored

    def sync(self, now: datetime) -> SyncReport:
        """Every minute: release expired pending admissions, re-apply every stored change
        to Redis and restore lost admissions."""
        mirrored = 0
        restored = 0
        released = 0
        ahead: list[str] = []
        switch = self._repo.get_global()
        mirrored += int(self._store.mirror_global(switch))
        docs = self._repo.list_markets()
        for doc in docs:
            released += self.release_expired(doc.country, now)
            recorded = self._repo.count_admissions(doc.country)
            live = self._store.member_count(doc.country)
            if live < recorded:
                restored += self._store.add_members(
                    doc.country, self._repo.admitted_uids(doc.country)
                )
            elif live > recorded:
                ahead.append(doc.country)
                log.warning(
                    "market %s: Redis has %d users, Firestore %d", doc.country, live, recorded
                )
            mirrored += int(self._store.mirror_market(doc))
        return SyncReport(
            markets=len(docs),
            mirrored=mirrored,
            members_restored=restored,
            redis_ahead=ahead,
            released=released,
        )

    # ---------------------------------------------------------------- helpers

    def _mirror_market(self, doc: MarketDoc) -> bool:
        try:
            self._store.mirror_market(doc)
            return True
        except redis.RedisError:
            log.exception(
                "market %s v%d stored but not mirrored to Redis", doc.country, doc.version
            )
            return self._invalidate(lambda: self._store.invalidate_market(doc.country))

    def _mirror_global(self, doc: GlobalMarketsDoc) -> bool:
        try:
            self._store.mirror_global(doc)
            return True
        except redis.RedisError:
            log.exception("all-markets switch v%d stored but not mirrored to Redis", doc.version)
            return self._invalidate(self._store.invalidate_global)

    @staticmethod
    def _invalidate(drop: Any) -> bool:
        """Drop the stale mirror so the next enforcement call reloads it from Firestore;
        True when that worked (the change is then enforced from the next call on)."""
        try:
            drop()
            return True
        except redis.RedisError:
            log.exception("could not drop the stale mirror either; the minute sync will fix it")
            return False


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
