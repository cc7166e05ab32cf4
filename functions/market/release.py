"""Places given back, and the minute's sync: an admin's release, the release of expired
pending admissions, and the repair of Redis from Firestore (the record). Built by
:class:`functions.market.service.MarketService` with the same ports."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from functions.market.policy import admin_may_release, is_expired
from functions.market.ports import (
    AdmissionRecords,
    MarketEnforcement,
    MarketRecords,
    ReleaseOutcome,
)
from shared.audit import Change
from shared.models.market import (
    AdmissionDoc,
    ReleaseMarketAdmissionsRequest,
    ReleaseMarketAdmissionsResult,
)
from shared.thresholds import MARKET_RELEASE_MAX_UIDS_COUNT, MARKET_RELEASE_PAGE_COUNT

log = logging.getLogger("pack391.market")


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


class AdmissionRelease:
    """Frees places in both stores (Redis first, then Firestore, then Redis again), and
    keeps Redis in step with Firestore every minute."""

    def __init__(
        self, markets: MarketRecords, admissions: AdmissionRecords, store: MarketEnforcement
    ) -> None:
        self._markets = markets
        self._admissions = admissions
        self._store = store

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
            uids = self._admissions.pending_admissions(
                req.country, MARKET_RELEASE_MAX_UIDS_COUNT + 1
            )
            more = len(uids) > MARKET_RELEASE_MAX_UIDS_COUNT
            uids = uids[:MARKET_RELEASE_MAX_UIDS_COUNT]
        note = {"pendingOnly": req.pending_only, "requested": req.uids}
        outcome = self.release_uids(
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
            page = self._admissions.expired_admissions(country, now, MARKET_RELEASE_PAGE_COUNT)
            if not page:
                return released
            outcome = self.release_uids(country, page, lambda a: is_expired(a, now))
            released += len(outcome.released)
            if len(page) < MARKET_RELEASE_PAGE_COUNT or not outcome.released:
                # a short page was the last; a page that released nothing (every one
                # activated meanwhile) must not loop: the next minute looks again
                return released

    def release_uids(
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
        outcome = self._admissions.release_admissions(
            country, uids, may_release, change, audit_note
        )
        if outcome.kept:
            self._store.add_members(country, outcome.kept)
        if outcome.released:
            self._store.remove_members(country, [a.uid for a in outcome.released])
        return outcome

    def sync(self, now: datetime) -> SyncReport:
        """Every minute: release expired pending admissions, re-apply every stored change
        to Redis and restore lost admissions."""
        mirrored = 0
        restored = 0
        released = 0
        ahead: list[str] = []
        switch = self._markets.get_global()
        mirrored += int(self._store.mirror_global(switch))
        docs = self._markets.list_markets()
        for doc in docs:
            released += self.release_expired(doc.country, now)
            recorded = self._admissions.count_admissions(doc.country)
            live = self._store.member_count(doc.country)
            if live < recorded:
                restored += self._store.add_members(
                    doc.country, self._admissions.admitted_uids(doc.country)
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
