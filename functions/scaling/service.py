"""Scaling orchestration: read through the ports, decide with the policy, act, record."""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from google.api_core import exceptions as gexc

from functions.scaling import budget
from functions.scaling.adapters import (
    GuardLock,
    Lease,
    MetricsSource,
    Scaler,
    ServiceRegistry,
)
from functions.scaling.policy import (
    DEFAULT_POLICY,
    ISOLATION_MESSAGES,
    Decision,
    PolicyConfig,
    decide,
    in_flight,
    is_stale,
    isolation_alert,
    manual_target,
    merge_config,
    state_after,
)
from shared import thresholds as t
from shared.audit import Change
from shared.clock import minute_of
from shared.errors import BackendUnavailable, FailedPrecondition, NotFound
from shared.gcp.cloudrun import in_parallel
from shared.gcp.probe import probe
from shared.isolation import set_isolation
from shared.metrics_store import PushedMetricsStore
from shared.models.scaling import (
    DecisionDoc,
    DecisionSummary,
    HealthReport,
    HealthStatus,
    InitScalingRequest,
    InitScalingResult,
    IsolationState,
    ManualScaleRequest,
    ManualScaleResult,
    MetricsSnapshot,
    PendingAction,
    PlatformAnswer,
    ReportMetricsRequest,
    ReportMetricsResult,
    ScaleAction,
    ScaleGuardReport,
    ScalingEventDoc,
    ServiceConfig,
    ServiceDoc,
    ServiceHealth,
    ServiceState,
)

log = logging.getLogger("pack391.scaling")

WORKER_QUEUES = {
    "media-processing": "media-processing-jobs",
    "notification-service": "notification-jobs",
}
"""Worker services and the Cloud Tasks queue whose backlog bursts them."""


def default_services(region: str, health_url_template: str, project: str) -> list[ServiceConfig]:
    """The registry of the spec (:data:`shared.thresholds.SCALING_SERVICE_INSTANCES`)."""
    configs = []
    for service_id, (initial, low, high) in t.SCALING_SERVICE_INSTANCES.items():
        url = (
            health_url_template.format(service=service_id, region=region, project=project)
            if health_url_template
            else None
        )
        configs.append(
            ServiceConfig(
                service_id=service_id,
                initial_instances=initial,
                min_instances=low,
                max_instances=high,
                cloud_run_service=service_id,
                region=region,
                health_url=url,
                queue_source=WORKER_QUEUES.get(service_id),
            )
        )
    return configs


@dataclass(frozen=True)
class ScalingPorts:
    registry: ServiceRegistry
    metrics: MetricsSource
    pushed: PushedMetricsStore
    scaler: Scaler
    redis: redis.Redis
    dry_run: bool = False
    allow_hooks: bool = False
    """Resize hooks are a local-stack feature: refused when deployed."""


class ScalingService:
    """Locks: one run of the guard at a time (``guard``), and one instance change per
    service at a time (``service:<id>``), taken by the guard for each service and by a
    manual scale; both are renewed while their holder works (a platform call may take
    :data:`~shared.thresholds.SCALE_OPERATION_TIMEOUT_SEC`). An instance change is recorded
    as the service's pending intent before the platform is called and completed after;
    a decider that finds another holder's intent holds (see :func:`in_flight`), and the
    state is written only while the intent it expects is still the pending one."""

    def __init__(
        self,
        ports: ScalingPorts,
        policy: PolicyConfig = DEFAULT_POLICY,
        *,
        lock_ttl_sec: float = t.SCALE_GUARD_LOCK_SEC,
        manual_wait_sec: float = t.MANUAL_SCALE_LOCK_WAIT_SEC,
        in_flight_max_sec: float = t.SCALE_OPERATION_TIMEOUT_SEC + t.SCALE_GUARD_INTERVAL_SEC,
        guard_wait_sec: float | None = None,
    ) -> None:
        self._p = ports
        self._guard_wait_sec = budget.guard_wait_sec() if guard_wait_sec is None else guard_wait_sec
        """How long a guard run waits for its services' work (see the budget)."""
        self._policy = policy
        self._lock = GuardLock(ports.redis)
        self._lock_ttl_sec = lock_ttl_sec
        self._manual_wait_sec = manual_wait_sec
        self._in_flight_max_sec = in_flight_max_sec
        """An intent older than this was abandoned (its holder died mid-call): the
        operation timeout plus one guard interval for the request around it."""

    def _service_lock(self, service_id: str) -> GuardLock:
        return GuardLock(self._p.redis, f"service:{service_id}")

    # ------------------------------------------------------------- admin

    def init(
        self, req: InitScalingRequest, region: str, template: str, project: str, change: Change
    ) -> InitScalingResult:
        """Create the services that are missing (defaults + overrides); for existing ones
        apply only what this request gives (``region``, overrides), keeping earlier
        overrides and never touching live state."""
        defaults = default_services(req.region or region, template, project)
        overrides = req.overrides or {}
        unknown = sorted(set(overrides) - {c.service_id for c in defaults})
        if unknown:
            raise NotFound(f"no such service: {', '.join(unknown)}", field="overrides")
        updates: dict[str, dict[str, Any]] = {}
        for cfg in defaults:
            fields = {"region": req.region} if req.region else {}
            over = overrides.get(cfg.service_id)
            if over is not None:
                fields.update(over.model_dump(exclude_none=True))
            merge_config(cfg, fields, f"overrides.{cfg.service_id}")  # fail before writing
            updates[cfg.service_id] = fields
        return self._p.registry.init(defaults, updates, change)

    def manual_scale(self, req: ManualScaleRequest, change: Change) -> ManualScaleResult:
        lock = self._service_lock(req.service_id)
        with lock.held(self._lock_ttl_sec, wait_sec=self._manual_wait_sec) as lease:
            if lease is None:
                raise BackendUnavailable(
                    f"a scale action on {req.service_id} is in progress: try again in a minute"
                )
            return self._manual_scale(req, change, lease)

    def _manual_scale(
        self, req: ManualScaleRequest, change: Change, lease: Lease
    ) -> ManualScaleResult:
        doc = self._service(req.service_id)
        cfg, current = doc.config, doc.state.current_instances
        busy = in_flight(doc.state.pending, change.now, self._in_flight_max_sec)
        if busy is not None:
            raise BackendUnavailable(f"{cfg.service_id}: {busy}: try again in a minute")
        target = manual_target(cfg, current, req.action, req.instance_count, req.force)
        intent = PendingAction(
            run_id=change.request_id,
            source="manual",
            desired_instances=target,
            fence=lease.fence,
            at=change.now,
        )
        if not self._p.registry.begin_action(cfg.service_id, doc.state.pending, intent):
            raise BackendUnavailable(
                f"another scale action on {cfg.service_id} started: try again in a minute"
            )
        answer = self._p.scaler.apply(cfg, target)
        if not answer.ok:
            self._p.registry.clear_action(cfg.service_id, intent)
            raise BackendUnavailable(
                f"{self._p.scaler.platform} did not take {target} instances for {cfg.service_id}",
                platform=answer.model_dump(mode="json", by_alias=True),
            )
        pinned = change.now + timedelta(seconds=t.MANUAL_SCALE_HOLD_SEC)
        action = (
            ScaleAction.SCALE_UP
            if target > current
            else (ScaleAction.SCALE_DOWN if target < current else ScaleAction.NONE)
        )
        reasons = [f"manual {req.action.value} by {change.actor_uid}: {req.reason}"]
        if req.force:
            reasons.append("forced past the service's bounds")
        state = doc.state.model_copy(
            update={
                "pending": None,
                "current_instances": answer.instances,
                "last_action_at": change.now,
                "pinned_until": pinned,
                "last_decision": DecisionSummary(
                    at=change.now, action=action, desired_instances=target, reasons=reasons
                ),
            }
        )
        decision = DecisionDoc(
            service_id=cfg.service_id,
            at=change.now,
            source="manual",
            dry_run=False,
            current_instances=current,
            desired_instances=target,
            action=action,
            reasons=reasons,
            isolation_before=doc.state.isolation,
            isolation_after=doc.state.isolation,
            acted=True,
            platform=answer,
            actor_uid=change.actor_uid,
            run_id=change.request_id,
            expire_at=_expiry(change.now),
        )
        if not self._p.registry.save_manual(doc, state, decision, change, intent):
            log.error("manual scale of %s superseded before it was recorded", cfg.service_id)
        return ManualScaleResult(
            service_id=cfg.service_id,
            previous_instances=current,
            instances=answer.instances,
            forced=req.force,
            pinned_until=pinned,
            platform=answer,
        )

    # -------------------------------------------------------------- reads

    def health(self, service_id: str | None, now: datetime) -> HealthReport:
        docs = [self._service(service_id)] if service_id else self._p.registry.all_services()
        with ThreadPoolExecutor(max_workers=max(1, len(docs))) as pool:  # probes in parallel
            services = list(pool.map(lambda doc: self._health_of(doc, now), docs))
        return HealthReport(services=services)

    def _health_of(self, doc: ServiceDoc, now: datetime) -> ServiceHealth:
        cfg, state = doc.config, doc.state
        result = probe(cfg.health_url) if cfg.health_url else None
        metrics = self._read_metrics(cfg, now)
        fresh = None if is_stale(metrics, now, self._policy) else metrics
        if result is not None and not result.ok:
            status = HealthStatus.DOWN
        elif state.isolation is not IsolationState.NONE:
            status = HealthStatus.ISOLATED
        elif fresh is None or _over_trigger(fresh, self._policy):
            status = HealthStatus.DEGRADED
        else:
            status = HealthStatus.HEALTHY
        return ServiceHealth(
            service_id=cfg.service_id,
            status=status,
            probe_ok=None if result is None else result.ok,
            probe_status=None if result is None else result.status,
            probe_ms=None if result is None else round(result.ms, 1),
            probe_error=None if result is None else result.error,
            metrics=metrics,
            current_instances=state.current_instances,
            isolation=state.isolation,
            last_decision=state.last_decision,
        )

    # -------------------------------------------------------------- push

    def report(self, req: ReportMetricsRequest, now: datetime) -> ReportMetricsResult:
        self._service(req.service_id)
        if req.resize_hook_url is not None and not self._p.allow_hooks:
            raise FailedPrecondition(
                "resizeHookUrl is a local-stack feature; deployed services are scaled "
                "through Cloud Run",
                field="resizeHookUrl",
            )
        minute = self._p.pushed.record(req, now)
        if req.resize_hook_url is not None:
            self._p.pushed.register_hook(req.service_id, req.resize_hook_url)
        return ReportMetricsResult(
            service_id=req.service_id,
            minute=minute,
            hook_registered=req.resize_hook_url is not None,
        )

    # ------------------------------------------------------------- guard

    def guard(self, now: datetime, run_id: str) -> ScaleGuardReport:
        """One scale-guard run: every service, under the Redis lock. ``now`` is the run's
        minute (Cloud Scheduler's schedule time), so the cooldown is exact.

        The services are worked on at once (:func:`shared.gcp.cloudrun.in_parallel`, each
        under its own lock), so their Cloud Run updates are in flight together and a run
        takes as long as its slowest service, not the sum (see
        :mod:`functions.scaling.budget`). A service whose work fails or outlasts
        ``guard_wait_sec`` is logged and left out of the report; the others' decisions
        are saved and reported."""
        with self._lock.held(self._lock_ttl_sec) as run_lease:
            if run_lease is None:
                log.info("scale guard %s: another run holds the lock, skipping", run_id)
                return ScaleGuardReport(run_id=run_id, locked=False)
            sids = [listed.config.service_id for listed in self._p.registry.all_services()]
            calls = {
                sid: functools.partial(self._guard_locked, sid, now, run_id, run_lease)
                for sid in sids
            }
            answers = in_parallel(calls, self._guard_wait_sec, t.CLOUD_RUN_MAX_PARALLEL_UPDATES)
            decisions: list[DecisionDoc] = []
            unexpected: BaseException | None = None
            for sid in sids:
                answer = answers[sid]
                if isinstance(answer, DecisionDoc):
                    decisions.append(answer)
                elif isinstance(answer, redis.RedisError | gexc.GoogleAPIError | TimeoutError):
                    log.error("scale guard %s: %s failed: %r", run_id, sid, answer)
                elif isinstance(answer, BaseException):
                    log.error("scale guard %s: %s failed", run_id, sid, exc_info=answer)
                    unexpected = unexpected or answer
            if unexpected is not None:  # reported as a failed run, after the others saved
                raise unexpected
            return ScaleGuardReport(run_id=run_id, locked=True, decisions=decisions)

    def _guard_locked(
        self, sid: str, now: datetime, run_id: str, run_lease: Lease
    ) -> DecisionDoc | None:
        """One service of a guard run, under the service's lock (None: not decided)."""
        if run_lease.lost.is_set():  # stalled past the TTL: another run may act
            log.error("scale guard %s lost its lock: not deciding %s", run_id, sid)
            return None
        with self._service_lock(sid).held(self._lock_ttl_sec) as lease:
            if lease is None:
                log.info("scale guard %s: %s is being scaled, skipping", run_id, sid)
                return None
            return self._guard_one(sid, now, run_id, lease)

    def _held(
        self, state: ServiceState, sid: str, now: datetime, run_id: str, why: str
    ) -> DecisionDoc:
        """A decision not taken: another holder's action is in flight."""
        record = DecisionDoc(
            service_id=sid,
            at=now,
            source="guard",
            dry_run=self._p.dry_run,
            current_instances=state.current_instances,
            desired_instances=state.current_instances,
            action=ScaleAction.NONE,
            reasons=[why],
            isolation_before=state.isolation,
            isolation_after=state.isolation,
            run_id=run_id,
            expire_at=_expiry(now),
        )
        self._p.registry.add_decision(record)
        return record

    def _guard_one(self, sid: str, now: datetime, run_id: str, lease: Lease) -> DecisionDoc:
        doc = self._service(sid)  # read again under the service's lock
        cfg, state = doc.config, doc.state
        busy = in_flight(state.pending, now, self._in_flight_max_sec)
        if busy is not None:
            return self._held(state, sid, now, run_id, busy)
        expected = state.pending
        notes: list[str] = []
        if expected is not None:
            notes.append(
                f"abandoned {expected.source} action of {expected.run_id} to "
                f"{expected.desired_instances} instances (since {expected.at.isoformat()}): "
                "deciding from what the platform holds"
            )
        observed = self._observed(cfg)
        if observed is not None and observed != state.current_instances:
            notes.append(
                f"platform holds {observed} instances, not the {state.current_instances} "
                "recorded (a deploy reset or a change outside pack391): deciding from "
                f"{observed}"
            )
            state = state.model_copy(update={"current_instances": observed})
        metrics = self._read_metrics(cfg, now)
        decision = decide(cfg, state, metrics, now, self._policy)
        answer: PlatformAnswer | None = None
        applied: int | None = None
        if decision.changes_instances and not self._p.dry_run:
            intent = PendingAction(
                run_id=run_id,
                source="guard",
                desired_instances=decision.desired_instances,
                fence=lease.fence,
                at=now,
            )
            if not self._p.registry.begin_action(sid, expected, intent):
                return self._held(state, sid, now, run_id, "another scale action started")
            expected = intent  # recorded before the call: completed by save_run below
            answer = self._p.scaler.apply(cfg, decision.desired_instances)
            applied = answer.instances if answer.ok else None
        iso = decision.isolation
        isolation_after = iso.state if iso else state.isolation
        if not self._p.dry_run:
            set_isolation(self._p.redis, cfg.service_id, isolation_after)
        new_state = state_after(state, decision, now, applied)
        record = self._decision_doc(cfg, decision, metrics, now, run_id, notes, answer)
        record = record.model_copy(
            update={"isolation_before": state.isolation, "isolation_after": isolation_after}
        )
        event = self._isolation_event(cfg, decision, metrics, now)
        alert = (
            None
            if event is None
            else isolation_alert(
                cfg.service_id,
                event.kind,
                event.error_rate_pct,
                event.threshold_pct,
                self._p.dry_run,
            )
        )
        if not self._p.registry.save_run(sid, new_state, record, event, alert, now, expected):
            log.error("scale guard %s: %s was superseded before it was recorded", run_id, sid)
        return record

    # ------------------------------------------------------------ helpers

    def _service(self, service_id: str) -> ServiceDoc:
        doc = self._p.registry.get(service_id)
        if doc is None:
            raise NotFound(
                f"no service {service_id}: run pack391_initScaling first", field="serviceId"
            )
        return doc

    def _read_metrics(self, cfg: ServiceConfig, now: datetime) -> MetricsSnapshot | None:
        try:
            return self._p.metrics.read(cfg, now)
        except (gexc.GoogleAPIError, TimeoutError):
            log.warning("metrics of %s unavailable", cfg.service_id, exc_info=True)
            return None

    def _observed(self, cfg: ServiceConfig) -> int | None:
        try:
            return self._p.scaler.observed(cfg)
        except (gexc.GoogleAPIError, TimeoutError):
            log.warning("could not read %s from the platform", cfg.service_id, exc_info=True)
            return None

    def _decision_doc(
        self,
        cfg: ServiceConfig,
        decision: Decision,
        metrics: MetricsSnapshot | None,
        now: datetime,
        run_id: str,
        notes: list[str],
        answer: PlatformAnswer | None,
    ) -> DecisionDoc:
        reasons = [*notes, *decision.reasons]
        if self._p.dry_run and decision.changes_instances:
            reasons.append("dry run: not applied")
        if answer is not None and not answer.ok:
            reasons.append(f"{answer.platform} did not apply it: {answer.detail}")
        return DecisionDoc(
            service_id=cfg.service_id,
            at=now,
            source="guard",
            dry_run=self._p.dry_run,
            current_instances=decision.current_instances,
            desired_instances=decision.desired_instances,
            action=decision.action,
            reasons=reasons,
            metrics=metrics,
            recommendations=decision.recommendations,
            raw_desired=decision.raw_desired,
            stabilised_desired=decision.stabilised_desired,
            acted=answer is not None and answer.ok,
            platform=answer,
            run_id=run_id,
            expire_at=_expiry(now),
        )

    def _isolation_event(
        self,
        cfg: ServiceConfig,
        decision: Decision,
        metrics: MetricsSnapshot | None,
        now: datetime,
    ) -> ScalingEventDoc | None:
        """The event-log entry of this run's isolation change (None: no change)."""
        kind = decision.isolation.alert if decision.isolation else None
        if kind is None:
            return None
        prefix = "[dry run] " if self._p.dry_run else ""
        return ScalingEventDoc(
            service_id=cfg.service_id,
            kind=kind,
            at=now,
            error_rate_pct=None if metrics is None else metrics.error_rate_pct,
            threshold_pct=self._policy.error_rate_threshold_pct,
            message=f"{prefix}{cfg.service_id}: {ISOLATION_MESSAGES[kind]}",
            expire_at=_expiry(now),
        )


def _over_trigger(m: MetricsSnapshot, pc: PolicyConfig) -> bool:
    checks: list[tuple[Any, float]] = [
        (m.cpu_pct, pc.cpu_target_pct),
        (m.p95_latency_ms, pc.latency_target_ms),
        (m.error_rate_pct, pc.error_rate_threshold_pct),
        (m.queue_backlog, pc.burst_backlog_count),
    ]
    return any(value is not None and value > limit for value, limit in checks)


def _expiry(now: datetime) -> datetime:
    return now + timedelta(days=t.SCALING_HISTORY_RETENTION_DAYS)


def guard_minute(schedule_time: datetime) -> datetime:
    """The decision clock of a run: its schedule time, to the minute."""
    return minute_of(schedule_time)
