"""The scheduled jobs and the records they keep: each job failed or completed across the
fault, and the scale guard's, deploy monitor's and live metrics' records consistent."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from stack.chaos_check.history import Call, Verdict, Window, by_start, verdict_broken, verdict_held


def jobs_failed_or_complete(
    history: Iterable[Call], window: Window, jobs: Sequence[str], functions_down: bool = False
) -> list[Verdict]:
    """Each job run overlapping the fault answered 200 (complete) or 500 (failed, to be
    retried) and nothing else; after the undo, a run of each job completed (200). While
    the functions server itself is the fault, a refused connection is a failed run too
    (nothing ran; Cloud Scheduler records it failed and retries)."""
    calls = [c for c in by_start(history) if c.op == "job"]
    verdicts: list[Verdict] = []
    for job in jobs:
        mine = [c for c in calls if c.cls == job]
        during = [c for c in mine if window.overlaps(c)]
        name = f"{job}: a run during the fault failed (500) or completed (200)"
        odd = [
            c
            for c in during
            if c.http not in (200, 500) and not (functions_down and c.error == "connection")
        ]
        if not during:
            verdicts.append(verdict_broken(name, "not triggered during the fault", {"job": job}))
        elif odd:
            verdicts.append(verdict_broken(name, f"answered {odd[0].http or odd[0].error}", odd[0]))
        else:
            verdicts.append(verdict_held(name, ", ".join(str(c.http or c.error) for c in during)))
        name = f"{job}: a run after recovery completed"
        after = [c for c in mine if c.t_start >= window.undone_at]
        ok = [c for c in after if c.http == 200]
        verdicts.append(
            verdict_held(name, f"{len(ok)} of {len(after)} runs answered 200")
            if ok
            else verdict_broken(
                name,
                f"none of {len(after)} runs after the undo answered 200",
                after[-1] if after else {"job": job},
            )
        )
    return verdicts


def _get(doc: dict[str, Any], *path: str) -> Any:
    value: Any = doc
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def scale_guard_consistent(
    services: Sequence[dict[str, Any]], decisions: Sequence[dict[str, Any]]
) -> Verdict:
    """Scale guard records are consistent: no service is left with an instance change
    in flight (``state.pending``) after a completed run, and each service's latest
    acted, non-dry-run decision is what its state records (``desiredInstances ==
    state.currentInstances``): never a scaling applied but not recorded, or recorded
    but not applied."""
    name = "scaleGuard records consistent"
    if not services:
        return verdict_broken(name, "no service in the scaling registry", {})
    latest: dict[str, dict[str, Any]] = {}
    for d in decisions:
        if not d.get("acted") or d.get("dryRun"):
            continue
        sid = str(d.get("serviceId"))
        if sid not in latest or _key_at(d) >= _key_at(latest[sid]):
            latest[sid] = d
    for svc in sorted(services, key=lambda s: str(_get(s, "config", "serviceId"))):
        sid = str(_get(svc, "config", "serviceId"))
        if _get(svc, "state", "pending") is not None:
            return verdict_broken(
                name,
                f"{sid} left with an action in flight",
                {"serviceId": sid, "pending": _get(svc, "state", "pending")},
            )
        last = latest.get(sid)
        current = _get(svc, "state", "currentInstances")
        if last is not None and last.get("desiredInstances") != current:
            return verdict_broken(
                name,
                f"{sid}: last acted decision {last.get('desiredInstances')}, state {current}",
                {"serviceId": sid, "decision": last, "currentInstances": current},
            )
    return verdict_held(name, f"{len(services)} services, {len(latest)} with an acted decision")


def _key_at(doc: dict[str, Any]) -> str:
    at = doc.get("at")
    return at.isoformat() if isinstance(at, datetime) else str(at)


FINAL_PHASES = ("succeeded", "rolled_back", "failed")


def deploy_monitor_consistent(
    deployments: Sequence[dict[str, Any]], active: dict[str, dict[str, Any]]
) -> Verdict:
    """Deploy records are consistent: each ``pack391_deploy_active/{env}`` names an
    existing deployment of that environment that is not in a final phase, and each
    deployment not in a final phase is the active one of its environment; a deployment's
    traffic is within 0..100."""
    name = "deploy monitor records consistent"
    by_id = {str(d.get("deploymentId")): d for d in deployments}
    for env, doc in sorted(active.items()):
        dep = by_id.get(str(doc.get("deploymentId")))
        if dep is None or dep.get("environment") != env or dep.get("phase") in FINAL_PHASES:
            return verdict_broken(
                name,
                f"active record of {env} points at a missing or finished deployment",
                {"environment": env, "active": doc, "deployment": dep},
            )
    for dep in deployments:
        if dep.get("phase") not in FINAL_PHASES and (
            active.get(str(dep.get("environment")), {}).get("deploymentId")
            != dep.get("deploymentId")
        ):
            return verdict_broken(name, "a running deployment is not the active one", dep)
        traffic = dep.get("trafficPercent", 0)
        if not isinstance(traffic, int) or not 0 <= traffic <= 100:
            return verdict_broken(name, f"traffic {traffic}", dep)
    return verdict_held(name, f"{len(deployments)} deployments, {len(active)} active")


def live_metrics_consistent(
    snapshot: dict[str, Any] | None,
    history_ids: Iterable[str],
    runs: Iterable[Call],
) -> Verdict:
    """Live metrics records are consistent: every run that answered 200 wrote its
    minute's history point (``pack391_ops_metrics_history/{%Y%m%dT%H%MZ}`` of a minute
    the run was in flight), and the live snapshot is at least as new as the start of
    the last successful run (the snapshot and the point are one batch)."""
    name = "updateLiveMetrics records consistent"
    ids = set(history_ids)
    ok = sorted((c for c in runs if c.op == "job" and c.http == 200), key=lambda c: c.t_start)
    for call in ok:
        minutes = {_minute_id(call.t_start), _minute_id(call.t_end)}
        if not minutes & ids:
            return verdict_broken(name, f"no history point for minute(s) {sorted(minutes)}", call)
    if ok:
        at = snapshot.get("at") if snapshot else None
        at_sec = at.timestamp() if isinstance(at, datetime) else None
        if at_sec is None or at_sec < ok[-1].t_start - 1.0:
            return verdict_broken(
                name, "the live snapshot is older than the last successful run", ok[-1]
            )
    return verdict_held(name, f"{len(ok)} successful runs, each with its history point")


def _minute_id(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y%m%dT%H%MZ")
