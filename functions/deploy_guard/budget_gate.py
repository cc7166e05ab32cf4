"""The error budget gate's reads: the budgets' actions as ``pack391_evaluateSlos`` last
recorded them in Firestore (``pack391_slo/current``), the durable copy of the Redis
snapshot the hot paths read (:mod:`shared.slo.actions`), so a lost or flushed Redis never
lets a release through a freeze. The :class:`functions.deploy_guard.ports.ErrorBudgets`
port's implementation."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import redis
from google.cloud import firestore
from pydantic import ValidationError

from shared import collections
from shared.models.slo import ActionsSnapshot, SloAction
from shared.slo.actions import count_shadow

log = logging.getLogger("pack391.deploy")

_FIELDS = ["at", "actions"]
"""The state document's fields the gate reads (the document also holds 30 days of daily
counts per scope: not fetched)."""


def snapshot_of_state(doc: dict[str, Any]) -> ActionsSnapshot:
    """The actions of the evaluator's state document: its ``at`` and ``actions`` (each
    action's :class:`~shared.models.slo.ActionState`, the Redis snapshot's shape), or an
    ``actions`` field that holds a whole snapshot (``{at, actions}``)."""
    actions = doc.get("actions") or {}
    if isinstance(actions, dict) and "at" in actions and "actions" in actions:
        return ActionsSnapshot.model_validate(actions)
    return ActionsSnapshot.model_validate({"at": doc.get("at"), "actions": actions})


class FirestoreErrorBudgets:
    """``pack391_slo/current`` (one read of two fields), and the shadow counters in Redis."""

    def __init__(self, db: firestore.Client, client: redis.Redis) -> None:
        self._ref = db.collection(collections.SLO_STATE).document(collections.SLO_STATE_DOC)
        self._redis = client

    def actions(self) -> ActionsSnapshot | None:
        snap = self._ref.get(field_paths=_FIELDS)
        if not snap.exists:
            return None
        try:
            return snapshot_of_state(snap.to_dict() or {})
        except ValidationError as exc:
            # an evaluator writing a shape this code cannot read: no freeze, said loudly
            log.error("pack391_slo/current unreadable, the error budget gate sees none: %r", exc)
            return None

    def count_shadow(self, action: SloAction, now: datetime) -> None:
        count_shadow(self._redis, action, now)
