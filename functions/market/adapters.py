"""Market I/O: the Firestore repository (the record) and the Redis store (enforcement).

Firestore holds the truth: each market's versioned config, its previous
versions, the audit log and one admission document per admitted user. Redis
holds what enforcement reads on every call, in one round trip: a mirror of each
market's config, a mirror of the all-markets switch, and the set of admitted
users (whose size is the market's user count, changed atomically by a script).
All market keys share the hash tag ``{pack391:markets}`` so the admission script
also runs on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import redis

from shared import collections
from shared.audit import Change, audited_write, write_audit
from shared.firestore import transact
from shared.models.market import AdmissionDoc, GlobalMarketsDoc, MarketDoc, MarketMemberDoc
from shared.redis import LUA_DIR, lua_script

if TYPE_CHECKING:
    # The Firestore client is imported where it is used: a cold instance checking market
    # access (Redis first) does not load it at start.
    from google.cloud import firestore

_ADMIT = LUA_DIR / "admit_member.lua"
_MIRROR = LUA_DIR / "mirror_versioned.lua"
_HYDRATE_CHUNK = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PENDING_UNTIL = "pendingUntil"
"""The field the expiry queries range over (absent on admissions that never expire)."""


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


class MarketRepository:
    """Firestore: market documents, their versions, admissions, the global switch."""

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

    def _admissions(self, country: str) -> Any:
        """``pack391_markets/{country}/admissions`` (the client's collection type is untyped)."""
        return self._market_ref(country).collection(collections.MARKET_ADMISSIONS)

    def record_admission(self, admission: AdmissionDoc) -> bool:
        """Create the admission; False (and nothing written) when the user already has
        one, which is then kept as it is (an activated admission stays activated)."""
        from google.api_core import exceptions as gexc

        ref = self._admissions(admission.country).document(admission.uid)
        try:
            ref.create(admission.to_doc())
        except gexc.AlreadyExists:
            return False
        return True

    def _member_ref(self, uid: str) -> firestore.DocumentReference:
        return self._db.collection(collections.MARKET_MEMBERS).document(uid)

    def held_place(self, uid: str) -> str | None:
        """The market whose soft-launch place ``uid`` holds, or None: its per-user document,
        when that market's admission still exists (a pointer whose admission is gone is
        stale, and the next recording takes it over). A plain read, for refusing early;
        :meth:`record_exclusive_admission` decides in its transaction."""
        snap = self._member_ref(uid).get()
        if not snap.exists:
            return None
        member = MarketMemberDoc.model_validate(snap.to_dict())
        held = self._admissions(member.country).document(uid).get()
        return member.country if held.exists else None

    def record_exclusive_admission(self, admission: AdmissionDoc) -> RecordOutcome:
        """Record a soft-launch admission and the user's per-user document
        (``pack391_market_members/{uid}``) in one transaction, unless the user already
        has an admission in this market (kept as it is: ``recorded`` False) or holds a
        place in another one (``held_elsewhere``). Concurrent signups of one user in two
        markets read and write the same per-user document, so one of them commits and the
        other, retried, finds the place taken."""
        from google.cloud import firestore

        uid, country = admission.uid, admission.country
        ref = self._admissions(country).document(uid)
        member_ref = self._member_ref(uid)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> RecordOutcome:
            snaps = {
                s.reference.path: s for s in self._db.get_all([ref, member_ref], transaction=tx)
            }
            if snaps[ref.path].exists:
                return RecordOutcome(recorded=False)
            member_snap = snaps[member_ref.path]
            if member_snap.exists:
                member = MarketMemberDoc.model_validate(member_snap.to_dict())
                if member.country != country:
                    held = self._admissions(member.country).document(uid)
                    if held.get(transaction=tx).exists:
                        return RecordOutcome(recorded=False, held_elsewhere=member.country)
                    # stale pointer (its admission is gone): the user holds no place
            tx.set(ref, admission.to_doc())
            tx.set(
                member_ref,
                MarketMemberDoc(
                    uid=uid, country=country, admitted_at=admission.admitted_at
                ).to_doc(),
            )
            return RecordOutcome(recorded=True)

        return cast(RecordOutcome, transact(self._db, run))

    def get_admission(self, country: str, uid: str) -> AdmissionDoc | None:
        snap = self._admissions(country).document(uid).get()
        return AdmissionDoc.model_validate(snap.to_dict()) if snap.exists else None

    def update_admission(
        self,
        country: str,
        uid: str,
        mutate: Callable[[AdmissionDoc | None], AdmissionDoc | None],
        change: Change | None = None,
    ) -> tuple[AdmissionDoc | None, AdmissionDoc | None]:
        """Apply ``mutate`` (current admission or None -> the new admission, or None for
        no change) in one transaction; the new document replaces the old one whole, so a
        field it leaves out is removed. With ``change``, a change is audited in the same
        transaction (no change, no entry). Returns (before, after)."""
        from google.cloud import firestore

        ref = self._admissions(country).document(uid)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> tuple[AdmissionDoc | None, AdmissionDoc | None]:
            snap = ref.get(transaction=tx)
            before = AdmissionDoc.model_validate(snap.to_dict()) if snap.exists else None
            after = mutate(before)
            if after is not None:
                tx.set(ref, after.to_doc())
                if change is not None:
                    write_audit(
                        self._db,
                        tx,
                        change,
                        target=ref.path,
                        before=(
                            before.model_dump(mode="json", by_alias=True, exclude_none=True)
                            if before is not None
                            else None
                        ),
                        after=after.model_dump(mode="json", by_alias=True, exclude_none=True),
                    )
            return before, after

        return cast(tuple[AdmissionDoc | None, AdmissionDoc | None], transact(self._db, run))

    def expired_admissions(self, country: str, now: datetime, limit: int) -> list[str]:
        """Uids of up to ``limit`` pending admissions whose ``pendingUntil`` is at or before
        ``now``: a range on one field, served by Firestore's automatic single-field index."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self._admissions(country).where(filter=FieldFilter(_PENDING_UNTIL, "<=", now))
        return [snap.id for snap in query.select([]).limit(limit).stream()]

    def pending_admissions(self, country: str, limit: int) -> list[str]:
        """Uids of up to ``limit`` pending admissions, soonest to expire first (every
        pending admission has a ``pendingUntil`` timestamp; active ones have none)."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self._admissions(country).where(filter=FieldFilter(_PENDING_UNTIL, ">=", _EPOCH))
        return [snap.id for snap in query.select([]).limit(limit).stream()]

    def release_admissions(
        self,
        country: str,
        uids: list[str],
        may_release: Callable[[AdmissionDoc], bool],
        change: Change | None = None,
        audit_note: dict[str, Any] | None = None,
    ) -> ReleaseOutcome:
        """Delete the admissions of ``uids`` that ``may_release`` accepts, deciding on
        what the transaction reads (so an activation racing the release wins or loses
        cleanly, never half). A released user's per-user document
        (``pack391_market_members/{uid}``) is deleted with the admission when it names
        this market, so the user may take a place elsewhere. With ``change``, one audit
        entry lists what was released, in the same transaction."""
        from google.cloud import firestore

        refs = [self._admissions(country).document(uid) for uid in uids]
        member_refs = [self._member_ref(uid) for uid in uids]

        @firestore.transactional
        def run(tx: firestore.Transaction) -> ReleaseOutcome:
            snaps = {
                snap.reference.path: snap
                for snap in self._db.get_all([*refs, *member_refs], transaction=tx)
                if snap.exists
            }
            outcome = ReleaseOutcome()
            for ref, member_ref in zip(refs, member_refs, strict=True):
                snap = snaps.get(ref.path)
                if snap is None:
                    outcome.missing.append(ref.id)
                    continue
                admission = AdmissionDoc.model_validate(snap.to_dict())
                if not may_release(admission):
                    outcome.kept.append(ref.id)
                    continue
                tx.delete(ref)
                outcome.released.append(admission)
                member = snaps.get(member_ref.path)
                if member is not None and (member.to_dict() or {}).get("country") == country:
                    tx.delete(member_ref)
            if change is not None:
                write_audit(
                    self._db,
                    tx,
                    change,
                    target=f"{collections.MARKETS}/{country}/{collections.MARKET_ADMISSIONS}",
                    before={
                        "admissions": [
                            a.model_dump(mode="json", by_alias=True, exclude_none=True)
                            for a in outcome.released
                        ]
                    },
                    after={
                        **(audit_note or {}),
                        "released": len(outcome.released),
                        "uids": [a.uid for a in outcome.released],
                    },
                )
            return outcome

        return cast(ReleaseOutcome, transact(self._db, run))

    def count_admissions(self, country: str) -> int:
        """The market's user count: one aggregation RPC, whatever the count."""
        result = self._admissions(country).count(alias="n").get()
        return int(result[0][0].value)

    def admitted_uids(self, country: str) -> Iterator[str]:
        for snap in self._admissions(country).select([]).stream():
            yield snap.id


@dataclass(frozen=True)
class EnforcementSnapshot:
    """One round trip's worth of enforcement state; None where Redis has no mirror yet."""

    market: MarketDoc | None
    global_switch: GlobalMarketsDoc | None
    is_member: bool
    member_count: int


class AdmitOutcome:
    """Answers of ``admit_member.lua``."""

    ADMITTED = 1
    ALREADY_MEMBER = 2
    AT_CAPACITY = 0
    STALE = -1


class MarketEnforcementStore:
    """Redis: the mirrors and member sets that enforcement reads and updates."""

    PREFIX = "{pack391:markets}"

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def _market_key(self, country: str) -> str:
        return f"{self.PREFIX}:{country}"

    def _members_key(self, country: str) -> str:
        return f"{self.PREFIX}:{country}:users"

    @property
    def _global_key(self) -> str:
        return f"{self.PREFIX}:global"

    def read(self, country: str, uid: str) -> EnforcementSnapshot:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(self._market_key(country), "doc")
        pipe.hget(self._global_key, "doc")
        pipe.sismember(self._members_key(country), uid)
        pipe.scard(self._members_key(country))
        market_json, global_json, is_member, count = pipe.execute()
        return EnforcementSnapshot(
            market=MarketDoc.model_validate_json(market_json) if market_json else None,
            global_switch=(
                GlobalMarketsDoc.model_validate_json(global_json) if global_json else None
            ),
            is_member=bool(is_member),
            member_count=int(count),
        )

    def mirror_market(self, doc: MarketDoc) -> bool:
        payload = doc.model_dump_json(by_alias=True)
        stored = lua_script(_MIRROR, self._redis)(
            keys=[self._market_key(doc.country)], args=[doc.version, payload]
        )
        return bool(stored)

    def mirror_global(self, doc: GlobalMarketsDoc) -> bool:
        payload = doc.model_dump_json(by_alias=True)
        stored = lua_script(_MIRROR, self._redis)(
            keys=[self._global_key], args=[doc.version, payload]
        )
        return bool(stored)

    def invalidate_market(self, country: str) -> None:
        """Drop a market's config mirror so the next call re-reads Firestore."""
        self._redis.delete(self._market_key(country))

    def invalidate_global(self) -> None:
        self._redis.delete(self._global_key)

    def add_members(self, country: str, uids: Iterable[str]) -> int:
        added = 0
        chunk: list[str] = []
        for uid in uids:
            chunk.append(uid)
            if len(chunk) >= _HYDRATE_CHUNK:
                added += int(self._redis.sadd(self._members_key(country), *chunk))
                chunk = []
        if chunk:
            added += int(self._redis.sadd(self._members_key(country), *chunk))
        return added

    def member_count(self, country: str) -> int:
        return int(self._redis.scard(self._members_key(country)))

    def admit(
        self, country: str, uid: str, capacity: int | None, market_version: int, global_version: int
    ) -> int:
        """Run the admission script; returns an :class:`AdmitOutcome` value."""
        outcome = lua_script(_ADMIT, self._redis)(
            keys=[self._members_key(country), self._market_key(country), self._global_key],
            args=[uid, -1 if capacity is None else capacity, market_version, global_version],
        )
        return int(outcome)

    def remove_member(self, country: str, uid: str) -> None:
        self._redis.srem(self._members_key(country), uid)

    def remove_members(self, country: str, uids: Iterable[str]) -> int:
        """Take ``uids`` out of the market's set; returns how many were in it."""
        removed = 0
        chunk: list[str] = []
        for uid in uids:
            chunk.append(uid)
            if len(chunk) >= _HYDRATE_CHUNK:
                removed += int(self._redis.srem(self._members_key(country), *chunk))
                chunk = []
        if chunk:
            removed += int(self._redis.srem(self._members_key(country), *chunk))
        return removed
