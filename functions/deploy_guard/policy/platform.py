"""What the platform was doing during the judged minutes, pure: :func:`platform_context`
turns what the bundle records (DDoS mode and detections, scale decisions, isolation
changes, dependency stalls) into a :class:`~shared.models.deploy.PlatformContext`.

Which minutes a signal covers:

- DDoS mode (on when read): every judged minute ending after its latest start or
  extension (``until`` less ``DDOS_MODE_DURATION_SEC``: the detector sets ``until`` that
  far ahead each time it extends it). Read when the minute is judged, within a minute or
  two of its end, so "on now and started before the minute ended" is "on in the minute".
- A DDoS detection (high or critical, or mitigated): its own minute.
- A scale decision that acted (scale-up or scale-down, not a dry run) and an isolation
  change: the minute it happened in and ``CANARY_PLATFORM_SETTLE_SEC`` after it.
- A dependency stall: the minute it was recorded in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from shared import thresholds as t
from shared.models.alerts import Severity
from shared.models.ddos import DetectionDoc
from shared.models.deploy import PlatformContext, PlatformSignal, PlatformSignalKind
from shared.models.scaling import DecisionDoc, ScaleAction, ScalingEventDoc

MINUTE = timedelta(seconds=t.CANARY_CHECK_INTERVAL_SEC)

SCALE_ACTIONS = frozenset({ScaleAction.SCALE_UP, ScaleAction.SCALE_DOWN})


def judged_minutes(start: datetime, end: datetime) -> list[datetime]:
    """The minutes of ``[start, end)`` (the last one partial for the fast judge)."""
    out, at = [], start
    while at < end:
        out.append(at)
        at += MINUTE
    return out


def _covered(minutes: list[datetime], since: datetime, until: datetime) -> list[datetime]:
    """The minutes that overlap ``[since, until)``."""
    return [m for m in minutes if m + MINUTE > since and m < until]


def platform_context(
    start: datetime,
    end: datetime,
    *,
    ddos_mode: tuple[datetime, str] | None = None,
    detections: Iterable[DetectionDoc] = (),
    scale_decisions: Iterable[DecisionDoc] = (),
    isolation_events: Iterable[ScalingEventDoc] = (),
    stalls: Mapping[datetime, Mapping[str, int]] | None = None,
) -> PlatformContext:
    """The platform signals of ``[start, end)``. ``ddos_mode``: (until, reason) of DDoS
    mode when it is on; ``stalls``: minute -> dependency -> calls that did not answer."""
    minutes = judged_minutes(start, end)
    signals: list[PlatformSignal] = []
    if ddos_mode is not None:
        until, reason = ddos_mode
        since = until - timedelta(seconds=t.DDOS_MODE_DURATION_SEC)
        covered = _covered(minutes, since, until)
        if covered:
            signals.append(
                PlatformSignal(
                    kind=PlatformSignalKind.DDOS_MODE,
                    at=since,
                    detail=f"DDoS mode on until {until.isoformat()} ({reason or 'no reason'})",
                    minutes=covered,
                )
            )
    for d in detections:
        if d.severity.rank < Severity.HIGH.rank and not d.mitigated:
            continue
        covered = _covered(minutes, d.minute, d.minute + MINUTE)
        if covered:
            mitigated = "mitigated" if d.mitigated else "not mitigated"
            signals.append(
                PlatformSignal(
                    kind=PlatformSignalKind.DDOS_DETECTION,
                    at=d.minute,
                    detail=f"{d.kind.value} ({d.severity.value}, {mitigated})",
                    minutes=covered,
                )
            )
    settle = timedelta(seconds=t.CANARY_PLATFORM_SETTLE_SEC)
    for s in scale_decisions:
        if s.action not in SCALE_ACTIONS or s.dry_run or not s.acted:
            continue
        covered = _covered(minutes, s.at, s.at + settle)
        if covered:
            signals.append(
                PlatformSignal(
                    kind=PlatformSignalKind.SCALE,
                    at=s.at,
                    detail=(
                        f"{s.service_id} {s.action.value} "
                        f"{s.current_instances} -> {s.desired_instances}"
                    ),
                    minutes=covered,
                )
            )
    for e in isolation_events:
        covered = _covered(minutes, e.at, e.at + settle)
        if covered:
            signals.append(
                PlatformSignal(
                    kind=PlatformSignalKind.ISOLATION,
                    at=e.at,
                    detail=f"{e.service_id} {e.kind.value}",
                    minutes=covered,
                )
            )
    for minute, by_dependency in sorted((stalls or {}).items()):
        calls = {d: n for d, n in by_dependency.items() if n > 0}
        covered = _covered(minutes, minute, minute + MINUTE)
        if calls and covered:
            named = ", ".join(f"{d} {n} calls" for d, n in sorted(calls.items()))
            signals.append(
                PlatformSignal(
                    kind=PlatformSignalKind.DEPENDENCY_STALL,
                    at=minute,
                    detail=f"did not answer within budget: {named}",
                    minutes=covered,
                )
            )
    return PlatformContext(window_start=start, window_end=end, signals=signals)
