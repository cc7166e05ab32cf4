"""What other areas read of the deploy guard: a thin read side of
``pack391_deployments``, which only the deploy guard writes, and its data gates.

- :func:`deployments_updated_since` (the ops console): the deployments that moved since a
  time, each with its phase history (not its analyses);
- :class:`RestoredDataGates` (the backup's restore drills): the pre-deploy gates' data
  checks on a restored copy, as of the copy's moment.

Importing this module loads pydantic, not the Firestore or Google Cloud clients.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import collections
from shared.models.backup import DrillGate
from shared.models.deploy import DeploymentHistory, GateResult, GateStatus

if TYPE_CHECKING:
    from google.cloud import firestore
    from google.cloud.firestore_admin_v1 import FirestoreAdminClient

_HISTORY_FIELDS = ["version", "environment", "phase", "history", "updatedAt"]
"""What is read of a deployment (its analyses, the bulk of it, are left out)."""


def deployments_updated_since(
    db: firestore.Client, since: datetime, limit: int
) -> list[DeploymentHistory]:
    """The deployments updated at or after ``since`` (every history entry appended updates
    ``updatedAt``), most recently updated first, at most ``limit``; the id is the
    document's."""
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = (
        db.collection(collections.DEPLOYMENTS)
        .where(filter=FieldFilter("updatedAt", ">=", since))
        .order_by("updatedAt", direction=firestore.Query.DESCENDING)
        .limit(limit)
        .select(_HISTORY_FIELDS)
    )
    return [
        DeploymentHistory.model_validate({**(s.to_dict() or {}), "deploymentId": s.id})
        for s in query.stream()
    ]


INDEX_FILE = Path(__file__).resolve().parents[2] / "firestore.indexes.json"
"""The indexes a release must find READY (the index gate's declaration)."""


def _failed(name: str, database: str, detail: str, **fields: Any) -> DrillGate:
    return DrillGate(
        name=name, status=GateStatus.FAIL, database=database, detail=detail[:500], **fields
    )


def _as_drill_gate(
    result: GateResult, database: str, window: tuple[datetime, datetime]
) -> DrillGate:
    """A data gate's verdict as a drill records it: value, threshold, unit, window."""
    ev = result.evidence
    if result.name == "database_indexes":
        missing = ev.get("missing")
        return DrillGate(
            name=result.name,
            status=result.status,
            value=None if missing is None else len(missing),
            threshold=0,
            unit="indexes",
            database=database,
            detail=str(ev["why"])
            if missing is None
            else f"{len(missing)} of {ev['declared']} declared indexes not READY"
            + (f": {', '.join(missing)}" if missing else ""),
        )
    return DrillGate(
        name=result.name,
        status=result.status,
        value=ev.get("failureRatePct"),
        threshold=ev["thresholdPct"],
        unit="%",
        window_start=window[0],
        window_end=window[1],
        database=database,
        detail=str(ev["why"]) if "why" in ev else f"{ev['bad']} of {ev['events']} events",
    )


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


class RestoredDataGates:
    """The pre-deploy gates' data checks (payout anomaly, token mismatch and auth failure
    rates, and the indexes) run on another database than the one the bundle serves: a
    restore drill's copy. Same reads (:class:`functions.deploy_guard.readers.GateReader`),
    same decisions (:func:`functions.deploy_guard.policy.gates.data_gates`); the rates'
    window ends at the data's moment, not now (a copy holds nothing later)."""

    def __init__(
        self,
        project: str,
        client_for: Callable[[str], firestore.Client],
        indexes: FirestoreAdminClient | None,
        index_file: Path = INDEX_FILE,
    ) -> None:
        """``client_for``: a Firestore client of a database id; ``indexes``: the Admin
        API (None: the emulator, which needs no index: the index gate is skipped)."""
        self._project = project
        self._client_for = client_for
        self._indexes = indexes
        self._index_file = index_file

    def __call__(self, database: str, moment: datetime) -> list[DrillGate]:
        """Every data gate on ``database`` as of ``moment``. A read that fails is that
        gate failed with the error (an unread copy proves nothing), never an exception."""
        from functions.deploy_guard.policy.gates import DATA_RATE_GATES, data_gates, data_window
        from functions.deploy_guard.readers import GateReader, load_index_specs

        window = data_window(moment)
        reader = GateReader(self._client_for(database), self._indexes)
        counts: dict[str, tuple[int, int]] = {}
        count_problem = ""
        try:
            counts = reader.business.counts(None, *window)
        except Exception as exc:
            count_problem = _describe(exc)
        wanted = load_index_specs(self._index_file)
        index_problem = ""
        missing: list[str] | None = None
        try:
            missing = reader.missing_indexes(self._project, database, wanted)
        except Exception as exc:
            index_problem = _describe(exc)
        gates = [
            _as_drill_gate(g, database, window)
            for g in data_gates(counts, len(wanted), missing)
            if not (index_problem and g.name == "database_indexes")
        ]
        if count_problem:
            gates[:0] = [
                _failed(
                    name,
                    database,
                    f"could not count: {count_problem}",
                    window_start=window[0],
                    window_end=window[1],
                    unit="%",
                )
                for _rate, name, _gate in DATA_RATE_GATES
            ]
        if index_problem:
            gates.append(
                _failed(
                    "database_indexes",
                    database,
                    f"could not list indexes: {index_problem}",
                    unit="indexes",
                )
            )
        return gates
