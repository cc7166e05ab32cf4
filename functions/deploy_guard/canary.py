"""The deploy guard's judging of live canaries: the minute monitor and the fast judge.

:class:`CanaryMonitor` advances a deployment by what a minute allows (begin once the new
revisions are ready, judge the minute that ended, step, pause or roll back), and between
the minute's checks rolls back on a conclusive breach (the fast judge's chain of 10 s
ticks). Every change is one transaction on the deployment
(:meth:`~functions.deploy_guard.ports.Deployments.update`), then applied through
:class:`functions.deploy_guard.traffic.TrafficWriter`.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

from functions.deploy_guard.policy.judge import fast_breaches, judge
from functions.deploy_guard.policy.phases import (
    begin,
    holds_environment,
    judged,
    next_tick,
    on_check,
    rollback,
    step_points,
    with_event,
)
from functions.deploy_guard.ports import DeployPorts
from functions.deploy_guard.traffic import PLATFORM_ERRORS, TrafficWriter
from shared import thresholds as t
from shared.clock import minute_of
from shared.errors import DependencyUnavailable
from shared.models.deploy import Analysis, DeploymentDoc, Phase, PlatformContext, RevisionWindow

log = logging.getLogger("pack391.deploy")


class MonitorIncomplete(Exception):
    """Some deployments raised during a monitor run (the others were advanced); the run
    is reported failed so Cloud Scheduler shows it."""


def _sum(windows: list[RevisionWindow]) -> RevisionWindow:
    """Counts added across services; p95 the worst of them."""
    fields = [f for f in RevisionWindow.model_fields if f != "p95_latency_ms"]
    total = {f: sum(int(getattr(w, f)) for w in windows) for f in fields}
    p95s = [w.p95_latency_ms for w in windows if w.p95_latency_ms is not None]
    return RevisionWindow(**total, p95_latency_ms=max(p95s) if p95s else None)


class CanaryMonitor:
    def __init__(self, ports: DeployPorts, traffic: TrafficWriter) -> None:
        self.p = ports
        self._traffic = traffic

    def monitor(self, now: datetime) -> list[DeploymentDoc]:
        """One run over every active deployment.

        A Firestore step that does not answer within its budget
        (:class:`~shared.errors.DependencyUnavailable`) stops the whole run there: the
        deployments not reached yet are not judged on a stalled store either, and the run
        is recorded as skipped. Each deployment's decision is one transaction that comes
        before any traffic change, so a stall before it changes nothing; a stall after a
        traffic change (recording ``appliedPercent``, settling, confirming) leaves the
        decided split recorded as wanted and not yet applied, which the next run pushes
        again (idempotent) and records before it judges anything (:meth:`_advance`)."""
        out, failed = [], []
        for deployment_id in self.p.store.active_ids():
            try:
                dep = self.step(deployment_id, now)
            except DependencyUnavailable:
                raise  # skipped: see above
            except Exception:  # one broken deployment must not stop the others
                log.exception("deploy monitor: deployment %s failed", deployment_id)
                failed.append(deployment_id)
                continue
            if dep is not None:
                out.append(dep)
        if failed:
            raise MonitorIncomplete(f"deployments not advanced: {', '.join(failed)}")
        return out

    def step(self, deployment_id: str, now: datetime) -> DeploymentDoc | None:
        """Advance one deployment by what this minute allows; None when it is not active."""
        dep = self.p.store.get(deployment_id)
        if dep is None or not holds_environment(dep):
            return dep
        try:
            return self._advance(dep, now)
        except PLATFORM_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("deployment %s: platform error: %s", deployment_id, error)
            noted = self.p.store.update(
                deployment_id,
                lambda d: with_event(d, now, "platform_error", error=error),
                None,
            )
            return noted[1] if noted else dep

    def _advance(self, dep: DeploymentDoc, now: datetime) -> DeploymentDoc:
        dep = self._traffic.apply(dep, now)
        if dep.applied_percent != dep.traffic_percent:
            return dep  # a newer decision is still being applied: judge nothing on it
        if dep.phase in (Phase.PENDING, Phase.VALIDATING):
            return self._begin(dep, now)
        if judged(dep):
            return self._check(dep, now)
        return dep

    def _begin(self, dep: DeploymentDoc, now: datetime) -> DeploymentDoc:
        shares = 0
        for target in dep.services:
            seen = self.p.splitter.observe(target.service, target.region)
            if seen.latest_ready != target.canary_revision:
                why = f"{target.service}: latest ready is {seen.latest_ready}"
                failed = with_event(
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

        def first_step(d: DeploymentDoc) -> DeploymentDoc | None:
            if d.phase not in (Phase.PENDING, Phase.VALIDATING):
                return None
            return begin(d.model_copy(update={"phase": Phase.VALIDATING}), shares, now)

        changed = self.p.store.update(dep.deployment_id, first_step, None)
        if changed is None:
            return dep
        return self._traffic.apply(changed[1], now)

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
        self, dep: DeploymentDoc, start: datetime, end: datetime, now: datetime, minute: bool
    ) -> Analysis:
        """The judge's verdict on [start, end), with what it judged: against the step's
        earlier minutes, and (``minute``: the minute monitor's) what the platform did."""
        canary, stable = self._windows(dep, start, end)
        platform: PlatformContext | None = None
        if minute:
            platform = (
                self.p.platform.context(start, end)
                if self.p.platform is not None
                else PlatformContext(window_start=start, window_end=end)
            )
        verdict, checks = judge(
            canary,
            stable,
            dep.baseline_p95_ms,
            points=step_points(dep, start),
            platform=platform,
        )
        return Analysis(
            at=now,
            window_start=start,
            step=dep.step,
            traffic_percent=dep.traffic_percent,
            verdict=verdict,
            checks=checks,
            canary=canary,
            stable=stable,
            platform=platform,
        )

    def _check(self, dep: DeploymentDoc, now: datetime) -> DeploymentDoc:
        window = minute_of(now) - timedelta(seconds=t.CANARY_CHECK_INTERVAL_SEC)
        if dep.last_checked_minute is not None and dep.last_checked_minute >= window:
            return dep
        end = window + timedelta(seconds=t.CANARY_CHECK_INTERVAL_SEC)
        analysis = self._analyse(dep, window, end, now, minute=True)

        def decide(d: DeploymentDoc) -> DeploymentDoc | None:
            if not judged(d) or d.step != dep.step:
                return None
            if d.last_checked_minute is not None and d.last_checked_minute >= window:
                return None  # another run judged this minute
            return on_check(d, analysis, now)

        changed = self.p.store.update(dep.deployment_id, decide, None)
        if changed is None:
            return self.p.store.get(dep.deployment_id) or dep
        return self._traffic.apply(changed[1], now)

    def tick(self, deployment_id: str, now: datetime) -> DeploymentDoc | None:
        """One link of the fast judge's chain: the next link is scheduled first (a crash
        here cannot end the chain early; the chain's task names make a repeat a no-op),
        then the breach check. The chain ends when the deployment frees its environment."""
        dep = self.p.store.get(deployment_id)
        if dep is None or not holds_environment(dep):
            return dep
        if self.p.chain is not None:
            self.p.chain.schedule(deployment_id, next_tick(now))
        return self.fast_check(deployment_id, now)

    def fast_check(self, deployment_id: str, now: datetime) -> DeploymentDoc | None:
        """Between the minute's checks: judge the window from the start of the previous
        minute to ``now`` and roll back on a conclusive breach only (no step, no failure
        count: those stay the minute monitor's). A pending split is applied first."""
        dep = self.p.store.get(deployment_id)
        if dep is None or not judged(dep):
            return dep
        if dep.applied_percent != dep.traffic_percent:
            return self.step(deployment_id, now)
        start = minute_of(now) - timedelta(seconds=t.CANARY_CHECK_INTERVAL_SEC)
        analysis = self._analyse(dep, start, now, now, minute=False)
        breached = fast_breaches(analysis.checks)
        if not breached:
            return dep

        def roll(d: DeploymentDoc) -> DeploymentDoc | None:
            if not judged(d) or d.step != dep.step:
                return None
            kept = [*d.analyses, analysis][-t.CANARY_ANALYSES_KEPT_COUNT :]
            return rollback(
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
            return self._traffic.apply(changed[1], now)
        except PLATFORM_ERRORS as exc:  # decided and recorded: the monitor re-applies it
            log.warning("deployment %s: rollback not applied yet: %s", deployment_id, exc)
            return changed[1]


def _fail(failed: DeploymentDoc, current: DeploymentDoc) -> DeploymentDoc | None:
    return failed if current.phase in (Phase.PENDING, Phase.VALIDATING) else None
