"""Market orchestration: read through the adapters, decide with the policy, write back.

``MarketService.check_access`` is the enforcement function user flows call
(directly in this bundle, or through ``pack391_checkMarketAccess`` from the app
and other bundles).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from google.api_core import exceptions as gexc

from functions.market.adapters import (
    AdmitOutcome,
    EnforcementSnapshot,
    MarketEnforcementStore,
    MarketRepository,
)
from functions.market.policy import (
    MarketState,
    apply_patch,
    config_of,
    decide_signup,
    features_enabled,
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
    UpdateMarketControlRequest,
    UpdateMarketControlResult,
)

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


class MarketService:
    def __init__(self, repo: MarketRepository, store: MarketEnforcementStore) -> None:
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
        self, country: str, uid: str, influencer: bool, signup: bool, now: datetime
    ) -> MarketAccess:
        """May ``uid`` sign up in ``country`` (counted when ``signup``), and which
        money and marketing flows are on there now."""
        try:
            return self._check_access(country, uid, influencer, signup, now)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable("market enforcement is unavailable (Redis)") from exc

    def _check_access(
        self, country: str, uid: str, influencer: bool, signup: bool, now: datetime
    ) -> MarketAccess:
        for _ in range(_ADMIT_ATTEMPTS):
            market, switch, snap = self._enforcement_state(country, uid)
            state = MarketState(market, switch.all_paused, snap.is_member, snap.member_count)
            if not signup:
                return _access(state, False, AdmissionReason.NOT_REQUESTED)
            decision = decide_signup(state, influencer)
            if not decision.admit or decision.reason is AdmissionReason.ALREADY_ADMITTED:
                return _access(state, decision.admit, decision.reason)
            outcome = self._store.admit(
                country, uid, decision.capacity, market.version, switch.version
            )
            if outcome == AdmitOutcome.STALE:
                continue
            if outcome == AdmitOutcome.AT_CAPACITY:
                return _access(state, False, AdmissionReason.TRAFFIC_LIMIT_REACHED)
            if outcome == AdmitOutcome.ALREADY_MEMBER:
                return _access(state, True, AdmissionReason.ALREADY_ADMITTED)
            self._persist_admission(country, uid, influencer, now)
            counted = MarketState(market, switch.all_paused, True, state.current_users + 1)
            return _access(counted, True, AdmissionReason.ADMITTED)
        raise BackendUnavailable(f"market {country} config kept changing; try again")

    def _persist_admission(self, country: str, uid: str, influencer: bool, now: datetime) -> None:
        try:
            self._repo.record_admission(
                AdmissionDoc(uid=uid, country=country, admitted_at=now, influencer=influencer)
            )
        except gexc.GoogleAPIError as exc:
            # Not recorded, so not admitted: give the slot back.
            self._store.remove_member(country, uid)
            raise BackendUnavailable("could not record the admission; try again") from exc

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

    def sync(self) -> SyncReport:
        """Re-apply every stored change to Redis and restore lost admissions (every minute)."""
        mirrored = 0
        restored = 0
        ahead: list[str] = []
        switch = self._repo.get_global()
        mirrored += int(self._store.mirror_global(switch))
        docs = self._repo.list_markets()
        for doc in docs:
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
            markets=len(docs), mirrored=mirrored, members_restored=restored, redis_ahead=ahead
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


def _access(state: MarketState, admitted: bool, reason: AdmissionReason) -> MarketAccess:
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
    )
