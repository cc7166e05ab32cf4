"""The deploy guard's state store in Firestore.

:class:`DeployStore`: ``pack391_deployments``, ``pack391_deploy_active`` (the per-environment
lock), ``pack391_deploy_reports`` and ``pack391_deploy_snapshots``, with their audit
entries and alerts, each deployment change in one transaction.

Each method is one Firestore step under :func:`shared.firestore.step`'s budget: when Firestore
stalls, the step raises :class:`~shared.errors.DependencyUnavailable` after at most that
long, instead of holding the monitor (whose 540 s timeout is sized for Cloud Run) past
its minute. A step that does not answer changed nothing (each is one commit, made or not).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.deploy_guard.policy.alerts import deployment_alerts
from shared import collections
from shared.alerts.policy import AlertChange
from shared.alerts.store import AlertStore
from shared.audit import Change, write_audit
from shared.firestore import step, transact
from shared.models.deploy import (
    ACTIVE_PHASES,
    DeploymentDoc,
    TrafficSnapshot,
    ValidationReport,
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _step(
    method: Callable[Concatenate[DeployStore, _P], _R],
) -> Callable[Concatenate[DeployStore, _P], _R]:
    """``method`` as one Firestore step (:func:`shared.firestore.step`)."""

    @functools.wraps(method)
    def run(store: DeployStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with step(f"deployments.{method.__name__}"):
            return method(store, *args, **kwargs)

    return run


class DeployStore:
    """``pack391_deployments``, ``pack391_deploy_active``, ``pack391_deploy_reports``."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _dep(self, deployment_id: str) -> firestore.DocumentReference:
        return self._db.collection(collections.DEPLOYMENTS).document(deployment_id)

    def _active(self, environment: str) -> firestore.DocumentReference:
        return self._db.collection(collections.DEPLOY_ACTIVE).document(environment)

    @_step
    def save_report(self, report: ValidationReport, change: Change) -> None:
        batch = self._db.batch()
        ref = self._db.collection(collections.DEPLOY_REPORTS).document(report.report_id)
        batch.set(ref, report.to_doc())
        write_audit(
            self._db,
            batch,
            change,
            target=f"{collections.DEPLOY_REPORTS}/{report.report_id}",
            before=None,
            after={"version": report.version, "passed": report.passed},
        )
        batch.commit()

    @_step
    def latest_report(self, version: str, environment: str) -> ValidationReport | None:
        docs = (
            self._db.collection(collections.DEPLOY_REPORTS)
            .where(filter=FieldFilter("version", "==", version))
            .where(filter=FieldFilter("environment", "==", environment))
            .order_by("at", direction=firestore.Query.DESCENDING)
            .limit(1)
            .stream()
        )
        for snap in docs:
            return ValidationReport.model_validate(snap.to_dict())
        return None

    def _snapshot(self, environment: str) -> firestore.DocumentReference:
        return self._db.collection(collections.DEPLOY_SNAPSHOTS).document(environment)

    @_step
    def save_snapshot(self, snapshot: TrafficSnapshot, change: Change) -> None:
        """The serving revisions before a deploy, with its audit entry (one batch)."""
        batch = self._db.batch()
        batch.set(self._snapshot(snapshot.environment), snapshot.to_doc())
        write_audit(
            self._db,
            batch,
            change,
            target=f"{collections.DEPLOY_SNAPSHOTS}/{snapshot.environment}",
            before=None,
            after={"services": snapshot.services},
        )
        batch.commit()

    @_step
    def snapshot(self, environment: str) -> TrafficSnapshot | None:
        snap = self._snapshot(environment).get()
        return TrafficSnapshot.model_validate(snap.to_dict()) if snap.exists else None

    @_step
    def create(
        self, dep: DeploymentDoc, change: Change, consume_snapshot: bool = False
    ) -> DeploymentDoc | str:
        """Create ``dep`` unless its environment has an active deployment (whose id is
        returned instead). Deployment, lock and audit entry in one transaction, which also
        deletes the environment's traffic snapshot when ``consume_snapshot`` (one snapshot,
        one canary: a later start must not take an old deploy's stable side)."""
        ref, active = self._dep(dep.deployment_id), self._active(dep.environment)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> DeploymentDoc | str:
            held = active.get(transaction=tx)
            if held.exists:
                return str((held.to_dict() or {}).get("deploymentId"))
            tx.set(active, {"deploymentId": dep.deployment_id, "since": dep.created_at})
            tx.set(ref, dep.to_doc())
            if consume_snapshot:
                tx.delete(self._snapshot(dep.environment))
            write_audit(
                self._db,
                tx,
                change,
                target=f"{collections.DEPLOYMENTS}/{dep.deployment_id}",
                before=None,
                after={"version": dep.version, "phase": dep.phase.value, "forced": dep.forced},
            )
            return dep

        return cast(DeploymentDoc | str, transact(self._db, run))

    @_step
    def get(self, deployment_id: str) -> DeploymentDoc | None:
        snap = self._dep(deployment_id).get()
        return DeploymentDoc.model_validate(snap.to_dict()) if snap.exists else None

    @_step
    def recent(self, environment: str | None, limit: int) -> list[DeploymentDoc]:
        query: Any = self._db.collection(collections.DEPLOYMENTS)
        if environment is not None:
            query = query.where(filter=FieldFilter("environment", "==", environment))
        docs = query.order_by("createdAt", direction=firestore.Query.DESCENDING).limit(limit)
        return [DeploymentDoc.model_validate(s.to_dict()) for s in docs.stream()]

    @_step
    def active_ids(self) -> list[str]:
        docs = self._db.collection(collections.DEPLOY_ACTIVE).stream()
        return sorted(str((s.to_dict() or {}).get("deploymentId")) for s in docs)

    @_step
    def update(
        self,
        deployment_id: str,
        mutate: Callable[[DeploymentDoc], DeploymentDoc | None],
        change: Change | None,
        alerts: Callable[[DeploymentDoc, DeploymentDoc], list[AlertChange]] = deployment_alerts,
    ) -> tuple[DeploymentDoc, DeploymentDoc] | None:
        """Read, ``mutate`` (pure; None: nothing to do), write: one transaction, so two
        overlapping runs never both apply a change. A traffic change is audited (as
        ``change``, or as the monitor when None); a final phase frees the environment once
        the platform was seen serving its split (``confirmed_at``); a phase change raises or
        resolves its ``alerts`` (a rollback's, in ``pack391_alerts``) in the same transaction.
        Answers (before, after), or None when ``mutate`` declined."""
        ref = self._dep(deployment_id)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> tuple[DeploymentDoc, DeploymentDoc] | None:
            snap = ref.get(transaction=tx)
            if not snap.exists:
                return None
            before = DeploymentDoc.model_validate(snap.to_dict())
            after = mutate(before)
            if after is None:
                return None
            if after.traffic_percent != before.traffic_percent:
                # a new wanted split: writers of the older one must not record theirs
                after = after.model_copy(update={"generation": before.generation + 1})
            raised = alerts(before, after)
            if raised:  # reads first: before this transaction's writes
                AlertStore(self._db).apply(raised, after.updated_at, tx)
            tx.set(ref, after.to_doc())
            moved = after.traffic_percent != before.traffic_percent or after.phase != before.phase
            if change is not None or moved:
                who = change or Change(
                    "system:monitor", "deploy.monitor", after.reason, "monitor", after.updated_at
                )
                write_audit(
                    self._db,
                    tx,
                    who,
                    target=f"{collections.DEPLOYMENTS}/{deployment_id}",
                    before={"phase": before.phase.value, "trafficPercent": before.traffic_percent},
                    after={"phase": after.phase.value, "trafficPercent": after.traffic_percent},
                )
            if after.phase not in ACTIVE_PHASES and after.confirmed_at is not None:
                tx.delete(self._active(after.environment))
            return before, after

        return cast(tuple[DeploymentDoc, DeploymentDoc] | None, transact(self._db, run))

    @_step
    def audit_only(self, change: Change, target: str, after: dict[str, Any]) -> None:
        """An admin action whose effect lives outside Firestore (a traffic pin)."""
        batch = self._db.batch()
        write_audit(self._db, batch, change, target=target, before=None, after=after)
        batch.commit()

    @_step
    def generation(self, deployment_id: str) -> int | None:
        """The deployment's current generation (None: no such deployment)."""
        snap = self._dep(deployment_id).get(field_paths=["generation"])
        return int((snap.to_dict() or {}).get("generation", 0)) if snap.exists else None

    @_step
    def mark_applied(
        self, deployment_id: str, generation: int, percent: int, now: datetime
    ) -> DeploymentDoc | None:
        """The platform confirmed ``percent``, pushed for ``generation``: recorded only if the
        deployment is still at that generation (one transaction). None: a newer decision
        owns the platform, nothing recorded."""
        ref = self._dep(deployment_id)

        @firestore.transactional
        def run(tx: firestore.Transaction) -> DeploymentDoc | None:
            snap = ref.get(transaction=tx)
            if not snap.exists:
                return None
            dep = DeploymentDoc.model_validate(snap.to_dict())
            if dep.generation != generation or dep.traffic_percent != percent:
                return None
            tx.update(ref, {"appliedPercent": percent, "updatedAt": now})
            return dep.model_copy(update={"applied_percent": percent, "updated_at": now})

        return cast(DeploymentDoc | None, transact(self._db, run))
