"""Market orchestration: read through the ports, decide with the policy, write back.

The operator's controls (a market's config, the emergency pause, the controls view) are
here, with the mirroring of each change into Redis. The admission path
(``check_access``, ``activate``) is :class:`functions.market.admission.MarketAdmission`;
releases and the minute's sync are :class:`functions.market.release.AdmissionRelease`;
both are built here with the same ports.

``MarketService.check_access`` is the enforcement function user flows call
(directly in this bundle, or through ``pack391_checkMarketAccess`` from the app
and other bundles).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from functions.market.admission import MarketAdmission
from functions.market.policy import apply_patch, config_of
from functions.market.ports import AdmissionRecords, MarketEnforcement, MarketRecords
from functions.market.release import AdmissionRelease, SyncReport
from shared.audit import Change
from shared.errors import FailedPrecondition
from shared.models.market import (
    EmergencyPauseResult,
    GlobalMarketsDoc,
    MarketControlsView,
    MarketDoc,
    MarketView,
    UpdateMarketControlRequest,
    UpdateMarketControlResult,
)
from shared.stale import LastKnown

__all__ = ["MarketService", "SyncReport"]

log = logging.getLogger("pack391.market")


class MarketService:
    def __init__(
        self, markets: MarketRecords, admissions: AdmissionRecords, store: MarketEnforcement
    ) -> None:
        self._repo = markets
        self._admissions = admissions
        self._store = store
        self.admission = MarketAdmission(markets, admissions, store)
        self.releases = AdmissionRelease(markets, admissions, store)
        self._controls_copy: LastKnown[str | None, MarketControlsView] = LastKnown(
            "market controls"
        )

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

    def controls(self, country: str | None, stale_max_sec: float = 0.0) -> MarketControlsView:
        """Every market (or one) with its user count. Safe to answer stale (at most
        ``stale_max_sec`` old, marked so) when Firestore stalls: an operator's view, which
        enforcement never reads (:mod:`shared.stale`; docs/reliability.md)."""
        answer = self._controls_copy.read(
            country, lambda: self._read_controls(country), stale_max_sec
        )
        return answer.value.model_copy(update=answer.marks())

    def _read_controls(self, country: str | None) -> MarketControlsView:
        if country is None:
            docs = self._repo.list_markets()
        else:
            doc = self._repo.get(country)
            docs = [doc if doc is not None else MarketDoc(country=country)]
        switch = self._repo.get_global()
        views = [
            MarketView(
                **doc.model_dump(), current_users=self._admissions.count_admissions(doc.country)
            )
            for doc in docs
        ]
        return MarketControlsView(
            markets=views,
            all_markets_paused=switch.all_paused,
            all_markets_paused_reason=switch.reason if switch.all_paused else None,
        )

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
    def _invalidate(drop: Callable[[], None]) -> bool:
        """Drop the stale mirror so the next enforcement call reloads it from Firestore;
        True when that worked (the change is then enforced from the next call on)."""
        try:
            drop()
            return True
        except redis.RedisError:
            log.exception("could not drop the stale mirror either; the minute sync will fix it")
            return False
