"""The scale guard's run: every service in parallel, each under its own lock.

One run (:meth:`ScaleGuard.run`): the run's lock, then every service at once
(:func:`shared.gcp.cloudrun.in_parallel`): read the service's state and metrics through
the ports, decide with the policy, record the intent, call the scaler, then save the
state, the decision, an isolation event and its alert in one transaction. Separate from
:mod:`functions.scaling.service` (the calls: init, manual scale, health, the push path),
which builds it and hands it the same ports.

Under a stall (:mod:`shared.deadline`): each Firestore step of a run (the registry, a
service's document, its intent, its outcome) waits at most :func:`shared.firestore.step`'s
budget, and a step that does not answer stops the run where it is
(:class:`~shared.errors.DependencyUnavailable`: the edge records the run as skipped).
Nothing is decided on data that was not read: no registry, no service's document, no
decision; a stall before the intent is recorded, no platform call. A stall after the
platform call (the outcome's transaction) leaves the service's intent pending with the
platform at the new count; the next runs hold the service until the intent is older than
``in_flight_max_sec``, then decide from what the platform holds (:meth:`ScaleGuard._guard_one`).
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

import redis
from google.api_core import exceptions as gexc

from functions.scaling.policy import (
    ISOLATION_MESSAGES,
    Decision,
    PolicyConfig,
    decide,
    in_flight,
    isolation_alert,
    state_after,
)
from functions.scaling.ports import Lease, ScalingPorts
from shared import deadline
from shared import thresholds as t
from shared.errors import DependencyUnavailable, NotFound
from shared.firestore import step
from shared.gcp.cloudrun import in_parallel
from shared.models.scaling import (
    DecisionDoc,
    MetricsSnapshot,
    PendingAction,
    PlatformAnswer,
    ScaleAction,
    ScaleGuardReport,
    ScalingEventDoc,
    ServiceConfig,
    ServiceDoc,
    ServiceState,
)

log = logging.getLogger("pack391.scaling")


def expiry(now: datetime) -> datetime:
    """When a decision or event recorded at ``now`` expires (the TTL policy's field)."""
    return now + timedelta(days=t.SCALING_HISTORY_RETENTION_DAYS)


def require_service(ports: ScalingPorts, service_id: str) -> ServiceDoc:
    """The service's document, or ``NOT_FOUND`` naming the call that creates it."""
    with step("scaling registry"):
        doc = ports.registry.get(service_id)
    if doc is None:
        raise NotFound(f"no service {service_id}: run pack391_initScaling first", field="serviceId")
    return doc


def read_metrics(ports: ScalingPorts, cfg: ServiceConfig, now: datetime) -> MetricsSnapshot | None:
    """The service's latest metrics; None (no data) when the source is unavailable."""
    try:
        return ports.metrics.read(cfg, now)
    except (gexc.GoogleAPIError, TimeoutError):
        log.warning("metrics of %s unavailable", cfg.service_id, exc_info=True)
        return None


class ScaleGuard:
    """One run of the guard at a time (lock ``guard``), and one instance change per
    service at a time (``service:<id>``, shared with a manual scale); both are renewed
    while their holder works. An instance change is recorded as the service's pending
    intent before the platform is called and completed after; a decider that finds
    another holder's intent holds (see :func:`~functions.scaling.policy.in_flight`)."""

    def __init__(
        self,
        ports: ScalingPorts,
        policy: PolicyConfig,
        *,
        lock_ttl_sec: float,
        in_flight_max_sec: float,
        wait_sec: float,
    ) -> None:
        self._p = ports
        self._policy = policy
        self._lock_ttl_sec = lock_ttl_sec
        self._in_flight_max_sec = in_flight_max_sec
        self._guard_wait_sec = wait_sec

    def run(self, now: datetime, run_id: str) -> ScaleGuardReport:
        """One scale-guard run: every service, under the Redis lock. ``now`` is the run's
        minute (Cloud Scheduler's schedule time), so the cooldown is exact.

        The services are worked on at once (:func:`shared.gcp.cloudrun.in_parallel`, each
        under its own lock), so their Cloud Run updates are in flight together and a run
        takes as long as its slowest service, not the sum (see
        :mod:`functions.scaling.budget`). A service whose work fails or outlasts
        ``guard_wait_sec`` is logged and left out of the report; the others' decisions
        are saved and reported.

        A service whose Firestore step did not answer in time is not decided; the run
        then raises that :class:`~shared.errors.DependencyUnavailable` after the others
        were saved (recorded as skipped). The locks are released on the way out (a
        process stopped before that frees them at their TTL)."""
        with self._p.locks.lock("guard").held(self._lock_ttl_sec) as run_lease:
            if run_lease is None:
                log.info("scale guard %s: another run holds the lock, skipping", run_id)
                return ScaleGuardReport(run_id=run_id, locked=False)
            with step("scaling registry"):  # no registry: nothing to decide
                listed = self._p.registry.all_services()
            sids = [doc.config.service_id for doc in listed]
            calls = {  # in_parallel carries the run's budget into each service's thread
                sid: functools.partial(self._guard_locked, sid, now, run_id, run_lease)
                for sid in sids
            }
            answers = in_parallel(calls, self._wait_sec(), t.CLOUD_RUN_MAX_PARALLEL_UPDATES)
            decisions: list[DecisionDoc] = []
            stalled: DependencyUnavailable | None = None
            unexpected: BaseException | None = None
            for sid in sids:
                answer = answers[sid]
                if isinstance(answer, DecisionDoc):
                    decisions.append(answer)
                elif isinstance(answer, DependencyUnavailable):
                    log.warning("scale guard %s: %s not decided: %s", run_id, sid, answer)
                    stalled = stalled or answer
                elif isinstance(answer, redis.RedisError | gexc.GoogleAPIError | TimeoutError):
                    log.error("scale guard %s: %s failed: %r", run_id, sid, answer)
                elif isinstance(answer, BaseException):
                    log.error("scale guard %s: %s failed", run_id, sid, exc_info=answer)
                    unexpected = unexpected or answer
            if unexpected is not None:  # reported as a failed run, after the others saved
                raise unexpected
            if stalled is not None:  # reported as a skipped run, after the others saved
                raise stalled
            return ScaleGuardReport(run_id=run_id, locked=True, decisions=decisions)

    def _wait_sec(self) -> float:
        """How long the run waits for its services: ``guard_wait_sec``, never past the
        run's budget (a service's work bounds itself by the same budget)."""
        left = deadline.remaining()
        return self._guard_wait_sec if left is None else max(0.0, min(self._guard_wait_sec, left))

    def _guard_locked(
        self, sid: str, now: datetime, run_id: str, run_lease: Lease
    ) -> DecisionDoc | None:
        """One service of a guard run, under the service's lock (None: not decided)."""
        if run_lease.lost.is_set():  # stalled past the TTL: another run may act
            log.error("scale guard %s lost its lock: not deciding %s", run_id, sid)
            return None
        with self._p.locks.lock(f"service:{sid}").held(self._lock_ttl_sec) as lease:
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
            expire_at=expiry(now),
        )
        with step("scaling decision"):
            self._p.registry.add_decision(record)
        return record

    def _guard_one(self, sid: str, now: datetime, run_id: str, lease: Lease) -> DecisionDoc:
        doc = require_service(self._p, sid)  # read again under the service's lock
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
        metrics = read_metrics(self._p, cfg, now)
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
            with step("scaling intent"):  # not recorded: the platform is not called
                begun = self._p.registry.begin_action(sid, expected, intent)
            if not begun:
                return self._held(state, sid, now, run_id, "another scale action started")
            expected = intent  # recorded before the call: completed by save_run below
            answer = self._p.scaler.apply(cfg, decision.desired_instances)
            applied = answer.instances if answer.ok else None
        iso = decision.isolation
        isolation_after = iso.state if iso else state.isolation
        if not self._p.dry_run:
            self._p.isolation.set(cfg.service_id, isolation_after)
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
        with step("scaling outcome"):  # see the module docstring on a stall here
            saved = self._p.registry.save_run(sid, new_state, record, event, alert, now, expected)
        if not saved:
            log.error("scale guard %s: %s was superseded before it was recorded", run_id, sid)
        return record

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
            expire_at=expiry(now),
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
            expire_at=expiry(now),
        )
