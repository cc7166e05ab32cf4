"""The scaling area's state store: the registry in Firestore.

:class:`ServiceRegistry`: ``pack391_scaling_services`` (config and live state), its
decisions, isolation events and alerts; the read side it extends,
:class:`functions.scaling.api.ServiceRegistryReader`, is what other areas read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from google.cloud import firestore

from functions.scaling.api import ServiceRegistryReader
from functions.scaling.policy import merge_config
from shared import collections
from shared.alerts.policy import AlertChange
from shared.alerts.store import AlertStore
from shared.audit import Change, write_audit
from shared.firestore import transact
from shared.models.scaling import (
    DecisionDoc,
    InitScalingResult,
    PendingAction,
    ScalingEventDoc,
    ServiceConfig,
    ServiceDoc,
    ServiceState,
)


class ServiceRegistry(ServiceRegistryReader):
    """Firestore: ``pack391_scaling_services`` (+ decisions and alerts): the reader's
    queries and the scaling engine's writes."""

    def init(
        self,
        defaults: list[ServiceConfig],
        updates: dict[str, dict[str, Any]],
        change: Change,
    ) -> InitScalingResult:
        """Create missing services (default + update); apply ``updates`` to the config of
        existing ones when it changes something; never touch state. Audited, in one
        transaction."""
        refs = [self._ref(c.service_id) for c in defaults]

        @firestore.transactional
        def run(tx: firestore.Transaction) -> InitScalingResult:
            snaps = {snap.id: snap for snap in self._db.get_all(refs, transaction=tx)}
            result = InitScalingResult(created=[], updated=[], unchanged=[])
            for default, ref in zip(defaults, refs, strict=True):
                sid = default.service_id
                snap = snaps.get(sid)
                target = f"{collections.SCALING_SERVICES}/{sid}"
                field = f"overrides.{sid}"
                if snap is None or not snap.exists:
                    cfg = merge_config(default, updates.get(sid, {}), field)
                    doc = ServiceDoc(
                        config=cfg,
                        state=ServiceState(current_instances=cfg.initial_instances),
                        created_at=change.now,
                        updated_at=change.now,
                    )
                    tx.set(ref, doc.to_doc())
                    after = cfg.model_dump(mode="json", by_alias=True)
                    write_audit(self._db, tx, change, target=target, before=None, after=after)
                    result.created.append(sid)
                    continue
                current = ServiceDoc.model_validate(snap.to_dict())
                cfg = merge_config(current.config, updates.get(sid, {}), field)
                if cfg == current.config:
                    result.unchanged.append(sid)
                    continue
                tx.update(ref, {"config": cfg.to_doc(), "updatedAt": change.now})
                write_audit(
                    self._db,
                    tx,
                    change,
                    target=target,
                    before=current.config.model_dump(mode="json", by_alias=True),
                    after=cfg.model_dump(mode="json", by_alias=True),
                )
                result.updated.append(sid)
            return result

        return cast(InitScalingResult, transact(self._db, run))

    def _pending_is(
        self, tx: firestore.Transaction, service_id: str, expected: PendingAction | None
    ) -> bool:
        snap = self._ref(service_id).get(transaction=tx)
        if not snap.exists:
            return False
        return same_intent(ServiceDoc.model_validate(snap.to_dict()).state.pending, expected)

    def begin_action(
        self, service_id: str, expected: PendingAction | None, intent: PendingAction
    ) -> bool:
        """Record ``intent`` before the platform is called, if the service's pending action
        is still ``expected`` (what the decider read). False: another holder recorded one
        meanwhile, and this decision must not act."""

        @firestore.transactional
        def run(tx: firestore.Transaction) -> bool:
            if not self._pending_is(tx, service_id, expected):
                return False
            tx.update(self._ref(service_id), {"state.pending": intent.to_doc()})
            return True

        return cast(bool, transact(self._db, run))

    def clear_action(self, service_id: str, intent: PendingAction) -> None:
        """The platform did not take ``intent``: it is no longer in flight."""

        @firestore.transactional
        def run(tx: firestore.Transaction) -> None:
            if self._pending_is(tx, service_id, intent):
                tx.update(self._ref(service_id), {"state.pending": None})

        transact(self._db, run)

    def add_decision(self, decision: DecisionDoc) -> None:
        """A decision that changes no state (held while another action is in flight)."""
        self._db.collection(collections.SCALING_DECISIONS).document().set(decision.to_doc())

    def save_run(
        self,
        service_id: str,
        state: ServiceState,
        decision: DecisionDoc,
        event: ScalingEventDoc | None,
        alert: AlertChange | None,
        now: datetime,
        expected: PendingAction | None = None,
    ) -> bool:
        """A guard run's outcome for one service: state, decision, isolation event and its
        alert (raised or resolved in ``pack391_alerts``) in one transaction. The state, event
        and alert are written only if the service's pending action is still
        ``expected`` (this run's intent, or what it read): False when another holder's
        intent or outcome replaced it (the decision is recorded, marked superseded)."""
        decisions = self._db.collection(collections.SCALING_DECISIONS)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> bool:
            current = self._pending_is(tx, service_id, expected)
            record = decision if current else _superseded(decision)
            if alert is not None and current:  # reads first: before this run's writes
                AlertStore(self._db).apply([alert], now, tx)
            if current:
                tx.update(
                    self._ref(service_id), {"state": state.to_doc(), "updatedAt": decision.at}
                )
            tx.set(decisions.document(), record.to_doc())
            if event is not None and current:
                tx.set(self._db.collection(collections.SCALING_EVENTS).document(), event.to_doc())
            return current

        return cast(bool, transact(self._db, run))

    def save_manual(
        self,
        before: ServiceDoc,
        state: ServiceState,
        decision: DecisionDoc,
        change: Change,
        expected: PendingAction | None = None,
    ) -> bool:
        """A manual scale: state, decision and the audit entry in one transaction; the state
        only if the manual intent ``expected`` is still the pending one (see :meth:`save_run`)."""
        sid = before.config.service_id

        @firestore.transactional
        def run(tx: firestore.Transaction) -> bool:
            current = self._pending_is(tx, sid, expected)
            self._write_manual(tx, before, state, decision, change, current)
            return current

        return cast(bool, transact(self._db, run))

    def _write_manual(
        self,
        batch: Any,
        before: ServiceDoc,
        state: ServiceState,
        decision: DecisionDoc,
        change: Change,
        current: bool,
    ) -> None:
        sid = before.config.service_id
        if current:
            batch.update(self._ref(sid), {"state": state.to_doc(), "updatedAt": change.now})
        else:
            decision = _superseded(decision)
        batch.set(self._db.collection(collections.SCALING_DECISIONS).document(), decision.to_doc())
        write_audit(
            self._db,
            batch,
            change,
            target=f"{collections.SCALING_SERVICES}/{sid}",
            before={"instances": before.state.current_instances},
            after={
                "instances": state.current_instances,
                "pinnedUntil": state.pinned_until.isoformat() if state.pinned_until else None,
                "platform": decision.platform.model_dump(mode="json", by_alias=True)
                if decision.platform
                else None,
            },
        )


def same_intent(a: PendingAction | None, b: PendingAction | None) -> bool:
    """The same pending action (by holder and fencing number), or both none."""
    if a is None or b is None:
        return a is None and b is None
    return (a.run_id, a.fence) == (b.run_id, b.fence)


def _superseded(decision: DecisionDoc) -> DecisionDoc:
    why = "superseded: another holder's action replaced this one's before it was recorded"
    return decision.model_copy(update={"reasons": [*decision.reasons, why]})
