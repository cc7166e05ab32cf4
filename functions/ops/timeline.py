"""The ops timeline (``pack391_getOpsTimeline``): one time axis of what every area did,
as a pure function of the records read and ``now`` (no I/O, no client library).

Lanes:

- ``alert``: alerts of every area opened or resolved in the window (``endAt``: resolved),
  but DDoS mode's, which is a mitigation;
- ``mitigation``: DDoS detections, DDoS mode (on at its alert's opening, off at its
  resolution, or its scheduled end while on), and blocks (``endAt``: lifted or expiry);
- ``deployment``: the deployments' history entries (started, each step, paused, promoted,
  rolled back ...);
- ``scale``: scale-ups and scale-downs decided (guard runs and manual), and isolation
  changes of services;
- ``action``: what people did, from the audit log (the system's own entries, such as the
  deploy monitor's, are in the lanes above).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.models.alerts import AlertDoc, AlertSource
from shared.models.ddos import BlockDoc, DetectionDoc
from shared.models.deploy import DeploymentHistory, Phase
from shared.models.ops import ActivityEntry, TimelineEvent
from shared.models.scaling import AlertKind, DecisionDoc, ScalingEventDoc

LANES = ("alert", "mitigation", "deployment", "scale", "action")
"""The lanes, top to bottom; events at the same instant are listed in this order."""

DDOS_MODE_KIND = "ddos_mode"
"""The ``kind`` of DDoS mode's alert (source ``ddos``): a mitigation, not an alert."""

SYSTEM_ACTOR_PREFIX = "system:"
"""Audit entries by the system (``system:monitor``) are not people's actions."""

_BAD_DEPLOY_PHASES = {Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED}
_BAD_ISOLATION = {AlertKind.ISOLATED, AlertKind.REISOLATED}


@dataclass(frozen=True)
class DDoSModeNow:
    """DDoS mode as Redis holds it now."""

    until: datetime
    reason: str


@dataclass(frozen=True)
class TimelineRecords:
    """What the timeline is built from, each source already bounded by its read."""

    alerts: Sequence[tuple[str, AlertDoc]] = ()
    """Opened or resolved in the window (any area)."""
    detections: Sequence[DetectionDoc] = ()
    blocks: Sequence[BlockDoc] = ()
    ddos_mode: DDoSModeNow | None = None
    deployments: Sequence[DeploymentHistory] = ()
    decisions: Sequence[DecisionDoc] = ()
    isolation: Sequence[ScalingEventDoc] = ()
    audit: Sequence[ActivityEntry] = field(default_factory=tuple)


def _inside(at: datetime | None, since: datetime, now: datetime) -> bool:
    return at is not None and since <= at <= now


def _is_mode_alert(doc: AlertDoc) -> bool:
    return doc.source is AlertSource.DDOS and doc.kind == DDOS_MODE_KIND


def _words(name: str) -> str:
    return name.replace("_", " ")


def alert_events(
    alerts: Sequence[tuple[str, AlertDoc]],
    since: datetime,
    now: datetime,
    mode_until: datetime | None,
) -> list[TimelineEvent]:
    """Alerts opened or resolved in the window; DDoS mode's alert as a mitigation (still
    on: ending at ``mode_until``, DDoS mode's scheduled end, when known)."""
    out: list[TimelineEvent] = []
    for _, doc in alerts:
        if not (_inside(doc.opened_at, since, now) or _inside(doc.resolved_at, since, now)):
            continue
        if _is_mode_alert(doc):
            out.append(
                TimelineEvent(
                    at=doc.opened_at,
                    end_at=doc.resolved_at or mode_until,
                    lane="mitigation",
                    title="DDoS mode",
                    detail=doc.resolution if doc.resolved_at else doc.title,
                    severity=doc.severity.value,
                )
            )
            continue
        status = doc.status.value
        if doc.acknowledged_by and doc.resolved_at is None:
            status = f"{status} by {doc.acknowledged_by}"
        out.append(
            TimelineEvent(
                at=doc.opened_at,
                end_at=doc.resolved_at,
                lane="alert",
                title=doc.title,
                detail=f"{doc.source.value}/{doc.kind} · {status}"
                + (f" · raised {doc.occurrences} times" if doc.occurrences > 1 else ""),
                severity=doc.severity.value,
            )
        )
    return out


def mitigation_events(
    records: TimelineRecords, since: datetime, now: datetime, mode_shown: bool
) -> list[TimelineEvent]:
    """Detections and blocks in the window; DDoS mode on now with no alert of it in the
    window (``mode_shown`` False): one event at ``now`` until its scheduled end."""
    out: list[TimelineEvent] = []
    for d in records.detections:
        if not _inside(d.detected_at, since, now):
            continue
        done = []
        if d.blocked_sources:
            done.append(f"{len(d.blocked_sources)} sources blocked")
        if d.blocked_users:
            done.append(f"{len(d.blocked_users)} users blocked")
        if d.held:
            done.append(f"{len(d.held)} actions held")
        out.append(
            TimelineEvent(
                at=d.detected_at,
                lane="mitigation",
                title=f"DDoS: {_words(d.kind.value)}",
                detail="; ".join(["mitigated" if d.mitigated else "not mitigated", *done]),
                severity=d.severity.value,
            )
        )
    for b in records.blocks:
        if not _inside(b.blocked_at, since, now):
            continue
        lifted = f" · lifted by {b.lifted_by}" if b.lifted_at and b.lifted_by else ""
        out.append(
            TimelineEvent(
                at=b.blocked_at,
                end_at=b.lifted_at or b.expires_at,
                lane="mitigation",
                title=f"{_words(b.kind.value)} block: {b.scope.value} {b.subject}",
                detail=f"{b.reason}{lifted}",
            )
        )
    mode = records.ddos_mode
    if mode is not None and not mode_shown:
        out.append(
            TimelineEvent(
                at=now, end_at=mode.until, lane="mitigation", title="DDoS mode", detail=mode.reason
            )
        )
    return out


def deployment_events(
    deployments: Sequence[DeploymentHistory], since: datetime, now: datetime
) -> list[TimelineEvent]:
    """Each deployment's history entries in the window."""
    out: list[TimelineEvent] = []
    for dep in deployments:
        for entry in dep.history:
            if not _inside(entry.at, since, now):
                continue
            out.append(
                TimelineEvent(
                    at=entry.at,
                    lane="deployment",
                    title=f"{dep.version} ({dep.environment}): {_words(entry.event)}",
                    detail=f"{dep.deployment_id} · {_words(entry.phase.value)} · "
                    f"{entry.traffic_percent}% traffic",
                    severity="high" if entry.phase in _BAD_DEPLOY_PHASES else None,
                )
            )
    return out


def scale_events(
    decisions: Sequence[DecisionDoc],
    isolation: Sequence[ScalingEventDoc],
    since: datetime,
    now: datetime,
) -> list[TimelineEvent]:
    """Scale-ups and scale-downs decided in the window (dry runs and those not applied
    say so), and isolation changes."""
    out: list[TimelineEvent] = []
    for d in decisions:
        if not _inside(d.at, since, now):
            continue
        notes = [d.source]
        if d.dry_run:
            notes.append("dry run")
        elif not d.acted:
            notes.append("not applied")
        if d.reasons:
            notes.append(d.reasons[0])
        out.append(
            TimelineEvent(
                at=d.at,
                lane="scale",
                title=f"{d.service_id}: {_words(d.action.value)} "
                f"{d.current_instances} → {d.desired_instances}",
                detail=" · ".join(notes),
            )
        )
    for e in isolation:
        if not _inside(e.at, since, now):
            continue
        out.append(
            TimelineEvent(
                at=e.at,
                lane="scale",
                title=f"{e.service_id}: {_words(e.kind.value)}",
                detail=e.message,
                severity="high" if e.kind in _BAD_ISOLATION else None,
            )
        )
    return out


def action_events(
    audit: Sequence[ActivityEntry], since: datetime, now: datetime
) -> list[TimelineEvent]:
    """People's audited actions in the window (by email when their token had one)."""
    out: list[TimelineEvent] = []
    for entry in audit:
        if entry.actor_uid.startswith(SYSTEM_ACTOR_PREFIX) or not _inside(entry.at, since, now):
            continue
        who = entry.actor_email or entry.actor_uid
        detail = f"{who} · {entry.target}" + (f" · {entry.reason}" if entry.reason else "")
        out.append(TimelineEvent(at=entry.at, lane="action", title=entry.action, detail=detail))
    return out


def build_timeline(records: TimelineRecords, since: datetime, now: datetime) -> list[TimelineEvent]:
    """Every lane's events of the window ``[since, now]``, sorted by ``at`` (then lane,
    then title). An alert or block that started before the window and ended inside it
    keeps its real ``at``."""
    mode_until = records.ddos_mode.until if records.ddos_mode else None
    alerts = alert_events(records.alerts, since, now, mode_until)
    mode_shown = any(
        _is_mode_alert(doc) and doc.resolved_at is None and _inside(doc.opened_at, since, now)
        for _, doc in records.alerts
    )
    events = [
        *alerts,
        *mitigation_events(records, since, now, mode_shown),
        *deployment_events(records.deployments, since, now),
        *scale_events(records.decisions, records.isolation, since, now),
        *action_events(records.audit, since, now),
    ]
    return sorted(events, key=lambda e: (e.at, LANES.index(e.lane), e.title))
