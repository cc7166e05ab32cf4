"""Load-test state: the run repository and the admissions ledger (Firestore), the abort
flags (Redis), the failover log sources and the synthetic-data cleaner. The shard
dispatchers are :mod:`functions.load.gcp` (Cloud Tasks) and :mod:`functions.load.local`
(worker processes)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

import redis
from google.cloud import firestore

from functions.load.policy import Admission, AdmissionVerdict, admit_run
from functions.load.results import Seconds, seconds_from_json, seconds_to_json
from shared import collections
from shared.audit import Change, write_audit
from shared.firestore import delete_matching, transact
from shared.models.load import LoadRunDoc
from shared.models.slo import SliMinuteDoc
from shared.ratelimit import keys as ratelimit_keys

log = logging.getLogger("pack391.load")

ABORT_PREFIX = "pack391:load:abort:"
SANDBOX_REDIS_PREFIX = "pack391:sandbox:"


class LoadRunRepository:
    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def ref(self, run_id: str) -> firestore.DocumentReference:
        return self._db.collection(collections.LOAD_RUNS).document(run_id)

    def recorder(
        self, doc: LoadRunDoc, change: Change, after: dict[str, Any]
    ) -> Callable[[Any], None]:
        """What records a new run and its audit entry inside the admission's transaction
        (:meth:`LoadAdmissions.admit`)."""

        def record(tx: firestore.Transaction) -> None:
            tx.set(self.ref(doc.run_id), doc.to_doc())
            write_audit(
                self._db, tx, change, target=f"loadtest/{doc.run_id}", before=None, after=after
            )

        return record

    def mark_aborting(self, run_id: str, before_status: str, change: Change) -> None:
        """``aborting``, with its audit entry, in one batch."""
        batch = self._db.batch()
        batch.update(self.ref(run_id), {"status": "aborting"})
        write_audit(
            self._db, batch, change, target=f"loadtest/{run_id}",
            before={"status": before_status}, after={"status": "aborting"},
        )  # fmt: skip
        batch.commit()

    def audit(self, change: Change, target: str, before: Any, after: Any) -> None:
        """An audit entry of its own (a cleanup)."""
        batch = self._db.batch()
        write_audit(self._db, batch, change, target=target, before=before, after=after)
        batch.commit()

    def get(self, run_id: str) -> LoadRunDoc | None:
        snap = self.ref(run_id).get()
        return LoadRunDoc.model_validate(snap.to_dict()) if snap.exists else None

    def set_status(self, run_id: str, **fields: Any) -> None:
        self.ref(run_id).update(fields)

    def shard_update(self, run_id: str, shard: int, fields: dict[str, Any]) -> None:
        self.ref(run_id).collection(collections.LOAD_RUN_SHARDS).document(str(shard)).set(
            fields, merge=True
        )

    def shards(self, run_id: str) -> list[dict[str, Any]]:
        col = self.ref(run_id).collection(collections.LOAD_RUN_SHARDS)
        return [s.to_dict() or {} for s in col.stream()]

    def write_slice(self, run_id: str, shard: int, seconds: Seconds, now: datetime) -> None:
        if not seconds:
            return
        self.ref(run_id).collection(collections.LOAD_RUN_SLICES).document().set(
            {"shard": shard, "at": now, "seconds": seconds_to_json(seconds)}
        )

    def slices(self, run_id: str) -> list[Seconds]:
        col = self.ref(run_id).collection(collections.LOAD_RUN_SLICES)
        return [seconds_from_json((s.to_dict() or {}).get("seconds", {})) for s in col.stream()]

    def all_shards_final(self, run_id: str, shards: int) -> bool:
        """Whether every shard has written its final status (a shard checks after its
        own: the last one, or several at once, finalize; finalizing is idempotent)."""
        done = [s for s in self.shards(run_id) if s.get("status") in ("completed", "aborted")]
        self.ref(run_id).update({"shardsDone": len(done)})
        return len(done) >= shards

    def write_report(self, run_id: str, report: dict[str, Any]) -> None:
        # Firestore holds no arrays of arrays: the heatmap's rows become maps.
        heat = dict(report["heatmap"], counts=[{"row": r} for r in report["heatmap"]["counts"]])
        doc = dict(report, heatmap=heat)
        self.ref(run_id).collection(collections.LOAD_RUN_REPORT).document("final").set(doc)

    def report(self, run_id: str) -> dict[str, Any] | None:
        snap = self.ref(run_id).collection(collections.LOAD_RUN_REPORT).document("final").get()
        if not snap.exists:
            return None
        doc = snap.to_dict() or {}
        heat = doc["heatmap"]
        return dict(doc, heatmap=dict(heat, counts=[r["row"] for r in heat["counts"]]))

    def older_than(self, cutoff: datetime) -> list[str]:
        query = self._db.collection(collections.LOAD_RUNS).where(
            filter=firestore.FieldFilter("createdAt", "<", cutoff)
        )
        return [s.id for s in query.stream()]

    def delete_run(self, run_id: str) -> int:
        """Delete the run and everything under it; the number of documents removed."""
        ref = self.ref(run_id)
        count = 0
        for sub in (
            collections.LOAD_RUN_SHARDS,
            collections.LOAD_RUN_SLICES,
            collections.LOAD_RUN_REPORT,
        ):
            for snap in ref.collection(sub).stream():
                snap.reference.delete()
                count += 1
        if ref.get().exists:
            ref.delete()
            count += 1
        return count


class LoadAdmissions:
    """The admission ledger (``pack391_config/load_admissions``): one small document read
    and written in the transaction that records the run it admits, so two concurrent
    starts can never both fit under the cap; a run's share is released when it ends."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db
        self._ref = db.collection(collections.CONFIG).document(
            collections.CONFIG_LOAD_ADMISSIONS_DOC
        )

    @staticmethod
    def _ledger(snap: Any) -> dict[str, Admission]:
        runs = ((snap.to_dict() or {}) if snap.exists else {}).get("runs") or {}
        return {
            run_id: Admission(run_id, float(entry["rps"]), entry["deadline"])
            for run_id, entry in runs.items()
        }

    def held(self) -> dict[str, Admission]:
        return self._ledger(self._ref.get())

    def admit(
        self,
        new: Admission,
        now: datetime,
        cap_rps: float,
        write: Callable[[firestore.Transaction], None],
    ) -> AdmissionVerdict:
        """Decide ``new`` against the ledger and, when admitted, run ``write`` (the run
        document and its audit entry) in the same transaction."""

        @firestore.transactional
        def run(tx: firestore.Transaction) -> AdmissionVerdict:
            verdict = admit_run(self._ledger(self._ref.get(transaction=tx)), new, now, cap_rps)
            if verdict.admitted or verdict.reaped:
                tx.set(
                    self._ref,
                    {
                        "runs": {
                            a.run_id: {"rps": a.rps, "deadline": a.deadline}
                            for a in verdict.held.values()
                        },
                        "updatedAt": now,
                    },
                )
            if verdict.admitted:
                write(tx)
            return verdict

        return cast(AdmissionVerdict, transact(self._db, run))

    def release(self, run_id: str) -> None:
        """Give a run's share back (it ended); a no-op when it holds none."""
        self._ref.set({"runs": {run_id: firestore.DELETE_FIELD}}, merge=True)


class AbortFlags:
    """One Redis key per aborted run: every shard polls it."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def set(self, run_id: str, reason: str, ttl_sec: int = 24 * 3600) -> None:
        self._redis.set(ABORT_PREFIX + run_id, reason, ex=ttl_sec)

    def get(self, run_id: str) -> str | None:
        raw = self._redis.get(ABORT_PREFIX + run_id)
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)


class FailoverLog:
    """What the rest of the bundle did during a run's window: scaling decisions and the
    isolation event log, DDoS detections, and the alerts of every area (one store,
    ``pack391_alerts``) opened or resolved in the window."""

    SOURCES = (
        (collections.SCALING_DECISIONS, "at", "scaling_decision"),
        (collections.SCALING_EVENTS, "at", "isolation"),
        (collections.DDOS_DETECTIONS, "detectedAt", "ddos_detection"),
        (collections.ALERTS, "openedAt", "alert"),
        (collections.ALERTS, "resolvedAt", "alert_resolved"),
    )

    def __init__(self, db: firestore.Client, client: redis.Redis) -> None:
        self._db = db
        self._redis = client

    def events(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, field, kind in self.SOURCES:
            query = (
                self._db.collection(name)
                .where(filter=firestore.FieldFilter(field, ">=", start))
                .where(filter=firestore.FieldFilter(field, "<=", end))
            )
            for snap in query.stream():
                data = snap.to_dict() or {}
                at = data.get(field)
                out.append(
                    {
                        "at": at.isoformat() if isinstance(at, datetime) else str(at),
                        "kind": kind,
                        "source": name,
                        "id": snap.id,
                        "detail": _brief(data),
                    }
                )
        out.extend(self._denials(start, end))
        return sorted(out, key=lambda e: str(e["at"]))

    def _denials(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        rows = []
        minute = ratelimit_keys.minute_of(start)
        last = ratelimit_keys.minute_of(end)
        while minute <= last:
            raw = self._redis.hgetall(ratelimit_keys.stats(minute))
            denied = {
                _s(k)[4:]: int(v) for k, v in raw.items() if _s(k).startswith("den:") and int(v)
            }
            if denied:
                at = datetime.fromtimestamp(minute * 60, tz=start.tzinfo)
                rows.append(
                    {
                        "at": at.isoformat(),
                        "kind": "rate_limit_denials",
                        "source": "ddos counters",
                        "id": str(minute),
                        "detail": denied,
                    }
                )
            minute += 1
        return rows


def _s(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _brief(data: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "serviceId",
        "action",
        "reason",
        "source",
        "kind",
        "status",
        "severity",
        "title",
        "state",
        "resolution",
    )
    return {k: str(data[k]) for k in keep if k in data}


class SyntheticData:
    """The sandbox's data tagged with a run id."""

    def __init__(self, db: firestore.Client, client: redis.Redis) -> None:
        self._db = db
        self._redis = client

    def delete(self, run_id: str) -> tuple[int, int]:
        docs = 0
        for name in collections.LOAD_SANDBOX_COLLECTIONS:
            query = self._db.collection(name).where(
                filter=firestore.FieldFilter("loadRunId", "==", run_id)
            )
            docs += delete_matching(self._db, query)
        keys = list(self._redis.scan_iter(match=f"{SANDBOX_REDIS_PREFIX}{run_id}:*", count=1000))
        if keys:
            self._redis.delete(*keys)
        return docs, len(keys)


class SliMinuteReader:
    """The SLI recorder's minutes (``pack391_sli_minutes``, written by the minute roll-up):
    the source of production-shaped runs (the :class:`functions.load.ports.MinuteSource`
    port). One range query on ``at`` (a single-field index, no composite one)."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def minutes(self, start: datetime, end: datetime) -> list[SliMinuteDoc]:
        query = (
            self._db.collection(collections.SLI_MINUTES)
            .where(filter=firestore.FieldFilter("at", ">=", start))
            .where(filter=firestore.FieldFilter("at", "<", end))
            .order_by("at")
        )
        return [SliMinuteDoc.model_validate(s.to_dict() or {}) for s in query.stream()]


def retention_cutoff(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)
