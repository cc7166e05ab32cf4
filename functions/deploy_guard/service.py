"""Deploy guard orchestration: gates, the deployment state machine, traffic.

Exactly-once progress: every decision is one Firestore transaction on the deployment
document (:meth:`DeployStore.update`) that re-reads the state and declines when another
run already judged the same minute or moved the phase. Traffic is an intent: the
transaction records the wanted share (``trafficPercent``, bumping ``generation``), then
the platform is told and ``appliedPercent`` confirmed; a crash in between leaves the two
different, and the next run re-applies the same split (idempotent) before doing anything
else.

Overlapping writers (the monitor stepping while an admin rolls back): a platform write
carries the etag read before its generation was checked, so an older decision's write
cannot land over a newer one's, and ``appliedPercent`` is recorded only by a transaction
that finds the generation unchanged. A final phase keeps its environment until the
platform is seen serving the final split; every monitor run re-asserts it until then.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from functions.deploy_guard import policy
from functions.deploy_guard.adapters import (
    PLATFORM_ERRORS,
    BusinessMetrics,
    DeployStore,
    GateReader,
    JudgeChain,
    Observed,
    PushedRevisionMetrics,
    RevisionMetrics,
    TrafficConflict,
    TrafficNotApplied,
    TrafficSplitter,
    load_index_specs,
)
from shared import thresholds as t
from shared.audit import Change
from shared.clock import minute_of, new_id
from shared.errors import FailedPrecondition, InvalidInput, NotFound
from shared.gcp.probe import probe
from shared.models.deploy import (
    ACTIVE_PHASES,
    Analysis,
    ControlRequest,
    DeploymentDoc,
    DeploymentList,
    DeploymentStatus,
    Phase,
    PinnedService,
    PinTrafficRequest,
    PinTrafficResult,
    RevisionMetricsRequest,
    RevisionMetricsResult,
    RevisionWindow,
    ServiceTarget,
    StartRequest,
    StartResult,
    StatusRequest,
    TrafficSnapshot,
    ValidateRequest,
    ValidationReport,
)

log = logging.getLogger("pack391.deploy")

TRAFFIC_WRITE_ATTEMPTS = 3
"""Conditional traffic writes one call makes before it leaves the split to the next
monitor run (each refused write means another writer changed the service meanwhile)."""


class MonitorIncomplete(Exception):
    """Some deployments raised during a monitor run (the others were advanced); the run
    is reported failed so Cloud Scheduler shows it."""


@dataclass(frozen=True)
class DeployPorts:
    store: DeployStore
    splitter: TrafficSplitter
    metrics: RevisionMetrics
    business: BusinessMetrics
    gates: GateReader
    project: str
    region: str
    default_services: tuple[str, ...]
    probe_urls: tuple[str, ...]
    index_file: Path
    chain: JudgeChain | None = None
    """The fast judge's schedule (a Cloud Tasks chain deployed, timers locally); None:
    only the minute monitor judges."""


def _sum(windows: list[RevisionWindow]) -> RevisionWindow:
    """Counts added across services; p95 the worst of them."""
    fields = [f for f in RevisionWindow.model_fields if f != "p95_latency_ms"]
    total = {f: sum(int(getattr(w, f)) for w in windows) for f in fields}
    p95s = [w.p95_latency_ms for w in windows if w.p95_latency_ms is not None]
    return RevisionWindow(**total, p95_latency_ms=max(p95s) if p95s else None)


class DeployGuard:
    def __init__(self, ports: DeployPorts) -> None:
        self.p = ports

    # ------------------------------------------------------------ gates

    def validate(self, req: ValidateRequest, change: Change) -> ValidationReport:
        """Read what the six gates judge (registry, health probes, payouts, wallets, auth
        events, indexes, endpoints); the verdicts are the policy's."""
        now = change.now
        services = self.p.gates.services()
        healthy = {
            d.config.service_id: probe(d.config.health_url or "", t.DEPLOY_PROBE_TIMEOUT_SEC).ok
            for d in policy.services_to_probe(services)
        }
        stuck = self.p.gates.stuck_payouts(policy.stuck_payout_cutoff(now))
        checked, mismatches = self.p.gates.wallet_mismatches(t.DEPLOY_WALLET_SAMPLE_COUNT)
        auth = self.p.business.counts(None, policy.auth_window_start(now), now)["auth_failure"]
        wanted = load_index_specs(self.p.index_file)
        missing = self.p.gates.missing_indexes(self.p.project, wanted)
        endpoints = {url: probe(url, t.DEPLOY_PROBE_TIMEOUT_SEC) for url in self.p.probe_urls}
        gates = [
            policy.system_health_gate(services, healthy),
            policy.payment_gate(services, healthy, stuck),
            policy.token_gate(checked, mismatches),
            policy.auth_gate(*auth),
            policy.index_gate(len(wanted), missing),
            policy.endpoint_gate(endpoints),
        ]
        report = ValidationReport(
            report_id=new_id(now),
            version=req.version,
            environment=req.environment,
            passed=policy.gates_passed(gates),
            gates=gates,
            at=now,
            actor_uid=change.actor_uid,
        )
        self.p.store.save_report(report, change)
        return report

    # ------------------------------------------------------------ start

    def _serving(self, name: str) -> tuple[Observed, str]:
        """What the platform holds for ``name``, and the revision serving most of it."""
        seen = self.p.splitter.observe(name, self.p.region)
        if not seen.shares:
            raise FailedPrecondition(f"service {name} serves no traffic (unknown service?)")
        return seen, max(sorted(seen.shares), key=lambda rev: seen.shares[rev])

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
            seen, serving = self._serving(name)
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
        refusal = policy.report_usable(report, req.version, req.environment, now)
        if refusal is not None and not req.force:
            raise FailedPrecondition(f"{refusal}: validate first, or force with a reason")
        if req.force and req.reason is None:
            raise InvalidInput("reason", "a forced start needs a reason")
        snapshot = self.p.store.snapshot(req.environment)
        if snapshot is not None and not policy.snapshot_usable(snapshot, now):
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
        dep = policy.with_event(
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
        after = self.step(dep.deployment_id, now)
        current = after or dep
        if self.p.chain is not None and policy.holds_environment(current):
            self.p.chain.schedule(dep.deployment_id, policy.next_tick(now))
        return StartResult(
            deployment_id=dep.deployment_id,
            phase=current.phase,
            traffic_percent=current.traffic_percent,
        )

    # ------------------------------------------------------------ monitor

    def monitor(self, now: datetime) -> list[DeploymentDoc]:
        """One run over every active deployment."""
        out, failed = [], []
        for deployment_id in self.p.store.active_ids():
            try:
                dep = self.step(deployment_id, now)
            except Exception:  # one broken deployment must not stop the others
                log.exception("deploy monitor: deployment %s failed", deployment_id)
                failed.append(deployment_id)
                continue
            if dep is not None:
                out.append(dep)
        if failed:
            raise MonitorIncomplete(f"deployments not advanced: {', '.join(failed)}")
        return out

    def _push(self, dep: DeploymentDoc) -> bool:
        """Send ``dep``'s split to its services for ``dep.generation``, conditionally.

        Each service's etag is read *before* the generation is checked, and the write
        carries it: a later decision commits a new generation before it reads its own etag,
        so whichever write lands second is refused by the platform, and only the newest
        generation retries. False: a newer decision owns the platform (this one stops)."""
        pending = list(dep.services)
        for _attempt in range(TRAFFIC_WRITE_ATTEMPTS):
            etags = dict(
                _parallel(
                    lambda t: (t.service, self.p.splitter.observe(t.service, t.region).etag),
                    pending,
                )
            )
            if self.p.store.generation(dep.deployment_id) != dep.generation:
                return False

            def write(
                target: ServiceTarget, etags: dict[str, str | None] = etags
            ) -> ServiceTarget | None:
                wanted = policy.split(target, dep.traffic_percent)
                try:
                    serving = self.p.splitter.apply(
                        target.service, target.region, wanted, etags[target.service]
                    )
                except TrafficConflict:
                    return target
                if serving != wanted:
                    raise TrafficNotApplied(f"{target.service} serves {serving}, not {wanted}")
                return None

            conflicted = [t for t in _parallel(write, pending) if t is not None]
            if not conflicted:
                return True
            pending = conflicted
        names = ", ".join(t.service for t in pending)
        raise TrafficConflict(f"{names} changed under every one of {TRAFFIC_WRITE_ATTEMPTS} writes")

    def _apply(self, dep: DeploymentDoc, now: datetime) -> DeploymentDoc:
        """Tell the platform the deployment's split (if not confirmed yet), then settle; a
        final split is confirmed on the platform (:meth:`_reconcile`)."""
        if dep.applied_percent != dep.traffic_percent:
            marked = None
            if self._push(dep):
                marked = self.p.store.mark_applied(
                    dep.deployment_id, dep.generation, dep.traffic_percent, now
                )
            if marked is None:  # a newer decision took over; it applies its own split
                log.info("deployment %s: split %s superseded", dep.deployment_id, dep.generation)
                return self.p.store.get(dep.deployment_id) or dep
            dep = marked
        if policy.settled(dep, now) is not None:
            changed = self.p.store.update(dep.deployment_id, lambda d: policy.settled(d, now), None)
            dep = changed[1] if changed else (self.p.store.get(dep.deployment_id) or dep)
        if policy.needs_confirmation(dep):
            try:
                dep = self._reconcile(dep, now)
            except PLATFORM_ERRORS as exc:  # the split is decided: the monitor confirms it
                log.warning("deployment %s: not confirmed yet: %s", dep.deployment_id, exc)
        return dep

    def _reconcile(self, dep: DeploymentDoc, now: datetime) -> DeploymentDoc:
        """A final deployment: read what each service serves (``traffic_statuses``), send
        the final split again where it differs, and confirm once every service serves it
        (which frees the environment). Until then every monitor run comes back here."""

        def reassert(target: ServiceTarget) -> str | None:
            wanted = policy.split(target, dep.traffic_percent)
            seen = self.p.splitter.observe(target.service, target.region)
            if seen.shares == wanted:
                return None
            log.warning(
                "deployment %s is %s but %s serves %s: sending %s again",
                dep.deployment_id,
                dep.phase.value,
                target.service,
                seen.shares,
                wanted,
            )
            serving = self.p.splitter.apply(target.service, target.region, wanted, seen.etag)
            if serving != wanted:
                raise TrafficNotApplied(f"{target.service} serves {serving}, not {wanted}")
            return target.service

        reasserted = [s for s in _parallel(reassert, list(dep.services)) if s is not None]
        changed = self.p.store.update(
            dep.deployment_id, lambda d: policy.confirmed(d, now, reasserted), None
        )
        return changed[1] if changed else dep

    def step(self, deployment_id: str, now: datetime) -> DeploymentDoc | None:
        """Advance one deployment by what this minute allows; None when it is not active."""
        dep = self.p.store.get(deployment_id)
        if dep is None or not policy.holds_environment(dep):
            return dep
        try:
            return self._advance(dep, now)
        except PLATFORM_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("deployment %s: platform error: %s", deployment_id, error)
            noted = self.p.store.update(
                deployment_id,
                lambda d: policy.with_event(d, now, "platform_error", error=error),
                None,
            )
            return noted[1] if noted else dep

    def _advance(self, dep: DeploymentDoc, now: datetime) -> DeploymentDoc:
        dep = self._apply(dep, now)
        if dep.applied_percent != dep.traffic_percent:
            return dep  # a newer decision is still being applied: judge nothing on it
        if dep.phase in (Phase.PENDING, Phase.VALIDATING):
            return self._begin(dep, now)
        if dep.phase in (Phase.PROGRESSING, Phase.PROMOTING):
            return self._check(dep, now)
        return dep

    def _begin(self, dep: DeploymentDoc, now: datetime) -> DeploymentDoc:
        shares = 0
        for target in dep.services:
            seen = self.p.splitter.observe(target.service, target.region)
            if seen.latest_ready != target.canary_revision:
                why = f"{target.service}: latest ready is {seen.latest_ready}"
                failed = policy.with_event(
                    dep.model_copy(
                        update={
                            "phase": Phase.FAILED,
                            "traffic_percent": 0,
                            "ended_at": now,
                            "confirmed_at": now,  # no traffic was moved: nothing to confirm
                        }
                    ),
                    now,
                    "failed",
                    why=why,
                )
                self.p.store.update(dep.deployment_id, functools.partial(_fail, failed), None)
                return failed
            shares = max(shares, seen.shares.get(target.canary_revision or "", 0))

        def begin(d: DeploymentDoc) -> DeploymentDoc | None:
            if d.phase not in (Phase.PENDING, Phase.VALIDATING):
                return None
            return policy.begin(d.model_copy(update={"phase": Phase.VALIDATING}), shares, now)

        changed = self.p.store.update(dep.deployment_id, begin, None)
        if changed is None:
            return dep
        return self._apply(changed[1], now)

    def _windows(
        self, dep: DeploymentDoc, start: datetime, end: datetime
    ) -> tuple[RevisionWindow, RevisionWindow]:
        """(canary, stable) over [start, end), platform and business metrics of every
        service added up."""
        canary, stable = [], []
        for target in dep.services:
            c_rev, s_rev = target.canary_revision or "", target.stable_revision
            m = self.p.metrics
            canary += [
                m.window(target.service, target.region, c_rev, start, end),
                self.p.business.window(c_rev, start, end),
            ]
            stable += [
                m.window(target.service, target.region, s_rev, start, end),
                self.p.business.window(s_rev, start, end),
            ]
        return _sum(canary), _sum(stable)

    def _analyse(
        self, dep: DeploymentDoc, start: datetime, end: datetime, now: datetime
    ) -> Analysis:
        """The judge's verdict on [start, end), with what it judged."""
        canary, stable = self._windows(dep, start, end)
        verdict, checks = policy.judge(canary, stable, dep.baseline_p95_ms)
        return Analysis(
            at=now,
            window_start=start,
            step=dep.step,
            traffic_percent=dep.traffic_percent,
            verdict=verdict,
            checks=checks,
            canary=canary,
            stable=stable,
        )

    def _check(self, dep: DeploymentDoc, now: datetime) -> DeploymentDoc:
        window = minute_of(now) - timedelta(seconds=t.CANARY_CHECK_INTERVAL_SEC)
        if dep.last_checked_minute is not None and dep.last_checked_minute >= window:
            return dep
        end = window + timedelta(seconds=t.CANARY_CHECK_INTERVAL_SEC)
        analysis = self._analyse(dep, window, end, now)

        def judged(d: DeploymentDoc) -> DeploymentDoc | None:
            if d.phase not in (Phase.PROGRESSING, Phase.PROMOTING):
                return None
            if d.last_checked_minute is not None and d.last_checked_minute >= window:
                return None  # another run judged this minute
            return policy.on_check(d, analysis, now)

        changed = self.p.store.update(dep.deployment_id, judged, None)
        if changed is None:
            return self.p.store.get(dep.deployment_id) or dep
        return self._apply(changed[1], now)

    # ------------------------------------------------------------ humans

    def rollback(self, deployment_id: str, reason: str, change: Change) -> DeploymentDoc:
        now = change.now

        def roll(d: DeploymentDoc) -> DeploymentDoc | None:
            if d.phase not in ACTIVE_PHASES:
                raise FailedPrecondition(f"deployment {deployment_id} is {d.phase.value}")
            if d.phase == Phase.ROLLING_BACK:
                return None
            return policy.rollback(d, now, reason, by=change.actor_uid)

        changed = self.p.store.update(deployment_id, roll, change)
        dep = changed[1] if changed else self.p.store.get(deployment_id)
        if dep is None:
            raise NotFound(f"no deployment {deployment_id}")
        return self._apply(dep, now)

    def control(self, req: ControlRequest, change: Change) -> DeploymentDoc:
        if req.action.value == "abort":
            return self.rollback(req.deployment_id, req.reason, change)
        now = change.now

        def act(d: DeploymentDoc) -> DeploymentDoc | None:
            try:
                return policy.on_control(d, req.action, req.reason, now)
            except ValueError as exc:
                raise FailedPrecondition(str(exc)) from None

        changed = self.p.store.update(req.deployment_id, act, change)
        if changed is None:
            raise NotFound(f"no deployment {req.deployment_id}")
        return self._apply(changed[1], now)

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
        if not isinstance(self.p.metrics, PushedRevisionMetrics):
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
        active = [d for d in recent if policy.holds_environment(d)]
        if active:
            raise FailedPrecondition(
                f"deployment {active[0].deployment_id} is active in {req.environment}"
            )
        names = req.services or list(self.p.default_services)
        if not names:
            raise InvalidInput("services", "no services given and none configured")

        def pin_one(name: str) -> PinnedService:
            seen, stable = self._serving(name)
            serving = self.p.splitter.apply(name, self.p.region, {stable: 100}, seen.etag)
            if serving != {stable: 100}:
                raise TrafficNotApplied(f"{name} serves {serving}, not {{{stable}: 100}}")
            return PinnedService(service=name, revision=stable, before=seen.shares)

        try:
            pinned = _parallel(pin_one, names)
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

    # ------------------------------------------------------------ fast judge

    def tick(self, deployment_id: str, now: datetime) -> DeploymentDoc | None:
        """One link of the fast judge's chain: the next link is scheduled first (a crash
        here cannot end the chain early; the chain's task names make a repeat a no-op),
        then the breach check. The chain ends when the deployment frees its environment."""
        dep = self.p.store.get(deployment_id)
        if dep is None or not policy.holds_environment(dep):
            return dep
        if self.p.chain is not None:
            self.p.chain.schedule(deployment_id, policy.next_tick(now))
        return self.fast_check(deployment_id, now)

    def fast_check(self, deployment_id: str, now: datetime) -> DeploymentDoc | None:
        """Between the minute's checks: judge the window from the start of the previous
        minute to ``now`` and roll back on a conclusive breach only (no step, no failure
        count: those stay the minute monitor's). A pending split is applied first."""
        dep = self.p.store.get(deployment_id)
        if dep is None or dep.phase not in (Phase.PROGRESSING, Phase.PROMOTING):
            return dep
        if dep.applied_percent != dep.traffic_percent:
            return self.step(deployment_id, now)
        start = minute_of(now) - timedelta(seconds=t.CANARY_CHECK_INTERVAL_SEC)
        analysis = self._analyse(dep, start, now, now)
        breached = policy.fast_breaches(analysis.checks)
        if not breached:
            return dep

        def roll(d: DeploymentDoc) -> DeploymentDoc | None:
            if d.phase not in (Phase.PROGRESSING, Phase.PROMOTING) or d.step != dep.step:
                return None
            kept = [*d.analyses, analysis][-t.CANARY_ANALYSES_KEPT_COUNT :]
            return policy.rollback(
                d.model_copy(update={"analyses": kept}),
                now,
                f"canary breached {', '.join(breached)}",
                checks=breached,
                fast=True,
                windowStart=start.isoformat(),
            )

        changed = self.p.store.update(deployment_id, roll, None)
        if changed is None:
            return self.p.store.get(deployment_id)
        try:
            return self._apply(changed[1], now)
        except PLATFORM_ERRORS as exc:  # decided and recorded: the monitor re-applies it
            log.warning("deployment %s: rollback not applied yet: %s", deployment_id, exc)
            return changed[1]


_T = TypeVar("_T")
_R = TypeVar("_R")


def _parallel(work: Callable[[_T], _R], items: list[_T]) -> list[_R]:
    """``work`` over ``items`` at once (one thread each, at most 16): a deployment's
    services are updated in parallel, so a rollback of N services takes one Cloud Run
    operation's time, not N. The first exception is raised after all have finished."""
    if len(items) <= 1:
        return [work(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        futures = [pool.submit(work, i) for i in items]
        return [f.result() for f in futures]


def _fail(failed: DeploymentDoc, current: DeploymentDoc) -> DeploymentDoc | None:
    return failed if current.phase in (Phase.PENDING, Phase.VALIDATING) else None


def _status(dep: DeploymentDoc) -> DeploymentStatus:
    return DeploymentStatus.model_validate(dep.model_dump())
