"""What other areas (and the local stack, and tests) read of the scaling area.

The scaling engine owns these and writes them; others only read, through this module
(the one module of the area another area may import):

- :class:`ServiceRegistryReader`: the registry, ``pack391_scaling_services`` (config and
  live state of every service). The engine's store
  (:class:`functions.scaling.store.ServiceRegistry`) extends it with the writes; the deploy
  guard's gates and the ops dashboard read it.
- :func:`ensure_available`, :func:`isolation_state`, :class:`ServiceIsolated`: is a service
  isolated? The one check every area calls before calling a service
  (:mod:`functions.scaling.coordination`).
- :class:`PushedMetricsStore`: the samples services push, per minute in Redis
  (:mod:`functions.scaling.local`); the deploy guard's local per-revision metrics use it
  with a revision name as the service id.
- :data:`PREFIX`: the Redis hash tag of the area's keys, shared by the deploy guard's
  local traffic split.
- :func:`scale_decisions_since`, :func:`isolation_events_since`: the scale-ups and
  scale-downs decided, and the isolation changes, since a time (the ops timeline).

Importing this module loads Redis and pydantic, not the Firestore or Google Cloud clients.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from functions.scaling.coordination import (
    PREFIX,
    ServiceIsolated,
    ensure_available,
    isolation_state,
)
from functions.scaling.local import PushedMetricsStore
from shared import collections
from shared.firestore import newest
from shared.models.scaling import DecisionDoc, ScaleAction, ScalingEventDoc, ServiceDoc

if TYPE_CHECKING:
    from google.cloud import firestore

__all__ = [
    "PREFIX",
    "PushedMetricsStore",
    "ServiceIsolated",
    "ServiceRegistryReader",
    "ensure_available",
    "isolation_events_since",
    "isolation_state",
    "scale_decisions_since",
]


class ServiceRegistryReader:
    """Every registered service (config and live state), or one by id."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _ref(self, service_id: str) -> firestore.DocumentReference:
        return self._db.collection(collections.SCALING_SERVICES).document(service_id)

    def all_services(self) -> list[ServiceDoc]:
        docs = self._db.collection(collections.SCALING_SERVICES).order_by("__name__").stream()
        return [ServiceDoc.model_validate(snap.to_dict()) for snap in docs]

    def get(self, service_id: str) -> ServiceDoc | None:
        snap = self._ref(service_id).get()
        return ServiceDoc.model_validate(snap.to_dict()) if snap.exists else None


SCALE_ACTIONS = (ScaleAction.SCALE_UP, ScaleAction.SCALE_DOWN)
"""The decisions that change a service's instance count (the others hold it)."""

_DECISION_FIELDS = [
    "serviceId", "at", "source", "dryRun", "currentInstances", "desiredInstances", "action",
    "reasons", "acted", "actorUid", "runId",
]  # fmt: skip
"""What the timeline reads of a decision (not its metrics and recommendations)."""


def scale_decisions_since(db: firestore.Client, since: datetime, limit: int) -> list[DecisionDoc]:
    """The scale-ups and scale-downs decided at or after ``since`` (guard runs and manual
    scales, dry runs included: ``dryRun``, ``acted`` say), newest first, at most ``limit``;
    without their metrics. Served by the ``(action, at desc)`` index."""
    actions = ("action", "in", [a.value for a in SCALE_ACTIONS])
    found = newest(
        db, collections.SCALING_DECISIONS, "at", limit, actions, ("at", ">=", since),
        fields=_DECISION_FIELDS,
    )  # fmt: skip
    return [DecisionDoc.model_validate(s.to_dict()) for s in found]


def isolation_events_since(
    db: firestore.Client, since: datetime, limit: int
) -> list[ScalingEventDoc]:
    """The isolation changes (isolated, half-open, re-isolated, recovered) at or after
    ``since``, newest first, at most ``limit``."""
    found = newest(db, collections.SCALING_EVENTS, "at", limit, ("at", ">=", since))
    return [ScalingEventDoc.model_validate(s.to_dict()) for s in found]
