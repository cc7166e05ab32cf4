"""Scaling I/O: the ports and their implementations.

- :class:`ServiceRegistry`: Firestore, the registry (config + live state), decisions, alerts.
- Metrics sources (:class:`MetricsSource`): :class:`CloudMonitoringSource` (Google Cloud
  Monitoring through :mod:`shared.gcp.monitoring`) and
  :class:`shared.metrics_store.PushedMetricsStore` (samples services push, kept per
  minute in Redis).
- Scalers (:class:`Scaler`): :class:`CloudRunScaler` (Cloud Run Admin API through
  :mod:`shared.gcp.cloudrun`) and :class:`LocalScaler` (records the desired count in
  Redis and calls the resize hook a local service registered).
- :class:`GuardLock`: the Redis lock that keeps two scale-guard runs from acting twice.

The HTTP health probe is :func:`shared.gcp.probe.probe`; the registry's read side is
:class:`shared.services.ServiceRegistryReader`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

import redis
from google.api_core import exceptions as gexc
from google.cloud import firestore

from functions.scaling.policy import merge_config
from shared import collections
from shared import thresholds as t
from shared.alerts.policy import AlertChange
from shared.alerts.store import AlertStore
from shared.audit import Change, write_audit
from shared.firestore import transact
from shared.gcp import monitoring as gm
from shared.gcp.cloudrun import CloudRunServices, manual_instances
from shared.isolation import PREFIX
from shared.metrics_store import PushedMetricsStore
from shared.models.scaling import (
    DecisionDoc,
    InitScalingResult,
    MetricsSnapshot,
    PendingAction,
    PlatformAnswer,
    ScalingEventDoc,
    ServiceConfig,
    ServiceDoc,
    ServiceState,
)
from shared.redis import lua_script
from shared.services import ServiceRegistryReader

LUA = Path(__file__).with_name("lua")
_RELEASE = LUA / "release_lock.lua"
_RENEW = LUA / "renew_lock.lua"
_ACQUIRE = LUA / "acquire_lock.lua"

log = logging.getLogger("pack391.scaling")


# ----------------------------------------------------------------- ports


class MetricsSource(Protocol):
    def read(self, cfg: ServiceConfig, now: datetime) -> MetricsSnapshot | None:
        """The most recent complete minute of the service's load, or None."""


class Scaler(Protocol):
    platform: str

    def apply(self, cfg: ServiceConfig, instances: int) -> PlatformAnswer:
        """Set the service's instance count; the answer says whether the platform took it."""

    def observed(self, cfg: ServiceConfig) -> int | None:
        """The instance count the platform holds now (None: unknown)."""


# ------------------------------------------------------------- Firestore


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


# ----------------------------------------------------------------- Redis


HEARTBEATS_PER_TTL = 3
"""A held lock is renewed this many times per time-to-live: two renewals can be late
before it expires."""


@dataclass
class Lease:
    """A held lock: its token, its fencing number (grows with every acquisition of the
    lock, so a later holder always has a larger one), and ``lost``, set when a renewal
    found the lock gone (the process stalled past the TTL: another holder may act)."""

    token: str
    fence: int
    lost: threading.Event = field(default_factory=threading.Event)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class GuardLock:
    """``SET NX PX`` with a random token and a fencing number, released only by its
    holder; :meth:`held` keeps it renewed while the holder works."""

    def __init__(self, client: redis.Redis, name: str = "guard") -> None:
        self._redis = client
        self._key = f"{PREFIX}:lock:{name}"
        self._fence_key = f"{PREFIX}:fence:{name}"

    def take(self, ttl_sec: float, wait_sec: float = 0.0) -> Lease | None:
        """The lock (waiting up to ``wait_sec`` for its holder to let go), or None."""
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait_sec
        script = lua_script(_ACQUIRE, self._redis)
        while True:
            fence = int(script(keys=[self._key, self._fence_key], args=[token, _ms(ttl_sec)]))
            if fence > 0:
                return Lease(token, fence)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def acquire(self, ttl_sec: float, wait_sec: float = 0.0) -> str | None:
        lease = self.take(ttl_sec, wait_sec)
        return None if lease is None else lease.token

    def renew(self, token: str, ttl_sec: float) -> bool:
        """Extend the lock if ``token`` still holds it; False means another run may act."""
        renewed = lua_script(_RENEW, self._redis)(keys=[self._key], args=[token, _ms(ttl_sec)])
        return bool(renewed)

    @contextmanager
    def held(self, ttl_sec: float, wait_sec: float = 0.0) -> Iterator[Lease | None]:
        """The lock for the block (None: another holder has it), renewed by a heartbeat
        thread :data:`HEARTBEATS_PER_TTL` times per TTL, so a platform call slower than the
        TTL never outlives it while this process runs. Released at the end."""
        lease = self.take(ttl_sec, wait_sec)
        if lease is None:
            yield None
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(ttl_sec / HEARTBEATS_PER_TTL):
                try:
                    if not self.renew(lease.token, ttl_sec):
                        log.error("lock %s lost: its TTL passed before a renewal", self._key)
                        lease.lost.set()
                        return
                except redis.RedisError:
                    log.warning("lock %s: renewal failed, retrying", self._key, exc_info=True)

        heartbeat = threading.Thread(target=beat, name=f"heartbeat {self._key}", daemon=True)
        heartbeat.start()
        try:
            yield lease
        finally:
            stop.set()
            heartbeat.join()
            self.release(lease.token)

    def release(self, token: str) -> bool:
        return bool(lua_script(_RELEASE, self._redis)(keys=[self._key], args=[token]))


# ------------------------------------------------------------ scalers


class LocalScaler:
    """The local stack's scaler: records the desired count in Redis and POSTs
    ``{"serviceId", "instances"}`` to the resize hook the service registered."""

    platform = "local"

    def __init__(self, client: redis.Redis, store: PushedMetricsStore) -> None:
        self._redis = client
        self._store = store

    def _key(self, service_id: str) -> str:
        return f"{PREFIX}:desired:{service_id}"

    def observed(self, cfg: ServiceConfig) -> int | None:
        raw = self._redis.hget(self._key(cfg.service_id), "instances")
        return int(raw) if raw is not None else None

    def apply(self, cfg: ServiceConfig, instances: int) -> PlatformAnswer:
        """Call the hook (if one is registered); record the count only once it is taken."""
        url = self._store.hook_url(cfg.service_id)
        detail: dict[str, Any] = {"hook": url}
        if url is not None:
            detail.update(_post_json(url, {"serviceId": cfg.service_id, "instances": instances}))
        ok = url is None or 200 <= int(detail.get("status") or 0) < 300
        if ok:
            self._redis.hset(
                self._key(cfg.service_id),
                mapping={"instances": instances, "at": datetime.now(UTC).isoformat()},
            )
        return PlatformAnswer(platform=self.platform, ok=ok, instances=instances, detail=detail)


def _post_json(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST ``payload``; ``{"status": code}`` or ``{"error": why}``."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=t.RESIZE_HOOK_TIMEOUT_SEC) as response:
            return {"status": int(response.status)}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code}
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return {"error": str(exc)}


KEEP_EXTERNAL_SCALING: dict[str, Any] = {"preserve_external_changes": True}
"""Decorator options for a Firebase function this engine scales (``@https_fn.on_request(
**KEEP_EXTERNAL_SCALING)``): without them ``firebase deploy`` writes the unset
min/max-instance options as resets and undoes the engine's scaling."""


class CloudRunScaler:
    """Cloud Run Admin API v2: service-level manual scaling.

    Sets ``Service.scaling`` to ``MANUAL`` with ``manual_instance_count`` (the update mask
    names only those fields, so nothing else of the service changes) and waits for the
    operation. A ``firebase deploy`` of a function that does not set
    ``preserve_external_changes=True`` resets scaling: :meth:`observed` reads what Cloud
    Run holds so the guard notices and re-applies (see the README).
    """

    platform = "cloud_run"

    def __init__(
        self,
        services: CloudRunServices,
        *,
        operation_timeout_sec: float = t.SCALE_OPERATION_TIMEOUT_SEC,
        read_timeout_sec: float = t.CLOUD_RUN_READ_TIMEOUT_SEC,
    ) -> None:
        self._services = services
        self.operation_timeout_sec = operation_timeout_sec
        """Deadline of one update, request to operation done (see the budget)."""
        self._read_timeout_sec = read_timeout_sec

    def name(self, cfg: ServiceConfig) -> str:
        return self._services.name(cfg.cloud_run_service, cfg.region)

    def observed(self, cfg: ServiceConfig) -> int | None:
        service = self._services.get(cfg.cloud_run_service, cfg.region, self._read_timeout_sec)
        return manual_instances(service)

    def apply(self, cfg: ServiceConfig, instances: int) -> PlatformAnswer:
        try:
            service, operation = self._services.set_manual_instances(
                cfg.cloud_run_service, cfg.region, instances, self.operation_timeout_sec
            )
        except (gexc.GoogleAPIError, TimeoutError) as exc:
            return PlatformAnswer(
                platform=self.platform,
                ok=False,
                instances=instances,
                detail={"service": self.name(cfg), "error": f"{type(exc).__name__}: {exc}"},
            )
        held = int(service.scaling.manual_instance_count)
        return PlatformAnswer(
            platform=self.platform,
            ok=held == instances,
            instances=held,
            detail={
                "service": self.name(cfg),
                "operation": operation,
                "generation": int(service.generation),
            },
        )


# ------------------------------------------------------ Cloud Monitoring


class CloudMonitoringSource:
    """Cloud Run's built-in metrics (and a Cloud Tasks queue's depth for workers),
    aligned per minute: CPU utilisation (mean), p95 request latency (worst revision),
    request count by response class (5xx share is the error rate)."""

    QUERIES: ClassVar[dict[str, gm.Query]] = {
        "cpu": gm.Query(gm.CPU, gm.Aligner.ALIGN_MEAN, gm.Reducer.REDUCE_MEAN),
        "latency": gm.Query(gm.LATENCY, gm.Aligner.ALIGN_PERCENTILE_95, gm.Reducer.REDUCE_MAX),
        "requests": gm.Query(
            gm.REQUESTS,
            gm.Aligner.ALIGN_DELTA,
            gm.Reducer.REDUCE_SUM,
            ("metric.labels.response_code_class",),
        ),
        "queue": gm.Query(gm.QUEUE_DEPTH, gm.Aligner.ALIGN_MAX, gm.Reducer.REDUCE_SUM),
    }

    def __init__(self, reader: gm.MonitoringReader) -> None:
        self._reader = reader

    def _filter(self, cfg: ServiceConfig, metric: str) -> str:
        if metric == gm.QUEUE_DEPTH:
            return gm.cloud_tasks_filter(metric, cfg.queue_source or "")
        return gm.cloud_run_filter(metric, cfg.cloud_run_service, cfg.region)

    def read(self, cfg: ServiceConfig, now: datetime) -> MetricsSnapshot | None:
        start = now - timedelta(seconds=t.SCALE_METRICS_MAX_AGE_SEC + t.SCALE_GUARD_INTERVAL_SEC)
        period = timedelta(seconds=t.SCALE_GUARD_INTERVAL_SEC)
        latest: dict[str, tuple[datetime, float]] = {}
        for key, query in self.QUERIES.items():
            if key == "queue" and not cfg.is_worker:
                continue
            found = self._reader.series(query, self._filter(cfg, query.metric), start, now, period)
            for series in found:
                if not series.samples:
                    continue
                newest = series.samples[0]
                label = series.labels.get("response_code_class", "")
                name = f"{key}:{label}" if key == "requests" else key
                latest[name] = (newest.end, newest.value)
        if not latest:
            return None
        newest_end = max(end for end, _ in latest.values())

        def value(name: str) -> float | None:
            found = latest.get(name)
            return found[1] if found else None

        request_counts = {k: v for k, (_, v) in latest.items() if k.startswith("requests:")}
        total = sum(request_counts.values()) if request_counts else None
        errors = request_counts.get("requests:5xx", 0.0)
        cpu = value("cpu")
        queue = value("queue")
        return MetricsSnapshot(
            at=newest_end - timedelta(seconds=t.SCALE_GUARD_INTERVAL_SEC),
            source="cloud_monitoring",
            cpu_pct=None if cpu is None else 100.0 * cpu,
            p95_latency_ms=value("latency"),
            error_rate_pct=(100.0 * errors / total) if total else None,
            requests_per_min=total,
            queue_backlog=None if queue is None else int(queue),
        )
