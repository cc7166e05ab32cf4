"""The scaling claims: scale-up and scale-down within their budgets, no degradation
while scaling, and a failing service isolated."""

from __future__ import annotations

import itertools

from shared import thresholds as t
from stack.rehearse.claims.result import ClaimResult, first_after, not_run, rounded
from stack.rehearse.recording import Recording

SCALE_UP_WITHIN_SEC: float = 60.0
"""Spec: services scale up within 60 s (threshold breach -> new instance count applied)."""
SCALE_DOWN_WITHIN_SEC: float = float(
    t.SCALE_DOWN_STABILISATION_SEC + 3 * t.SCALE_GUARD_INTERVAL_SEC
)
"""Load drop -> fewer instances: the 5-minute stabilisation window, then the guard's next
runs (one minute to see the lower load complete, one to act, one of slack)."""
ISOLATION_WITHIN_SEC: float = float(2 * t.SCALE_GUARD_INTERVAL_SEC)
"""Errors begin -> service isolated: the guard judges the last complete minute, so the
minute the errors began in plus the run that judges it."""
SCALE_EVENT_WINDOW_SEC: float = 30.0
"""A scale event's window: this long before and after the new count was applied."""


def breach_at(
    rec: Recording, service: str, since: float, until: float | None = None
) -> float | None:
    """First moment at or after ``since`` a scale-up threshold was breached for
    ``service``: the load's p95 over ``SCALE_UP_P95_LATENCY_MS``, requests shed, or the
    service's slots in use at or over ``SCALE_UP_CPU_PCT`` (its CPU stand-in)."""
    candidates = [
        first_after(rec.points("load.p95_ms", since, until), since,
                     lambda v: v > t.SCALE_UP_P95_LATENCY_MS),
        first_after(rec.points("load.shed", since, until), since, lambda v: v > 0),
        first_after(rec.points(f"util_pct.{service}", since, until), since,
                     lambda v: v >= t.SCALE_UP_CPU_PCT),
    ]  # fmt: skip
    found = [c for c in candidates if c is not None]
    return min(found) if found else None


def scale_events(rec: Recording, service: str) -> list[tuple[float, float, float]]:
    """Every change of the applied instance count: (at, before, after)."""
    events = []
    pts = rec.points(f"applied.{service}")
    for (_, before), (at, after) in itertools.pairwise(pts):
        if after != before:
            events.append((at, before, after))
    return events


def scale_up(rec: Recording) -> ClaimResult:
    title = "services scale up within 60 s"
    push = rec.act("push")
    if push is None:
        return not_run("scale_up", title, "push")
    service = str(push.detail.get("service", ""))
    until = push.ended_at
    breach = breach_at(rec, service, push.started_at, until)
    series = f"series applied.{service}"
    if breach is None:
        return ClaimResult(
            "scale_up", title, False, None, "s",
            f"the push never breached a scale-up threshold (series load.p95_ms, load.shed, "
            f"util_pct.{service}): push harder",
            "series load.p95_ms", {"service": service},
        )  # fmt: skip
    before = rec.value_at(f"applied.{service}", breach)
    ups = [e for e in scale_events(rec, service) if e[0] >= breach and e[2] > e[1]]
    detail = {"service": service, "breachAt": breach, "instancesAtBreach": before,
              "pushStartedAt": push.started_at,
              "breachSecondOfMinute": round(breach % 60, 1)}  # fmt: skip
    if not ups:
        return ClaimResult(
            "scale_up", title, False, None, "s",
            f"no scale-up of {service} applied after the breach at +{breach - rec.started_at:.0f}s "
            f"({series}; docs scalingDecisions)",
            series, detail,
        )  # fmt: skip
    at, old, new = ups[0]
    took = at - breach
    detail |= {"appliedAt": at, "from": old, "to": new}
    ok = took <= SCALE_UP_WITHIN_SEC
    why = (
        f"{service} {old:g} -> {new:g} instances {took:.0f}s after the breach"
        if ok
        else f"{service} scaled {took:.0f}s after the breach, over {SCALE_UP_WITHIN_SEC:.0f}s "
        f"({series} at +{at - rec.started_at:.0f}s; docs scalingDecisions)"
    )
    return ClaimResult("scale_up", title, ok, rounded(took), "s", why, series, detail)


def scale_down(rec: Recording) -> ClaimResult:
    title = "services scale down when load drops"
    drop, push = rec.act("drop"), rec.act("push")
    if drop is None or push is None:
        return not_run("scale_down", title, "drop")
    service = str(push.detail.get("service", ""))
    series = f"series applied.{service}"
    downs = [e for e in scale_events(rec, service) if e[0] >= drop.started_at and e[2] < e[1]]
    if not downs:
        waited = rec.ended_at - drop.started_at
        return ClaimResult(
            "scale_down", title, False, None, "s",
            f"no scale-down of {service} within {waited:.0f}s of the drop ({series}; docs "
            f"scalingDecisions: stabilisation is {t.SCALE_DOWN_STABILISATION_SEC}s)",
            series, {"service": service, "waitedSec": rounded(waited)},
        )  # fmt: skip
    at, old, new = downs[0]
    took = at - drop.started_at
    ok = took <= SCALE_DOWN_WITHIN_SEC
    why = (
        f"{service} {old:g} -> {new:g} instances {took:.0f}s after the load dropped"
        if ok
        else f"{service} scaled down {took:.0f}s after the drop, "
        f"over {SCALE_DOWN_WITHIN_SEC:.0f}s ({series})"
    )
    return ClaimResult(
        "scale_down", title, ok, rounded(took), "s", why, series,
        {"service": service, "appliedAt": at, "from": old, "to": new},
    )  # fmt: skip


def _window_load(rec: Recording, since: float, until: float) -> tuple[float, float, float]:
    """(error %, p95 ms (worst second), requests) of the load between the two moments;
    errors include shed and dropped starts."""
    sched = sum(v for _, v in rec.points("load.offered_rps", since, until))
    bad = sum(
        v
        for name in ("load.errors", "load.shed", "load.dropped")
        for _, v in rec.points(name, since, until)
    )
    p95 = max((v for _, v in rec.points("load.p95_ms", since, until)), default=0.0)
    return (100.0 * bad / sched if sched else 0.0, p95, sched)


def no_degradation(rec: Recording) -> ClaimResult:
    """Zero degradation while scaling: around each applied change of the scaled service,
    the load's error rate stays within ``LOAD_TEST_ERROR_RATE_PCT`` and its p95 after the
    change is no worse than before it (or within ``LOAD_TEST_P95_LATENCY_MS``)."""
    title = "zero degradation while scaling"
    push = rec.act("push")
    if push is None:
        return not_run("no_degradation", title, "push")
    service = str(push.detail.get("service", ""))
    events = scale_events(rec, service)
    if not events:
        return ClaimResult(
            "no_degradation", title, False, None, "%",
            f"no scale event of {service} to judge (series applied.{service})",
            f"series applied.{service}", {"service": service},
        )  # fmt: skip
    rows = []
    failed: str | None = None
    w = SCALE_EVENT_WINDOW_SEC
    for at, old, new in events:
        err_pct, p95_after, n = _window_load(rec, at, at + w)
        _, p95_before, _ = _window_load(rec, at - w, at - 0.001)
        rows.append(
            {"at": at, "from": old, "to": new, "errorPct": rounded(err_pct, 3),
             "p95MsBefore": rounded(p95_before), "p95MsAfter": rounded(p95_after), "requests": n}
        )  # fmt: skip
        worse = p95_after > max(p95_before, t.LOAD_TEST_P95_LATENCY_MS)
        if failed is None and (err_pct > t.LOAD_TEST_ERROR_RATE_PCT or worse):
            failed = (
                f"scaling {old:g} -> {new:g} at +{at - rec.started_at:.0f}s: errors "
                f"{err_pct:.2f}%, p95 {p95_before:.0f} -> {p95_after:.0f} ms in the {w:.0f}s after "
                f"(series load.errors, load.shed, load.p95_ms)"
            )
    worst = max(r["errorPct"] or 0.0 for r in rows)
    worst_p95 = max(r["p95MsAfter"] or 0.0 for r in rows)
    why = failed or (
        f"{len(rows)} scale event(s): worst error rate {worst:.2f}%, worst p95 after "
        f"{worst_p95:.0f} ms"
    )
    return ClaimResult(
        "no_degradation", title, failed is None, rounded(worst, 3), "% errors", why,
        "series load.errors", {"service": service, "events": rows},
    )  # fmt: skip


def isolation(rec: Recording) -> ClaimResult:
    title = "automatic isolation on critical errors"
    act = rec.act("isolate")
    if act is None:
        return not_run("isolation", title, "isolate")
    service = str(act.detail.get("service", ""))
    alerts = [
        a for a in rec.docs.get("scalingAlerts", [])
        if a.get("kind") == "isolated" and float(a.get("at", 0)) >= act.started_at - 1
    ]  # fmt: skip
    mine = sorted((a for a in alerts if a.get("serviceId") == service), key=lambda a: a["at"])
    others = sorted({str(a.get("serviceId")) for a in alerts if a.get("serviceId") != service})
    if not mine:
        return ClaimResult(
            "isolation", title, False, None, "s",
            f"{service} was never isolated after errors began at "
            f"+{act.started_at - rec.started_at:.0f}s "
            f"(series isolated.{service}; docs scalingAlerts)",
            f"series isolated.{service}", {"service": service, "othersIsolated": others},
        )  # fmt: skip
    took = float(mine[0]["at"]) - act.started_at
    ref = f"doc pack391_scaling_events/{mine[0].get('id', '?')}"
    detail = {"service": service, "alertId": mine[0].get("id"), "othersIsolated": others}
    if others:
        return ClaimResult(
            "isolation", title, False, rounded(took), "s",
            f"other services were isolated too: {', '.join(others)} (docs scalingAlerts)",
            ref, detail,
        )  # fmt: skip
    ok = took <= ISOLATION_WITHIN_SEC
    why = (
        f"{service} isolated {took:.0f}s after its errors began; no other service isolated"
        if ok
        else f"{service} isolated {took:.0f}s after its errors began, "
        f"over {ISOLATION_WITHIN_SEC:.0f}s ({ref})"
    )
    return ClaimResult("isolation", title, ok, rounded(took), "s", why, ref, detail)
