"""The deployment's state machine, pure: the deployment after a check, a human's control,
the platform's confirmation, and the fast judge's ticks.

- :func:`begin`, :func:`on_check` (advance, hold, pause, roll back; a pause the platform
  explains and its resumption), :func:`judged`, :func:`step_points`, :func:`on_control`,
  :func:`rollback`, :func:`split`;
- :func:`settled`, :func:`needs_confirmation`, :func:`confirmed`: a final split stays
  asserted until the platform is seen serving it;
- :func:`next_tick`, :func:`worst_case_rollback_sec`: the fast judge's schedule.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from shared import thresholds as t
from shared.models.deploy import (
    ACTIVE_PHASES,
    Analysis,
    ControlAction,
    DeploymentDoc,
    HistoryEntry,
    Phase,
    PlatformHold,
    RevisionWindow,
    ServiceTarget,
    TrafficSnapshot,
    Verdict,
)


def _event(dep: DeploymentDoc, now: datetime, event: str, **detail: object) -> list[HistoryEntry]:
    entry = HistoryEntry(
        at=now, event=event, phase=dep.phase, traffic_percent=dep.traffic_percent, detail=detail
    )
    return [*dep.history, entry]


def with_event(dep: DeploymentDoc, now: datetime, event: str, **detail: object) -> DeploymentDoc:
    """``dep`` with ``event`` appended to its history (recording its phase and traffic)."""
    return dep.model_copy(update={"history": _event(dep, now, event, **detail), "updated_at": now})


def _to_step(dep: DeploymentDoc, step: int, now: datetime) -> DeploymentDoc:
    pct = dep.steps_pct[step]
    phase = Phase.PROMOTING if pct >= 100 else Phase.PROGRESSING
    moved = dep.model_copy(
        update={
            "phase": phase,
            "step": step,
            "traffic_percent": pct,
            "step_started_at": now,
            "step_requests": 0,
            "failures": 0,
            "inconclusive": 0,
        }
    )
    return with_event(moved, now, "step", step=step, percent=pct)


def rollback(dep: DeploymentDoc, now: datetime, reason: str, **detail: object) -> DeploymentDoc:
    """Send everything back to stable: ``rolling_back`` with 0 % on the new revision."""
    moved = dep.model_copy(
        update={
            "phase": Phase.ROLLING_BACK,
            "traffic_percent": 0,
            "reason": reason,
            "platform_hold": None,
        }
    )
    return with_event(moved, now, "rollback", reason=reason, **detail)


def begin(dep: DeploymentDoc, canary_share_now: int, now: datetime) -> DeploymentDoc:
    """Validation done (the new revisions are ready): go to the first step. When the
    platform already gives the new revision more than 0 % (the pin did not hold), say so:
    the first step's split replaces it at once."""
    checked = with_event(dep, now, "validated", canaryShareFound=canary_share_now)
    return _to_step(checked, 0, now)


def judged(dep: DeploymentDoc) -> bool:
    """Judged every minute: a live step, or a pause the platform explains (a human's
    pause, or one after too many inconclusive checks, waits for a human)."""
    held = dep.phase == Phase.PAUSED and dep.platform_hold is not None
    return dep.phase in (Phase.PROGRESSING, Phase.PROMOTING) or held


def step_points(
    dep: DeploymentDoc, before: datetime
) -> list[tuple[RevisionWindow, RevisionWindow]]:
    """(canary, stable) of the minutes of the current step judged before ``before``: the
    judge's points for its test over minutes (the same minutes on both sides)."""
    return [
        (a.canary, a.stable)
        for a in dep.analyses
        if a.step == dep.step and a.window_start < before and a.platform is not None
    ]


def _platform_detail(analysis: Analysis) -> dict[str, object]:
    platform = analysis.platform
    if platform is None or not platform.active:
        return {}
    return {
        "platform": [
            {
                "kind": s.kind.value,
                "detail": s.detail,
                "minutes": [m.isoformat() for m in s.minutes],
            }
            for s in platform.signals
        ]
    }


def _hold(dep: DeploymentDoc, analysis: Analysis, now: datetime) -> DeploymentDoc:
    """Pause: the platform explains the breach (``explained``)."""
    explained = [c.metric for c in analysis.checks if c.verdict == Verdict.EXPLAINED]
    platform = analysis.platform
    kinds = platform.kinds() if platform is not None else []
    hold = PlatformHold(since=now, checks=explained, kinds=kinds, minutes=[analysis.window_start])
    paused = dep.model_copy(update={"phase": Phase.PAUSED, "platform_hold": hold})
    return with_event(
        paused,
        now,
        "paused",
        why="the platform explains the breach",
        checks=explained,
        minutes=[analysis.window_start.isoformat()],
        **_platform_detail(analysis),
    )


def _while_held(dep: DeploymentDoc, analysis: Analysis, now: datetime) -> DeploymentDoc:
    """A minute judged while paused for the platform: a failed check still counts toward
    the failure limit; the pause goes on while the platform has a signal, and the
    deployment resumes (its bake starting again) once it has none."""
    hold = dep.platform_hold
    assert hold is not None
    failing = [c.metric for c in analysis.checks if c.verdict == Verdict.FAIL]
    if analysis.verdict == Verdict.FAIL:
        dep = dep.model_copy(update={"failures": dep.failures + 1})
        if dep.failures >= t.CANARY_FAILURE_LIMIT:
            return rollback(dep, now, f"failure limit reached ({', '.join(failing)})")
    platform = analysis.platform
    if platform is not None and platform.active:
        minutes = [*hold.minutes, analysis.window_start][
            -t.CANARY_PLATFORM_HOLD_MINUTES_KEPT_COUNT :
        ]
        kinds = sorted({*hold.kinds, *platform.kinds()})
        held = hold.model_copy(update={"minutes": minutes, "kinds": kinds})
        return dep.model_copy(update={"platform_hold": held})
    pct = dep.steps_pct[dep.step]
    resumed = dep.model_copy(
        update={
            "phase": Phase.PROMOTING if pct >= 100 else Phase.PROGRESSING,
            "platform_hold": None,
            "inconclusive": 0,
            "step_started_at": now,
        }
    )
    return with_event(
        resumed,
        now,
        "resumed",
        why="the platform is clear",
        heldSince=hold.since.isoformat(),
        heldMinutes=[m.isoformat() for m in hold.minutes],
        kinds=hold.kinds,
    )


def on_check(dep: DeploymentDoc, analysis: Analysis, now: datetime) -> DeploymentDoc:
    """The deployment after one minute's analysis (``progressing``, ``promoting``, or
    paused for the platform: :func:`judged`)."""
    kept = [*dep.analyses, analysis][-t.CANARY_ANALYSES_KEPT_COUNT :]
    baseline = dep.baseline_p95_ms
    calm = analysis.platform is None or not analysis.platform.active
    if (
        calm  # a platform event's latency is no baseline
        and analysis.stable.p95_latency_ms is not None
        and analysis.stable.requests >= t.CANARY_MIN_REQUESTS_PER_CHECK
    ):
        baseline = analysis.stable.p95_latency_ms
    cur = dep.model_copy(
        update={
            "analyses": kept,
            "last_checked_minute": analysis.window_start,
            "baseline_p95_ms": baseline,
            "updated_at": now,
        }
    )
    failing = [c.metric for c in analysis.checks if c.verdict in (Verdict.BREACH, Verdict.FAIL)]
    if analysis.verdict == Verdict.BREACH:
        return rollback(
            cur,
            now,
            f"canary breached {', '.join(failing)}",
            checks=failing,
            **_platform_detail(analysis),
        )
    if cur.phase == Phase.PAUSED:
        return _while_held(cur, analysis, now)
    if analysis.verdict == Verdict.EXPLAINED:
        return _hold(cur, analysis, now)
    if analysis.verdict == Verdict.INCONCLUSIVE:
        cur = cur.model_copy(update={"inconclusive": cur.inconclusive + 1})
        if cur.inconclusive >= t.CANARY_INCONCLUSIVE_LIMIT:
            paused = cur.model_copy(update={"phase": Phase.PAUSED})
            return with_event(paused, now, "paused", why="too many inconclusive checks")
        return cur
    cur = cur.model_copy(
        update={"inconclusive": 0, "step_requests": cur.step_requests + analysis.canary.requests}
    )
    if analysis.verdict == Verdict.FAIL:
        cur = cur.model_copy(update={"failures": cur.failures + 1})
        if cur.failures >= t.CANARY_FAILURE_LIMIT:
            return rollback(cur, now, f"failure limit reached ({', '.join(failing)})")
        return cur
    started = cur.step_started_at or now
    baked = now - started >= timedelta(seconds=cur.bake_sec)
    if not baked or cur.step_requests < cur.min_requests_per_step:
        return cur
    if cur.step + 1 < len(cur.steps_pct):
        return _to_step(cur, cur.step + 1, now)
    done = cur.model_copy(update={"phase": Phase.SUCCEEDED, "ended_at": now})
    return with_event(done, now, "succeeded")


def on_control(
    dep: DeploymentDoc, action: ControlAction, reason: str, now: datetime
) -> DeploymentDoc:
    """A human's promote, pause, resume or abort (raises ValueError when not allowed)."""
    if action == ControlAction.ABORT:
        return rollback(dep, now, reason, manual=True)
    if action == ControlAction.PAUSE:
        # a pause for the platform becomes a human's: it no longer resumes by itself
        held = dep.phase == Phase.PAUSED and dep.platform_hold is not None
        if dep.phase not in (Phase.PROGRESSING, Phase.PROMOTING) and not held:
            raise ValueError(f"cannot pause a deployment that is {dep.phase.value}")
        paused = dep.model_copy(update={"phase": Phase.PAUSED, "platform_hold": None})
        return with_event(paused, now, "paused", why=reason)
    if action == ControlAction.RESUME:
        if dep.phase != Phase.PAUSED:
            raise ValueError(f"cannot resume a deployment that is {dep.phase.value}")
        pct = dep.steps_pct[dep.step]
        resumed = dep.model_copy(
            update={
                "phase": Phase.PROMOTING if pct >= 100 else Phase.PROGRESSING,
                "inconclusive": 0,
                "step_started_at": now,
                "platform_hold": None,
            }
        )
        return with_event(resumed, now, "resumed", why=reason)
    if dep.phase not in (Phase.PROGRESSING, Phase.PROMOTING, Phase.PAUSED):
        raise ValueError(f"cannot promote a deployment that is {dep.phase.value}")
    promoting = dep.model_copy(
        update={
            "phase": Phase.PROMOTING,
            "platform_hold": None,
            "step": len(dep.steps_pct) - 1,
            "traffic_percent": 100,
            "promoted_by_hand": True,
        }
    )
    return with_event(promoting, now, "promoted", why=reason, manual=True)


def settled(dep: DeploymentDoc, now: datetime) -> DeploymentDoc | None:
    """The final phase a deployment reaches once the platform confirmed its traffic
    (rolled back at 0 %, promoted by hand at 100 %); None when it is not there yet."""
    if dep.applied_percent != dep.traffic_percent:
        return None
    if dep.phase == Phase.ROLLING_BACK and dep.traffic_percent == 0:
        done = dep.model_copy(update={"phase": Phase.ROLLED_BACK, "ended_at": now})
        return with_event(done, now, "rolled_back")
    if dep.phase == Phase.PROMOTING and dep.promoted_by_hand and dep.traffic_percent == 100:
        done = dep.model_copy(update={"phase": Phase.SUCCEEDED, "ended_at": now})
        return with_event(done, now, "succeeded")
    return None


FINAL_SPLIT_PHASES = frozenset({Phase.ROLLED_BACK, Phase.SUCCEEDED})
"""Final phases whose split the platform must be seen serving before the deployment lets
go of its environment (a failed deployment never moved traffic)."""


def needs_confirmation(dep: DeploymentDoc) -> bool:
    """A final deployment the platform was not yet seen serving: the monitor re-asserts
    its split every run until it is."""
    return dep.phase in FINAL_SPLIT_PHASES and dep.confirmed_at is None


def holds_environment(dep: DeploymentDoc) -> bool:
    """Active, or final but not yet confirmed on the platform."""
    return dep.phase in ACTIVE_PHASES or needs_confirmation(dep)


def confirmed(dep: DeploymentDoc, now: datetime, reasserted: list[str]) -> DeploymentDoc | None:
    """``dep`` once the platform serves its final split (None: nothing to confirm).
    ``reasserted`` names the services whose split had to be sent again (drift)."""
    if not needs_confirmation(dep):
        return None
    done = dep.model_copy(update={"confirmed_at": now, "updated_at": now})
    return with_event(done, now, "reasserted", services=reasserted) if reasserted else done


def snapshot_usable(snapshot: TrafficSnapshot, now: datetime) -> bool:
    """A snapshot of the serving revisions is the stable side of a canary while it is
    younger than ``DEPLOY_SNAPSHOT_MAX_AGE_SEC`` (older: an earlier deploy's)."""
    age = (now - snapshot.taken_at).total_seconds()
    return 0 <= age <= t.DEPLOY_SNAPSHOT_MAX_AGE_SEC


def next_tick(now: datetime) -> datetime:
    """When the fast judge runs next: the next multiple of ``CANARY_FAST_CHECK_INTERVAL_SEC``
    after ``now`` (on the epoch's grid, so every enqueuer of one tick names the same task)."""
    step = t.CANARY_FAST_CHECK_INTERVAL_SEC
    return datetime.fromtimestamp((math.floor(now.timestamp() / step) + 1) * step, tz=now.tzinfo)


def worst_case_rollback_sec(
    interval_sec: float, dispatch_late_sec: float, judge_sec: float, traffic_write_sec: float
) -> float:
    """From a breach being in the data to stable serving 100 %, at worst: the tick that
    just missed it, the next one's interval, its late dispatch, the judging and the
    traffic write (each at its deadline)."""
    return interval_sec + dispatch_late_sec + judge_sec + traffic_write_sec


def split(target: ServiceTarget, canary_percent: int) -> dict[str, int]:
    """Revision -> percent for one service (0 % entries left out; sums to 100)."""
    if target.canary_revision is None or canary_percent <= 0:
        return {target.stable_revision: 100}
    if canary_percent >= 100:
        return {target.canary_revision: 100}
    return {target.stable_revision: 100 - canary_percent, target.canary_revision: canary_percent}
