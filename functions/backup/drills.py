"""Restore drills: a backup (or a point in time) restored into a scratch target,
checked (counted, then the pre-deploy gates' data checks on the restored copy), timed,
cleaned up, and recorded with its audit entry; a copy that fails a data gate raises the
drill alert."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime

from functions.backup import policy
from functions.backup.ports import BackupStore, Catalog, DataGateCheck
from shared.audit import Change
from shared.errors import FailedPrecondition, InvalidInput, NotFound
from shared.models.backup import (
    BackupRecord,
    BackupStatus,
    DrillGate,
    DrillRecord,
    DrillVerdict,
    RestoreDrillRequest,
)
from shared.thresholds import RTO_SEC

log = logging.getLogger("pack391.backup")


class Drills:
    """Runs restore drills through the backend, and records them in the catalog."""

    def __init__(
        self, store: BackupStore, catalog: Catalog, data_gates: DataGateCheck | None = None
    ) -> None:
        """``data_gates``: the pre-deploy gates' data checks, run on each drill's restored
        copy (None: none run, and the drill says so)."""
        self._store = store
        self._catalog = catalog
        self._data_gates = data_gates

    def _checked(self, database: str, moment: datetime) -> list[DrillGate]:
        """The data gates on ``database``; whatever the check raises is a failed gate."""
        assert self._data_gates is not None
        try:
            return self._data_gates(database, moment)
        except Exception as exc:
            log.exception("data gates on %s failed to run", database)
            return [policy.unchecked_gate(database, policy.describe_error(exc))]

    def drill(self, req: RestoreDrillRequest, change: Change) -> DrillRecord:
        """Restore a backup (or a point in time) into a scratch target, check it, time
        it, clean up, and record the drill with its audit entry.

        The drill id (and the managed backend's clone name) come from the server's
        random source, never from the request (a trace header is the caller's to
        choose): ``change.request_id`` only correlates the audit entry."""
        drill_id = policy.drill_id(change.now, secrets.token_hex(6))
        problem = policy.point_in_time_problem(req.point_in_time, change.now)
        if problem is not None:
            raise InvalidInput("pointInTime", problem)
        region = req.region or self._store.regions[0]
        record = self._drill_source(req, region)
        source = (
            f"pitr:{req.point_in_time.isoformat()}"
            if req.point_in_time is not None
            else record.backup_id
            if record
            else ""
        )
        outcome = self._store.drill(
            record,
            req.point_in_time,
            region,
            policy.drill_tag(drill_id),
            self._checked if self._data_gates is not None else None,
        )
        verdict = policy.drill_verdict(outcome.ok, outcome.gates)
        gates_line = (
            policy.gates_summary(outcome.gates, outcome.data_moment)
            if self._data_gates is not None
            else "data gates: none configured"
        )
        drill = DrillRecord(
            drill_id=drill_id,
            at=change.now,
            backend=self._store.backend,
            source=source,
            target=outcome.target,
            ok=verdict is DrillVerdict.PASSED,
            documents=outcome.documents,
            duration_sec=outcome.duration_sec,
            docs_per_sec=(
                outcome.documents / outcome.duration_sec if outcome.duration_sec > 0 else None
            ),
            rto_target_sec=RTO_SEC,
            within_rto=outcome.ok and policy.within_rto(outcome.duration_sec),
            cleaned_up=outcome.cleaned_up,
            detail=f"{verdict.value}: {outcome.detail}; {gates_line}"[:4000],
            requested_by=change.actor_uid,
            verdict=verdict,
            data_moment=outcome.data_moment,
            gates=outcome.gates,
        )
        if not outcome.cleaned_up:
            log.error("drill %s left %s behind: %s", drill_id, outcome.target, outcome.detail)
        self._catalog.save_drill(drill, change)
        if verdict is DrillVerdict.DATA_GATES_FAILED:
            log.warning("drill %s: %s", drill_id, gates_line)
        self._catalog.apply_alerts(policy.drill_alerts(drill), change.now)
        return drill

    def _drill_source(self, req: RestoreDrillRequest, region: str) -> BackupRecord | None:
        if req.backup_id is not None:
            record = self._catalog.get(req.backup_id)
            if record is None:
                raise NotFound(f"no backup {req.backup_id}", field="backupId")
            if record.status is not BackupStatus.COMPLETE:
                raise FailedPrecondition(
                    f"backup {req.backup_id} is {record.status.value}, not complete",
                    field="backupId",
                )
            return record
        latest = policy.latest_complete(self._catalog.all(), region)
        if latest is None and req.point_in_time is None:
            raise FailedPrecondition(f"no complete backup in {region} to restore")
        return latest
