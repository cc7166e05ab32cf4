"""Market's Firestore side, the record of the markets: each market's versioned config,
its previous versions, the all-markets switch and their audit entries (the
:class:`functions.market.ports.MarketRecords` port). The admissions are
:mod:`functions.market.admission_store`; Redis holds what enforcement reads on every call
(:mod:`functions.market.redis_store`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared import collections
from shared.audit import Change, audited_write
from shared.models.market import GlobalMarketsDoc, MarketDoc

if TYPE_CHECKING:
    # The Firestore client is imported where it is used: a cold instance checking market
    # access (Redis first) does not load it at start.
    from google.cloud import firestore


class MarketRepository:
    """Firestore: market documents, their versions, the global switch."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _market_ref(self, country: str) -> firestore.DocumentReference:
        return self._db.collection(collections.MARKETS).document(country)

    def _global_ref(self) -> firestore.DocumentReference:
        return self._db.collection(collections.CONFIG).document(collections.CONFIG_MARKETS_DOC)

    def get(self, country: str) -> MarketDoc | None:
        snap = self._market_ref(country).get()
        return MarketDoc.model_validate(snap.to_dict()) if snap.exists else None

    def list_markets(self) -> list[MarketDoc]:
        docs = self._db.collection(collections.MARKETS).order_by("__name__").stream()
        return [MarketDoc.model_validate(snap.to_dict()) for snap in docs]

    def get_global(self) -> GlobalMarketsDoc:
        snap = self._global_ref().get()
        return (
            GlobalMarketsDoc.model_validate(snap.to_dict()) if snap.exists else GlobalMarketsDoc()
        )

    def update(
        self,
        country: str,
        mutate: Callable[[MarketDoc], dict[str, Any] | None],
        change: Change,
    ) -> tuple[MarketDoc, MarketDoc | None]:
        """Apply ``mutate`` (current doc -> fields to change, or None for no change)
        in one transaction with the version record and the audit entry.
        Returns (before, after); after is None when nothing changed."""

        def build(current: MarketDoc | None) -> MarketDoc | None:
            fields = mutate(current or MarketDoc(country=country))
            if fields is None:
                return None
            return (current or MarketDoc(country=country)).model_copy(update=fields)

        before, after, _ = audited_write(
            self._db,
            self._market_ref(country),
            change,
            MarketDoc,
            build,
            history=collections.MARKET_VERSIONS,
        )
        return before or MarketDoc(country=country), after

    def set_all_paused(self, paused: bool, change: Change) -> tuple[GlobalMarketsDoc, bool]:
        """Set the all-markets switch; returns (the switch after, whether it changed)."""

        def build(current: GlobalMarketsDoc | None) -> GlobalMarketsDoc | None:
            current = current or GlobalMarketsDoc()
            if current.all_paused == paused:
                return None
            return current.model_copy(update={"all_paused": paused})

        before, after, changed = audited_write(
            self._db, self._global_ref(), change, GlobalMarketsDoc, build
        )
        return (after if changed and after else before or GlobalMarketsDoc()), changed

    def versions(self, country: str) -> list[MarketDoc]:
        """Previous versions of a market, oldest first."""
        query = (
            self._market_ref(country).collection(collections.MARKET_VERSIONS).order_by("version")
        )
        return [MarketDoc.model_validate(snap.to_dict()) for snap in query.stream()]
