"""Market's Firestore side, the record of the admissions: one admission document per
admitted user (``pack391_markets/{country}/admissions/{uid}``), the per-user document of a
soft-launch place (``pack391_market_members/{uid}``), and the transactions that record,
activate and release them (the :class:`functions.market.ports.AdmissionRecords` port)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from functions.market.ports import RecordOutcome, ReleaseOutcome
from shared import collections
from shared.audit import Change, write_audit
from shared.firestore import transact
from shared.models.market import AdmissionDoc, MarketMemberDoc

if TYPE_CHECKING:
    # The Firestore client is imported where it is used: a cold instance checking market
    # access (Redis first) does not load it at start.
    from google.cloud import firestore

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PENDING_UNTIL = "pendingUntil"
"""The field the expiry queries range over (absent on admissions that never expire)."""


class AdmissionRepository:
    """Firestore: admissions, the per-user soft-launch places, and their transactions."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _admissions(self, country: str) -> Any:
        """``pack391_markets/{country}/admissions`` (the client's collection type is untyped)."""
        market = self._db.collection(collections.MARKETS).document(country)
        return market.collection(collections.MARKET_ADMISSIONS)

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
