"""Scaling orchestration: read through the ports, decide with the policy, act, record.

The calls (init, manual scale, health, the push path) are here; the minute's guard run is
:class:`functions.scaling.guard.ScaleGuard`, built here with the same ports."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from functions.scaling import budget
from functions.scaling.guard import ScaleGuard, expiry, read_metrics, require_service
from functions.scaling.policy import (
    DEFAULT_POLICY,
    PolicyConfig,
    in_flight,
    is_stale,
    manual_target,
    merge_config,
)
from functions.scaling.ports import Lease, ScalingPorts
from shared import deadline
from shared import thresholds as t
from shared.audit import Change
from shared.clock import minute_of
from shared.errors import BackendUnavailable, FailedPrecondition, NotFound
from shared.gcp.probe import probe
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
    ReportMetricsRequest,
    ReportMetricsResult,
    ScaleAction,
    ScaleGuardReport,
    ServiceConfig,
    ServiceDoc,
    ServiceHealth,
)
from shared.stale import LastKnown

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
        self._policy = policy
        self._lock_ttl_sec = lock_ttl_sec
        self._manual_wait_sec = manual_wait_sec
        self._in_flight_max_sec = in_flight_max_sec
        """An intent older than this was abandoned (its holder died mid-call): the
        operation timeout plus one guard interval for the request around it."""
        self._guard = ScaleGuard(
            ports,
            policy,
            lock_ttl_sec=lock_ttl_sec,
            in_flight_max_sec=in_flight_max_sec,
            # how long a guard run waits for its services' work (see the budget)
            wait_sec=budget.guard_wait_sec() if guard_wait_sec is None else guard_wait_sec,
        )
        self._registry_copy: LastKnown[str | None, list[ServiceDoc]] = LastKnown("service registry")

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
        lock = self._p.locks.lock(f"service:{req.service_id}")
        with lock.held(self._lock_ttl_sec, wait_sec=self._manual_wait_sec) as lease:
            if lease is None:
                raise BackendUnavailable(
                    f"a scale action on {req.service_id} is in progress: try again in a minute"
                )
            return self._manual_scale(req, change, lease)

    def _manual_scale(
        self, req: ManualScaleRequest, change: Change, lease: Lease
    ) -> ManualScaleResult:
        doc = require_service(self._p, req.service_id)
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
            expire_at=expiry(change.now),
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

    def health(
        self, service_id: str | None, now: datetime, stale_max_sec: float = 0.0
    ) -> HealthReport:
        """Each service's (or one's) health: its registry entry, probe and metrics. The
        registry is safe to answer stale (at most ``stale_max_sec`` old, marked so) when
        Firestore stalls: a read for people; the probes and metrics are read now
        (:mod:`shared.stale`; docs/reliability.md)."""
        answer = self._registry_copy.read(
            service_id, lambda: self._registry_docs(service_id), stale_max_sec
        )
        docs = answer.value
        health_of = deadline.in_context(lambda doc: self._health_of(doc, now))
        with ThreadPoolExecutor(max_workers=max(1, len(docs))) as pool:  # probes in parallel
            # under the call's budget (shared.deadline): a pool's threads do not inherit it
            services = list(pool.map(deadline.in_context(health_of), docs))
        return HealthReport(services=services, **answer.marks())

    def _registry_docs(self, service_id: str | None) -> list[ServiceDoc]:
        if service_id:
            return [require_service(self._p, service_id)]
        return self._p.registry.all_services()

    def _health_of(self, doc: ServiceDoc, now: datetime) -> ServiceHealth:
        cfg, state = doc.config, doc.state
        result = probe(cfg.health_url) if cfg.health_url else None
        metrics = read_metrics(self._p, cfg, now)
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
        require_service(self._p, req.service_id)
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
        """One scale-guard run (:meth:`functions.scaling.guard.ScaleGuard.run`). ``now`` is
        the run's minute (Cloud Scheduler's schedule time), so the cooldown is exact."""
        return self._guard.run(now, run_id)


def _over_trigger(m: MetricsSnapshot, pc: PolicyConfig) -> bool:
    checks: list[tuple[Any, float]] = [
        (m.cpu_pct, pc.cpu_target_pct),
        (m.p95_latency_ms, pc.latency_target_ms),
        (m.error_rate_pct, pc.error_rate_threshold_pct),
        (m.queue_backlog, pc.burst_backlog_count),
    ]
    return any(value is not None and value > limit for value, limit in checks)


def guard_minute(schedule_time: datetime) -> datetime:
    """The decision clock of a run: its schedule time, to the minute."""
    return minute_of(schedule_time)
