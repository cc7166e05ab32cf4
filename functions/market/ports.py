"""What the market service needs from the outside, and what it gets back: Protocols and
the small records they exchange; nothing concrete.

- :class:`MarketRecords` and :class:`AdmissionRecords`: the record, the truth (Firestore:
  :class:`functions.market.store.MarketRepository` for the markets' configs and the
  all-markets switch, :class:`functions.market.admission_store.AdmissionRepository` for
  the admissions);
- :class:`MarketEnforcement`: what enforcement reads on every call, in one round trip
  (Redis: :class:`functions.market.redis_store.MarketEnforcementStore`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.models.market import AdmissionDoc, GlobalMarketsDoc, MarketDoc
from shared.models.slo import ActionsSnapshot, SloAction

if TYPE_CHECKING:
    from shared.audit import Change


@dataclass(frozen=True)
class RecordOutcome:
    """What recording a soft-launch admission found."""

    recorded: bool
    """The admission (and the user's per-user document) were written."""
    held_elsewhere: str | None = None
    """Not recorded: the user holds a soft-launch place in this other market."""


@dataclass(frozen=True)
class ReleaseOutcome:
    """What one release transaction did with the uids it was given."""

    released: list[AdmissionDoc] = field(default_factory=list)
    """Deleted from Firestore."""
    kept: list[str] = field(default_factory=list)
    """Admitted, but the decision kept them (activated meanwhile, or not pending)."""
    missing: list[str] = field(default_factory=list)
    """No admission document."""


@dataclass(frozen=True)
class EnforcementSnapshot:
    """One round trip's worth of enforcement state; None where Redis has no mirror yet."""

    market: MarketDoc | None
    global_switch: GlobalMarketsDoc | None
    is_member: bool
    member_count: int
    slo_actions: ActionsSnapshot | None = None
    """The error budgets' actions (:mod:`shared.slo.actions`), read in the same round
    trip; None: no snapshot (no action)."""


class AdmitOutcome:
    """Answers of ``admit_member.lua``."""

    ADMITTED = 1
    ALREADY_MEMBER = 2
    AT_CAPACITY = 0
    STALE = -1


class MarketRecords(Protocol):
    """Markets' versioned configs and the all-markets switch."""

    def get(self, country: str) -> MarketDoc | None: ...

    def list_markets(self) -> list[MarketDoc]: ...

    def get_global(self) -> GlobalMarketsDoc: ...

    def update(
        self,
        country: str,
        mutate: Callable[[MarketDoc], dict[str, Any] | None],
        change: Change,
    ) -> tuple[MarketDoc, MarketDoc | None]: ...

    def set_all_paused(self, paused: bool, change: Change) -> tuple[GlobalMarketsDoc, bool]: ...

    def versions(self, country: str) -> list[MarketDoc]: ...


class AdmissionRecords(Protocol):
    """The admissions of every market, and each user's one soft-launch place."""

    def record_admission(self, admission: AdmissionDoc) -> bool: ...

    def held_place(self, uid: str) -> str | None: ...

    def record_exclusive_admission(self, admission: AdmissionDoc) -> RecordOutcome: ...

    def get_admission(self, country: str, uid: str) -> AdmissionDoc | None: ...

    def update_admission(
        self,
        country: str,
        uid: str,
        mutate: Callable[[AdmissionDoc | None], AdmissionDoc | None],
        change: Change | None = None,
    ) -> tuple[AdmissionDoc | None, AdmissionDoc | None]: ...

    def expired_admissions(self, country: str, now: datetime, limit: int) -> list[str]: ...

    def pending_admissions(self, country: str, limit: int) -> list[str]: ...

    def release_admissions(
        self,
        country: str,
        uids: list[str],
        may_release: Callable[[AdmissionDoc], bool],
        change: Change | None = None,
        audit_note: dict[str, Any] | None = None,
    ) -> ReleaseOutcome: ...

    def count_admissions(self, country: str) -> int: ...

    def admitted_uids(self, country: str) -> Iterator[str]: ...


class MarketEnforcement(Protocol):
    """The mirrors and member sets that enforcement reads and updates."""

    def read(self, country: str, uid: str) -> EnforcementSnapshot: ...

    def mirror_market(self, doc: MarketDoc) -> bool: ...

    def mirror_global(self, doc: GlobalMarketsDoc) -> bool: ...

    def invalidate_market(self, country: str) -> None: ...

    def invalidate_global(self) -> None: ...

    def add_members(self, country: str, uids: Iterable[str]) -> int: ...

    def member_count(self, country: str) -> int: ...

    def admit(
        self, country: str, uid: str, capacity: int | None, market_version: int, global_version: int
    ) -> int:
        """One of :class:`AdmitOutcome`'s answers."""
        ...

    def remove_member(self, country: str, uid: str) -> None: ...

    def remove_members(self, country: str, uids: Iterable[str]) -> int: ...

    def count_slo_shadow(self, action: SloAction, now: datetime) -> None:
        """One event a budget action in shadow mode would have acted on (best effort)."""
        ...
