"""The SLO evaluator's I/O: the state document, the minute documents, the services'
minutes (from the scale guard's decisions) and the Redis minutes and snapshot."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from shared import collections
from shared import thresholds as t
from shared.audit import Change, write_audit
from shared.firestore import transact
from shared.models.slo import SliMinuteDoc, SloStateDoc
from shared.slo.objectives import Objective, objective_for, service_scope

Counts = dict[str, int]


class SloStateStore:
    """``pack391_slo/current`` and ``pack391_sli_minutes``."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db
        self._ref = db.collection(collections.SLO_STATE).document(collections.SLO_STATE_DOC)

    def get(self) -> SloStateDoc | None:
        snap = self._ref.get()
        return SloStateDoc.model_validate(snap.to_dict()) if snap.exists else None

    def put_minute(self, minute_id: str, doc: SliMinuteDoc) -> None:
        """One complete minute (a re-run writes the same document)."""
        self._db.collection(collections.SLI_MINUTES).document(minute_id).set(doc.to_doc())

    def update(
        self,
        build: Callable[
            [SloStateDoc | None],
            tuple[SloStateDoc, list[tuple[Change, dict[str, Any] | None, dict[str, Any] | None]]]
            | None,
        ],
    ) -> SloStateDoc | None:
        """In one transaction: read the state, ask ``build`` for the new one and the
        audit entries it owes (None: nothing changes), write both. The new state, or
        None when nothing changed."""

        @firestore.transactional
        def run(tx: firestore.Transaction) -> SloStateDoc | None:
            snap = self._ref.get(transaction=tx)
            before = SloStateDoc.model_validate(snap.to_dict()) if snap.exists else None
            built = build(before)
            if built is None:
                return None
            after, audits = built
            tx.set(self._ref, after.to_doc())
            for change, b, a in audits:
                write_audit(self._db, tx, change, target=self._ref.path, before=b, after=a)
            return after

        result: SloStateDoc | None = transact(self._db, run)
        return result


class ServiceMinutes:
    """The services' counts of one minute, from the scale guard's per-minute metrics
    (``pack391_scaling_decisions``: each run records the minute it read, ``metrics.at``).

    ``n`` is the minute's requests, ``bad`` its error rate times ``n``; the latency SLI of
    a service is per minute (Cloud Monitoring gives a p95, not each request): a minute
    whose p95 is over the objective's bound counts all its requests as slow, an upper
    bound (docs/slo.md)."""

    def __init__(
        self, db: firestore.Client, objectives: Callable[[], Mapping[str, Objective]]
    ) -> None:
        self._db = db
        self._objectives = objectives

    def minute(self, start: datetime) -> dict[str, Counts]:
        """Scope -> counts of the minute starting at ``start`` (decisions made in that
        minute or the next; a range on ``at`` alone: the automatic index serves it)."""
        query = (
            self._db.collection(collections.SCALING_DECISIONS)
            .where(filter=firestore.FieldFilter("at", ">=", start))
            .where(filter=firestore.FieldFilter("at", "<", start + timedelta(minutes=2)))
            .limit(t.SLO_SERVICE_DECISIONS_READ_MAX)
        )
        overrides = self._objectives()
        out: dict[str, Counts] = {}
        for snap in query.stream():
            doc = snap.to_dict() or {}
            metrics = doc.get("metrics") or {}
            at = metrics.get("at")
            if doc.get("source") != "guard" or at is None or at != start:
                continue
            scope = service_scope(str(doc.get("serviceId")))
            if scope in out:
                continue  # one decision per service per minute counts
            n = round(float(metrics.get("requestsPerMin") or 0))
            error_pct = float(metrics.get("errorRatePct") or 0)
            p95 = metrics.get("p95LatencyMs")
            slow = p95 is not None and float(p95) > objective_for(scope, overrides).latency_ms
            out[scope] = {"n": n, "bad": round(n * error_pct / 100), "slow": n if slow else 0}
        return out
