"""Deploy guard orchestration: the calls (gates, start, pin, rollback, controls, status),
with the judging in :mod:`functions.deploy_guard.canary` and the platform writes in
:mod:`functions.deploy_guard.traffic`.

Exactly-once progress: every decision is one Firestore transaction on the deployment
document (:meth:`~functions.deploy_guard.ports.Deployments.update`) that re-reads the
state and declines when another run already judged the same minute or moved the phase.
Traffic is an intent: the transaction records the wanted share (``trafficPercent``,
bumping ``generation``), then the platform is told and ``appliedPercent`` confirmed; a
crash in between leaves the two different, and the next run re-applies the same split
(idempotent) before doing anything else.

Overlapping writers (the monitor stepping while an admin rolls back): a platform write
carries the etag read before its generation was checked, so an older decision's write
cannot land over a newer one's, and ``appliedPercent`` is recorded only by a transaction
that finds the generation unchanged. A final phase keeps its environment until the
platform is seen serving the final split; every monitor run re-asserts it until then.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from functions.deploy_guard.canary import CanaryMonitor
from functions.deploy_guard.policy.gates import (
    auth_gate,
    auth_window_start,
    endpoint_gate,
    error_budget_gate,
    gates_passed,
    index_gate,
    payment_gate,
    release_scopes,
    report_usable,
    services_to_probe,
    stuck_payout_cutoff,
    system_health_gate,
    token_gate,
)
from functions.deploy_guard.policy.phases import (
    holds_environment,
    next_tick,
    on_control,
    rollback,
    snapshot_usable,
    with_event,
)
from functions.deploy_guard.ports import (
    DeployPorts,
    RevisionPush,
    TrafficConflict,
    TrafficNotApplied,
)
from functions.deploy_guard.traffic import TrafficWriter
from shared import thresholds as t
from shared.audit import Change
from shared.clock import new_id
from shared.errors import DependencyUnavailable, FailedPrecondition, InvalidInput, NotFound
from shared.firestore import DEFAULT_DATABASE
from shared.gcp.cloudrun import each_in_parallel
from shared.gcp.probe import probe
from shared.models.deploy import (
    ACTIVE_PHASES,
    ControlRequest,
    DeploymentDoc,
    DeploymentList,
    DeploymentStatus,
    GateResult,
    Phase,
    PinnedService,
    PinTrafficRequest,
    PinTrafficResult,
    RevisionMetricsRequest,
    RevisionMetricsResult,
    ServiceTarget,
    StartRequest,
    StartResult,
    StatusRequest,
    TrafficSnapshot,
    ValidateRequest,
    ValidationReport,
)
from shared.models.scaling import ServiceDoc
from shared.models.slo import SloAction

log = logging.getLogger("pack391.deploy")


def load_index_specs(path: Path) -> list[dict[str, Any]]:
    """The indexes ``firestore.indexes.json`` declares (what the index gate checks)."""
    specs: list[dict[str, Any]] = json.loads(path.read_text())["indexes"]
    return specs


class DeployGuard:
    """The deploy guard's calls. The minute monitor and the fast judge are
    :class:`~functions.deploy_guard.canary.CanaryMonitor`, the platform writes
    :class:`~functions.deploy_guard.traffic.TrafficWriter`, both on the same ports."""

    def __init__(self, ports: DeployPorts) -> None:
        self.p = ports
        self._traffic = TrafficWriter(ports)
        self._canary = CanaryMonitor(ports, self._traffic)

    # ------------------------------------------------------------ gates

    def validate(self, req: ValidateRequest, change: Change) -> ValidationReport:
        """Read what the seven gates judge (registry, probes, payouts, wallets, auth events,
        indexes, endpoints, the budgets' deploy freeze); the verdicts are the policy's."""
        now = change.now
        services = self.p.gates.services()
        healthy = {
            d.config.service_id: probe(d.config.health_url or "", t.DEPLOY_PROBE_TIMEOUT_SEC).ok
            for d in services_to_probe(services)
        }
        stuck = self.p.gates.stuck_payouts(stuck_payout_cutoff(now))
        checked, mismatches = self.p.gates.wallet_mismatches(t.DEPLOY_WALLET_SAMPLE_COUNT)
        auth = self.p.business.counts(None, auth_window_start(now), now)["auth_failure"]
        wanted = load_index_specs(self.p.index_file)
        missing = self.p.gates.missing_indexes(self.p.project, DEFAULT_DATABASE, wanted)
        endpoints = {url: probe(url, t.DEPLOY_PROBE_TIMEOUT_SEC) for url in self.p.probe_urls}
        gates = [
            system_health_gate(services, healthy),
            payment_gate(services, healthy, stuck),
            token_gate(checked, mismatches),
            auth_gate(*auth),
            index_gate(len(wanted), missing),
            endpoint_gate(endpoints),
            _error_budget(self.p, req.services or list(self.p.default_services), services, now),
        ]
        report = ValidationReport(
            report_id=new_id(now),
            version=req.version,
            environment=req.environment,
            passed=gates_passed(gates),
            gates=gates,
            at=now,
            actor_uid=change.actor_uid,
        )
        self.p.store.save_report(report, change)
        return report

    # ------------------------------------------------------------ start

    def _targets(
        self, names: list[str] | None, snapshot: TrafficSnapshot | None
    ) -> list[ServiceTarget]:
        """Stable: the snapshot's revision (what served before the deploy, whatever the
        deploy did to traffic since), else the revision serving most; canary: the latest
        ready revision."""
        services = names or list(self.p.default_services)
        if not services:
            raise InvalidInput("services", "no services given and none configured")
        targets = []
        for name in services:
            seen, serving = self._traffic.serving(name)
            stable = (snapshot.services.get(name) if snapshot else None) or serving
            canary = seen.latest_ready
            if canary is None or canary == stable:
                hint = (
                    ""
                    if snapshot and name in snapshot.services
                    else " (a deploy that moves all traffic to its new revision, as "
                    "firebase deploy does, needs pack391 deploy pin-traffic first: it "
                    "records the stable revision)"
                )
                raise FailedPrecondition(
                    f"service {name} has no new revision: {stable} is the latest ready "
                    f"(deploy one; on the local stack: pack391 deploy revision {name})" + hint
                )
            targets.append(
                ServiceTarget(
                    service=name,
                    region=self.p.region,
                    stable_revision=stable,
                    canary_revision=canary,
                )
            )
        return targets

    def start(self, req: StartRequest, change: Change) -> StartResult:
        now = change.now
        report = self.p.store.latest_report(req.version, req.environment)
        refusal = report_usable(report, req.version, req.environment, now)
        if refusal is not None and not req.force:
            raise FailedPrecondition(f"{refusal}: validate first, or force with a reason")
        if req.force and req.reason is None:
            raise InvalidInput("reason", "a forced start needs a reason")
        snapshot = self.p.store.snapshot(req.environment)
        if snapshot is not None and not snapshot_usable(snapshot, now):
            snapshot = None
        dep = DeploymentDoc(
            deployment_id=new_id(now),
            version=req.version,
            environment=req.environment,
            phase=Phase.PENDING,
            steps_pct=list(t.CANARY_STEPS_PCT),
            applied_percent=0,
            services=self._targets(req.services, snapshot),
            bake_sec=t.CANARY_BAKE_SEC if req.bake_sec is None else req.bake_sec,
            min_requests_per_step=(
                t.CANARY_MIN_REQUESTS_PER_STEP
                if req.min_requests_per_step is None
                else req.min_requests_per_step
            ),
            report_id=report.report_id if report else None,
            forced=req.force and refusal is not None,
            reason=req.reason,
            created_by=change.actor_uid,
            created_at=now,
            updated_at=now,
        )
        dep = with_event(
            dep,
            now,
            "created",
            forced=dep.forced,
            refusal=refusal,
            snapshotAt=snapshot.taken_at.isoformat() if snapshot else None,
        )
        created = self.p.store.create(dep, change, consume_snapshot=snapshot is not None)
        if isinstance(created, str):
            raise FailedPrecondition(
                f"deployment {created} is active in {req.environment}", activeDeploymentId=created
            )
        after = self._canary.step(dep.deployment_id, now)
        current = after or dep
        if self.p.chain is not None and holds_environment(current):
            try:
                self.p.chain.schedule(dep.deployment_id, next_tick(now))
            except DependencyUnavailable as exc:
                # the deployment is made and at its first step: the minute monitor judges
                # it; only the faster chain between minutes is missing, so say so in the
                # log instead of answering UNAVAILABLE for a start that happened
                log.warning("deployment %s: fast judge not started: %s", dep.deployment_id, exc)
        return StartResult(
            deployment_id=dep.deployment_id,
            phase=current.phase,
            traffic_percent=current.traffic_percent,
        )

    # ------------------------------------------------------------ humans

    def rollback(self, deployment_id: str, reason: str, change: Change) -> DeploymentDoc:
        now = change.now

        def roll(d: DeploymentDoc) -> DeploymentDoc | None:
            if d.phase not in ACTIVE_PHASES:
                raise FailedPrecondition(f"deployment {deployment_id} is {d.phase.value}")
            if d.phase == Phase.ROLLING_BACK:
                return None
            return rollback(d, now, reason, by=change.actor_uid)

        changed = self.p.store.update(deployment_id, roll, change)
        dep = changed[1] if changed else self.p.store.get(deployment_id)
        if dep is None:
            raise NotFound(f"no deployment {deployment_id}")
        return self._traffic.apply(dep, now)

    def control(self, req: ControlRequest, change: Change) -> DeploymentDoc:
        if req.action.value == "abort":
            return self.rollback(req.deployment_id, req.reason, change)
        now = change.now

        def act(d: DeploymentDoc) -> DeploymentDoc | None:
            try:
                return on_control(d, req.action, req.reason, now)
            except ValueError as exc:
                raise FailedPrecondition(str(exc)) from None

        changed = self.p.store.update(req.deployment_id, act, change)
        if changed is None:
            raise NotFound(f"no deployment {req.deployment_id}")
        return self._traffic.apply(changed[1], now)

    def status(self, req: StatusRequest) -> DeploymentStatus | DeploymentList:
        if req.deployment_id is None:
            recent = self.p.store.recent(req.environment, req.limit)
            return DeploymentList(deployments=[_status(d) for d in recent])
        dep = self.p.store.get(req.deployment_id)
        if dep is None:
            raise NotFound(f"no deployment {req.deployment_id}")
        return _status(dep)

    def report_revision(self, req: RevisionMetricsRequest, now: datetime) -> RevisionMetricsResult:
        """The local push path: one revision's sample for the current minute."""
        if not isinstance(self.p.metrics, RevisionPush):
            raise FailedPrecondition(
                "this guard reads per-revision metrics from Cloud Monitoring; nothing to push"
            )
        p95 = None if req.p95_latency_ms is None else float(req.p95_latency_ms)
        minute = self.p.metrics.record(req.revision, req.requests, req.errors, p95, now)
        return RevisionMetricsResult(revision=req.revision, minute=minute)

    def pin(self, req: PinTrafficRequest, change: Change) -> PinTrafficResult:
        """Pin each service to the revision serving most of its traffic, so the next deploy
        lands a new revision at 0 %. Refused while a deployment is active."""
        recent = self.p.store.recent(req.environment, 10)
        active = [d for d in recent if holds_environment(d)]
        if active:
            raise FailedPrecondition(
                f"deployment {active[0].deployment_id} is active in {req.environment}"
            )
        names = req.services or list(self.p.default_services)
        if not names:
            raise InvalidInput("services", "no services given and none configured")

        def pin_one(name: str) -> PinnedService:
            seen, stable = self._traffic.serving(name)
            serving = self.p.splitter.apply(name, self.p.region, {stable: 100}, seen.etag)
            if serving != {stable: 100}:
                raise TrafficNotApplied(f"{name} serves {serving}, not {{{stable}: 100}}")
            return PinnedService(service=name, revision=stable, before=seen.shares)

        try:
            pinned = each_in_parallel(pin_one, names)
        except TrafficConflict as exc:
            raise FailedPrecondition(f"a service changed while it was pinned: {exc}") from None
        snapshot = TrafficSnapshot(
            environment=req.environment,
            services={p.service: p.revision for p in pinned},
            taken_at=change.now,
            taken_by=change.actor_uid,
        )
        self.p.store.save_snapshot(snapshot, change)
        return PinTrafficResult(pinned=pinned, snapshot_at=snapshot.taken_at)

    # ------------------------------------------------------------ judging

    def monitor(self, now: datetime) -> list[DeploymentDoc]:
        """One run over every active deployment (:meth:`CanaryMonitor.monitor`)."""
        return self._canary.monitor(now)

    def step(self, deployment_id: str, now: datetime) -> DeploymentDoc | None:
        """Advance one deployment by what this minute allows (:meth:`CanaryMonitor.step`)."""
        return self._canary.step(deployment_id, now)

    def tick(self, deployment_id: str, now: datetime) -> DeploymentDoc | None:
        """One link of the fast judge's chain (:meth:`CanaryMonitor.tick`)."""
        return self._canary.tick(deployment_id, now)

    def fast_check(self, deployment_id: str, now: datetime) -> DeploymentDoc | None:
        """The fast judge's breach check (:meth:`CanaryMonitor.fast_check`)."""
        return self._canary.fast_check(deployment_id, now)


def _error_budget(
    ports: DeployPorts, release: list[str], registry: list[ServiceDoc], now: datetime
) -> GateResult:
    """The error budget gate on the recorded actions (one Firestore read); a freeze it
    passes in shadow mode is counted where the evaluator reports it, and logged."""
    snapshot = ports.budgets.actions() if ports.budgets is not None else None
    gate = error_budget_gate(snapshot, release, release_scopes(release, registry), now)
    if gate.evidence.get("wouldRefuse") and ports.budgets is not None:
        log.info("slo shadow: deploy_freeze %s", gate.evidence["detail"])
        ports.budgets.count_shadow(SloAction.DEPLOY_FREEZE, now)
    return gate


def _status(dep: DeploymentDoc) -> DeploymentStatus:
    return DeploymentStatus.model_validate(dep.model_dump())
