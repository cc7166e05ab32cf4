"""Deploy guard I/O: the ports and their implementations.

- :class:`DeployStore`: Firestore (reports, deployments, the per-environment active lock,
  audit entries and alerts), each deployment change in one transaction.
- Traffic splitters (:class:`TrafficSplitter`): :class:`CloudRunTraffic` (Cloud Run Admin
  API through :mod:`shared.gcp.cloudrun`, ``Service.traffic`` / ``traffic_statuses``) and
  :class:`LocalTraffic` (the split in Redis, honoured by the local sandbox).
- Revision metrics (:class:`RevisionMetrics`): :class:`MonitoringRevisionMetrics` (Cloud
  Monitoring grouped by revision, through :mod:`shared.gcp.monitoring`) and
  :class:`PushedRevisionMetrics` (the pushed-metrics store of :mod:`shared.metrics_store`,
  with the revision name as the service id).
- :class:`BusinessMetrics`: payout, token-ledger and auth events per revision (Firestore).
- :class:`GateReader`: what the pre-deploy gates look at.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast

import redis
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_admin_v1 import FirestoreAdminClient
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.deploy_guard.policy import deployment_alerts
from shared import collections
from shared import thresholds as t
from shared.alerts.policy import AlertChange
from shared.alerts.store import AlertStore
from shared.audit import Change, write_audit
from shared.firestore import transact
from shared.gcp import monitoring as gm
from shared.gcp.cloudrun import CloudRunServices, serving_shares, short_revision
from shared.isolation import PREFIX
from shared.metrics_store import PushedMetricsStore
from shared.models.deploy import (
    ACTIVE_PHASES,
    DeploymentDoc,
    RevisionWindow,
    TrafficSnapshot,
    ValidationReport,
)
from shared.models.scaling import ReportMetricsRequest, ServiceDoc
from shared.redis import lua_script
from shared.services import ServiceRegistryReader

_SET_SPLIT = Path(__file__).with_name("lua") / "set_split.lua"

log = logging.getLogger("pack391.deploy")

# ------------------------------------------------------------------- ports


@dataclass(frozen=True)
class Observed:
    """A service's revisions as the platform holds them."""

    latest_ready: str | None
    shares: dict[str, int]
    """Revision -> percent actually serving (``traffic_statuses``)."""
    etag: str | None = None
    """The service's version as read: :meth:`TrafficSplitter.apply` given it refuses to
    write over a change made since (optimistic concurrency)."""


class TrafficSplitter(Protocol):
    platform: str

    def observe(self, service: str, region: str) -> Observed: ...

    def apply(
        self, service: str, region: str, split: dict[str, int], etag: str | None = None
    ) -> dict[str, int]:
        """Send ``split`` (revision -> percent); answers what now serves. With ``etag``,
        raises :class:`TrafficConflict` when the service changed since it was read."""


class RevisionMetrics(Protocol):
    def window(
        self,
        service: str,
        region: str,
        revision: str,
        start: datetime,
        end: datetime | None = None,
    ) -> RevisionWindow:
        """Requests, 5xx and p95 of ``revision`` from ``start`` (a minute's start) to
        ``end`` (default: the end of that minute; later: whole minutes, the last one as
        far as it is known)."""


class JudgeChain(Protocol):
    """The fast judge's schedule: :meth:`schedule` asks for one run of
    ``DeployGuard.tick(deployment_id)`` at ``at``; asking twice for the same
    (deployment, ``at``) runs it once."""

    def schedule(self, deployment_id: str, at: datetime) -> None: ...


# --------------------------------------------------------------- Firestore


class DeployStore:
    """``pack391_deployments``, ``pack391_deploy_active``, ``pack391_deploy_reports``."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _dep(self, deployment_id: str) -> firestore.DocumentReference:
        return self._db.collection(collections.DEPLOYMENTS).document(deployment_id)

    def _active(self, environment: str) -> firestore.DocumentReference:
        return self._db.collection(collections.DEPLOY_ACTIVE).document(environment)

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

    def snapshot(self, environment: str) -> TrafficSnapshot | None:
        snap = self._snapshot(environment).get()
        return TrafficSnapshot.model_validate(snap.to_dict()) if snap.exists else None

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

    def get(self, deployment_id: str) -> DeploymentDoc | None:
        snap = self._dep(deployment_id).get()
        return DeploymentDoc.model_validate(snap.to_dict()) if snap.exists else None

    def recent(self, environment: str | None, limit: int) -> list[DeploymentDoc]:
        query: Any = self._db.collection(collections.DEPLOYMENTS)
        if environment is not None:
            query = query.where(filter=FieldFilter("environment", "==", environment))
        docs = query.order_by("createdAt", direction=firestore.Query.DESCENDING).limit(limit)
        return [DeploymentDoc.model_validate(s.to_dict()) for s in docs.stream()]

    def active_ids(self) -> list[str]:
        docs = self._db.collection(collections.DEPLOY_ACTIVE).stream()
        return sorted(str((s.to_dict() or {}).get("deploymentId")) for s in docs)

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

    def audit_only(self, change: Change, target: str, after: dict[str, Any]) -> None:
        """An admin action whose effect lives outside Firestore (a traffic pin)."""
        batch = self._db.batch()
        write_audit(self._db, batch, change, target=target, before=None, after=after)
        batch.commit()

    def generation(self, deployment_id: str) -> int | None:
        """The deployment's current generation (None: no such deployment)."""
        snap = self._dep(deployment_id).get(field_paths=["generation"])
        return int((snap.to_dict() or {}).get("generation", 0)) if snap.exists else None

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


# ------------------------------------------------------------------ traffic


class LocalTraffic:
    """The local platform: revisions and the split per service in Redis.

    :meth:`deploy` is what a deploy does locally, with the real platform's traffic rules
    (the Cloud Run and Cloud Functions fakes in ``tests/fakes`` cite them): by default the
    way ``firebase deploy`` lands a function (all traffic on the new revision, whatever
    split was pinned); ``all_traffic=False`` the way ``gcloud run deploy --no-traffic``
    lands a Cloud Run service's revision (the split stays as it was).
    """

    platform = "local"

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def _key(self, service: str) -> str:
        return f"{PREFIX}:deploy:svc:{service}"

    def deploy(self, service: str, revision: str, all_traffic: bool = True) -> None:
        key = self._key(service)
        mapping: dict[str | bytes, str] = {"latest": revision}
        if all_traffic or not self._redis.hget(key, "split"):
            # the Cloud Functions API's allTrafficOnLatestRevision (true unless the deploy
            # says otherwise), or a first revision: 100 % on it, the pin is gone
            mapping["split"] = json.dumps({revision: 100})
            mapping["pinned"] = "0"
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=cast(Any, mapping))
        pipe.hincrby(key, "version", 1)
        pipe.execute()

    def observe(self, service: str, region: str) -> Observed:
        raw = cast(dict[str, str], self._redis.hgetall(self._key(service)))
        shares = {k: int(v) for k, v in json.loads(raw.get("split", "{}")).items()}
        return Observed(raw.get("latest"), shares, raw.get("version", "0"))

    def apply(
        self, service: str, region: str, split: dict[str, int], etag: str | None = None
    ) -> dict[str, int]:
        version = lua_script(_SET_SPLIT, self._redis)(
            keys=[self._key(service)], args=[json.dumps(split, sort_keys=True), etag or ""]
        )
        if int(version) < 0:
            raise TrafficConflict(f"{service} changed since version {etag} was read")
        return dict(split)


class CloudRunTraffic:
    """Cloud Run Admin API v2: ``Service.traffic`` with revision targets; reads
    ``traffic_statuses`` back. Only ``traffic`` is in the update mask."""

    platform = "cloud_run"

    def __init__(self, services: CloudRunServices) -> None:
        self._services = services

    def name(self, service: str, region: str) -> str:
        return self._services.name(service, region)

    def observe(self, service: str, region: str) -> Observed:
        found = self._services.get(service, region)
        latest = short_revision(found.latest_ready_revision) or None
        return Observed(latest, serving_shares(found), found.etag or None)

    def apply(
        self, service: str, region: str, split: dict[str, int], etag: str | None = None
    ) -> dict[str, int]:
        """With ``etag``, the update carries ``Service.etag``: Cloud Run refuses it (409
        ``ABORTED``) when the service changed since, which is :class:`TrafficConflict`."""
        try:
            updated = self._services.set_traffic(
                service, region, split, etag, t.DEPLOY_TRAFFIC_TIMEOUT_SEC
            )
        except gexc.Conflict as exc:  # Aborted is a Conflict (HTTP 409)
            if etag is None:
                raise
            raise TrafficConflict(f"{service} changed since etag {etag}: {exc}") from exc
        return serving_shares(updated)


# -------------------------------------------------------------- fast judge

JUDGE_TASK_FUNCTION = "pack391JudgeDeployment"
"""The task-queue function of the fast judge (no underscore: its Cloud Tasks queue is
named after it, and queue ids allow letters, digits and hyphens only)."""


def tick_task_id(deployment_id: str, at: datetime) -> str:
    """One Cloud Tasks name per (deployment, tick): a second enqueue of the same tick is
    refused ``ALREADY_EXISTS``, so overlapping links never fork the chain."""
    return f"judge-{deployment_id}-{int(at.timestamp())}"


class TaskQueueJudgeChain:
    """Deployed: each tick is a named Cloud Tasks task for ``pack391JudgeDeployment``
    (firebase-admin's task queue; ``TaskOptions.schedule_time`` and ``task_id``, Cloud Tasks
    ``Task.scheduleTime`` / ``Task.name``:
    https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks)."""

    def __init__(self, region: str, app: Any = None) -> None:
        self._region = region
        self._app = app

    def schedule(self, deployment_id: str, at: datetime) -> None:
        from firebase_admin import exceptions as fa_exc
        from firebase_admin import functions as admin_functions

        queue = admin_functions.task_queue(
            f"locations/{self._region}/functions/{JUDGE_TASK_FUNCTION}", app=self._app
        )
        options = admin_functions.TaskOptions(
            schedule_time=at,
            dispatch_deadline_seconds=int(
                t.CANARY_FAST_CHECK_BUDGET_SEC + t.DEPLOY_TRAFFIC_TIMEOUT_SEC + 15
            ),
            task_id=tick_task_id(deployment_id, at),
        )
        # another link scheduled this tick (ALREADY_EXISTS): one chain
        with contextlib.suppress(fa_exc.AlreadyExistsError):
            queue.enqueue({"data": {"deploymentId": deployment_id, "at": at.isoformat()}}, options)


class LocalJudgeChain:
    """The local stack: a timer per tick in this process, calling ``run(deployment_id,
    at)`` at ``at`` (the body of ``pack391JudgeDeployment``); one timer per tick."""

    def __init__(self, run: Callable[[str, datetime], object]) -> None:
        self._run = run
        self._pending: set[tuple[str, datetime]] = set()
        self._lock = threading.Lock()

    def schedule(self, deployment_id: str, at: datetime) -> None:
        key = (deployment_id, at)
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        delay = max(0.0, (at - datetime.now(at.tzinfo)).total_seconds())
        timer = threading.Timer(delay, self._fire, (deployment_id, at))
        timer.daemon = True
        timer.start()

    def _fire(self, deployment_id: str, at: datetime) -> None:
        with self._lock:
            self._pending.discard((deployment_id, at))
        try:
            self._run(deployment_id, at)
        except Exception:  # a timer thread has no caller: the next minute's monitor judges
            log.exception("fast judge of deployment %s at %s failed", deployment_id, at)


# ------------------------------------------------------------------ metrics


class PushedRevisionMetrics:
    """The scaling push path (``pack391_reportServiceMetrics``) with the revision name as
    ``serviceId``: only the judged minute counts (an older minute is no data)."""

    def __init__(self, store: PushedMetricsStore) -> None:
        self._store = store

    def record(
        self, revision: str, requests: int, errors: int, p95_ms: float | None, now: datetime
    ) -> datetime:
        """Add one sample to ``revision``'s current minute; answers the minute."""
        sample = ReportMetricsRequest.model_validate(
            {"serviceId": revision, "requests": requests, "errors": errors, "p95LatencyMs": p95_ms}
        )
        return self._store.record(sample, now)

    def window(
        self,
        service: str,
        region: str,
        revision: str,
        start: datetime,
        end: datetime | None = None,
    ) -> RevisionWindow:
        minute = timedelta(seconds=t.CANARY_CHECK_INTERVAL_SEC)
        end = end or start + minute
        requests = errors = 0
        p95: float | None = None
        at = start
        while at < end:
            snap = self._store.minute(revision, at)
            at += minute
            if snap is None or not snap.requests_per_min:
                continue
            n = int(snap.requests_per_min)
            requests += n
            errors += round((snap.error_rate_pct or 0.0) * n / 100)
            if snap.p95_latency_ms is not None:
                p95 = max(p95 or 0.0, snap.p95_latency_ms)
        return RevisionWindow(requests=requests, errors=errors, p95_latency_ms=p95)


_REVISION_COUNTS = gm.Query(
    gm.REQUESTS,
    gm.Aligner.ALIGN_DELTA,
    gm.Reducer.REDUCE_SUM,
    ("resource.labels.revision_name", "metric.labels.response_code_class"),
)
_REVISION_P95 = gm.Query(
    gm.LATENCY,
    gm.Aligner.ALIGN_PERCENTILE_95,
    gm.Reducer.REDUCE_MAX,
    ("resource.labels.revision_name",),
)


class MonitoringRevisionMetrics:
    """Cloud Run's request count (by response class) and p95 latency for one revision and
    minute, from Cloud Monitoring (filtered on the revision, aligned per minute)."""

    def __init__(self, reader: gm.MonitoringReader) -> None:
        self._reader = reader

    def window(
        self,
        service: str,
        region: str,
        revision: str,
        start: datetime,
        end: datetime | None = None,
    ) -> RevisionWindow:
        minute = timedelta(seconds=t.CANARY_CHECK_INTERVAL_SEC)
        end = end or start + minute
        requests = errors = 0
        counts = self._reader.series(
            _REVISION_COUNTS,
            gm.cloud_run_filter(gm.REQUESTS, service, region, revision),
            start,
            end,
            minute,
        )
        for series in counts:
            n = sum(int(sample.value) for sample in series.samples)
            requests += n
            if series.labels.get("response_code_class") == "5xx":
                errors += n
        p95: float | None = None
        latencies = self._reader.series(
            _REVISION_P95,
            gm.cloud_run_filter(gm.LATENCY, service, region, revision),
            start,
            end,
            minute,
        )
        for series in latencies:
            for sample in series.samples:
                p95 = max(p95 or 0.0, sample.value)
        return RevisionWindow(requests=requests, errors=errors, p95_latency_ms=p95)


class BusinessMetrics:
    """Payout anomalies, token mismatches and auth failures per revision and window, by
    count aggregations on the collections declared in :mod:`shared.collections`."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _count(
        self, collection: str, at_field: str, start: datetime, end: datetime, **equal: object
    ) -> int:
        query: Any = self._db.collection(collection)
        for field, value in equal.items():
            query = query.where(filter=FieldFilter(field, "==", value))
        query = query.where(filter=FieldFilter(at_field, ">=", start)).where(
            filter=FieldFilter(at_field, "<", end)
        )
        result = query.count(alias="n").get()
        return int(result[0][0].value)

    def counts(
        self, revision: str | None, start: datetime, end: datetime
    ) -> dict[str, tuple[int, int]]:
        """Rate name -> (bad events, all events); ``revision`` None: every revision."""
        scope: dict[str, object] = (
            {} if revision is None else {collections.BUSINESS_REVISION_FIELD: revision}
        )
        out: dict[str, tuple[int, int]] = {}
        for rate, (collection, at_field, flag) in collections.BUSINESS_RATES.items():
            total = self._count(collection, at_field, start, end, **scope)
            bad = (
                self._count(collection, at_field, start, end, **scope, **{flag: True})
                if total
                else 0
            )
            out[rate] = (bad, total)
        return out

    def window(self, revision: str, start: datetime, end: datetime) -> RevisionWindow:
        c = self.counts(revision, start, end)
        return RevisionWindow(
            payouts=c["payout_anomaly"][1],
            payout_anomalies=c["payout_anomaly"][0],
            token_writes=c["token_mismatch"][1],
            token_mismatches=c["token_mismatch"][0],
            auth_attempts=c["auth_failure"][1],
            auth_failures=c["auth_failure"][0],
        )


# -------------------------------------------------------------------- gates


class GateReader:
    """What the pre-deploy gates read: the scaling registry, payouts, wallets, indexes."""

    def __init__(self, db: firestore.Client, indexes: FirestoreAdminClient | None) -> None:
        self._db = db
        self._indexes = indexes
        self.business = BusinessMetrics(db)

    def services(self) -> list[ServiceDoc]:
        return ServiceRegistryReader(self._db).all_services()

    def stuck_payouts(self, older_than: datetime) -> int:
        query: Any = (
            self._db.collection(collections.PAYOUTS)
            .where(filter=FieldFilter("status", "==", "pending"))
            .where(filter=FieldFilter("createdAt", "<", older_than))
        )
        return int(query.count(alias="n").get()[0][0].value)

    def wallet_mismatches(self, sample: int) -> tuple[int, list[dict[str, int | str]]]:
        """(wallets checked, the ones whose balance is not the sum of their transactions)."""
        checked = 0
        bad: list[dict[str, int | str]] = []
        for snap in self._db.collection(collections.WALLETS).limit(sample).stream():
            checked += 1
            balance = int((snap.to_dict() or {}).get("balance", 0))
            txs = snap.reference.collection(collections.WALLET_TRANSACTIONS)
            agg: Any = txs.sum("amount", alias="s").get()
            total = int(agg[0][0].value or 0)
            if total != balance:
                bad.append({"wallet": snap.id, "balance": balance, "ledgerSum": total})
        return checked, bad

    def missing_indexes(self, project: str, wanted: list[dict[str, Any]]) -> list[str] | None:
        """Indexes of ``firestore.indexes.json`` not READY in the database (None: the
        emulator, which needs none)."""
        if self._indexes is None:
            return None
        parent = f"projects/{project}/databases/(default)/collectionGroups/-"
        ready: set[str] = set()
        for index in self._indexes.list_indexes(parent=parent):
            if index.state.name != "READY":
                continue
            group = index.name.split("/collectionGroups/")[1].split("/")[0]
            ready.add(_index_key(group, [(f.field_path, f.order.name) for f in index.fields]))
        missing = []
        for spec in wanted:
            fields = [
                (f["fieldPath"], f.get("order", "ASCENDING"))
                for f in spec["fields"]
                if f["fieldPath"] != "__name__"
            ]
            key = _index_key(spec["collectionGroup"], fields)
            if key not in ready:
                missing.append(key)
        return missing


def _index_key(group: str, fields: list[tuple[str, str]]) -> str:
    return f"{group}(" + ",".join(f"{p} {o}" for p, o in fields if p != "__name__") + ")"


def load_index_specs(path: Path) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = json.loads(path.read_text())["indexes"]
    return specs


class TrafficNotApplied(Exception):
    """The platform answered with a split other than the one asked for."""


class TrafficConflict(Exception):
    """A conditional traffic change was refused: the service changed since it was read."""


PLATFORM_ERRORS: tuple[type[BaseException], ...] = (
    gexc.GoogleAPIError,
    TimeoutError,
    TrafficNotApplied,
    TrafficConflict,
)
"""What a traffic change may raise that leaves the deployment to retry next minute."""
