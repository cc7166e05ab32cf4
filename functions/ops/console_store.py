"""What the live console and the timeline read (the :class:`functions.ops.ports.
ConsoleRecords` port): the other areas' records through their ``api`` modules (ddos,
deploy guard, scaling), and the audit log. Reads only; each one bounded by a limit, and
by a window where it takes ``since`` (single-field queries, or the declared
``pack391_scaling_decisions (action, at desc)`` index)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.ddos import api as ddos
from functions.deploy_guard import api as deploy_guard
from functions.scaling import api as scaling
from functions.slo import api as slo
from shared import collections
from shared.firestore import aggregate, newest
from shared.models.ddos import AllowlistEntryDoc, BlockDoc, DetectionDoc
from shared.models.deploy import DeploymentHistory
from shared.models.ops import ActivityEntry, OpsLiveSlo
from shared.models.scaling import DecisionDoc, ScalingEventDoc

ACTIVITY_FIELDS = ["at", "actorUid", "actorEmail", "action", "target", "reason", "requestId"]
"""What is read of an audit entry (its ``before``/``after`` documents are left out)."""


def activity_entry(snap: Any) -> ActivityEntry:
    """An audit-log document (its id and :data:`ACTIVITY_FIELDS`) as the console lists it."""
    data: dict[str, Any] = snap.to_dict() or {}
    return ActivityEntry.model_validate({**data, "id": snap.id})


class ConsoleRepository:
    """Firestore reads of the live console and the timeline."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    # --- the live console

    def active_blocks(self, now: datetime, limit: int) -> list[BlockDoc]:
        return ddos.active_blocks(self._db, now, limit)

    def allowlist(self, limit: int) -> list[AllowlistEntryDoc]:
        return ddos.allowlist(self._db, limit)

    def activity(self, limit: int) -> list[ActivityEntry]:
        found = newest(self._db, collections.AUDIT_LOG, "at", limit, fields=ACTIVITY_FIELDS)
        return [activity_entry(s) for s in found]

    def activity_version(self, since: datetime) -> str:
        found = newest(self._db, collections.AUDIT_LOG, "at", 1, fields=["at"])
        query = self._db.collection(collections.AUDIT_LOG).where(
            filter=FieldFilter("at", ">=", since)
        )
        recent = int(aggregate(query, n=("count", None))["n"] or 0)
        return f"{found[0].id if found else ''}:{recent}"

    def slo(self) -> OpsLiveSlo | None:
        return slo.budgets(self._db)

    # --- the timeline

    def activity_since(self, since: datetime, limit: int) -> list[ActivityEntry]:
        at = ("at", ">=", since)
        found = newest(self._db, collections.AUDIT_LOG, "at", limit, at, fields=ACTIVITY_FIELDS)
        return [activity_entry(s) for s in found]

    def detections_since(self, since: datetime, limit: int) -> list[DetectionDoc]:
        return ddos.detections_since(self._db, since, limit)

    def blocks_since(self, since: datetime, limit: int) -> list[BlockDoc]:
        return ddos.blocks_since(self._db, since, limit)

    def deployments_since(self, since: datetime, limit: int) -> list[DeploymentHistory]:
        return deploy_guard.deployments_updated_since(self._db, since, limit)

    def scale_decisions_since(self, since: datetime, limit: int) -> list[DecisionDoc]:
        return scaling.scale_decisions_since(self._db, since, limit)

    def isolation_events_since(self, since: datetime, limit: int) -> list[ScalingEventDoc]:
        return scaling.isolation_events_since(self._db, since, limit)
