"""The claims of the launch spec, each a pure function of a :class:`Recording`.

Every claim answers pass/fail, the measured figure with its unit, and, when it fails,
one line saying why and where the evidence is (a timeline series, an act, or a
document id). Nothing here reads the stack or the clock.

Budgets are the spec's numbers (:mod:`shared.thresholds`, :mod:`stack.constants`) where it
has them; the few that are the rehearsal's own are below, each derived from the spec's
intervals.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shared import thresholds as t
from stack.constants import DDOS_DETECTION_INTERVAL_SEC, ROLLBACK_WITHIN_SEC
from stack.rehearse.recording import Act, Recording

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
HISTORY_RUN_SLACK_SEC: float = 30.0
"""A minute's metrics run is expected to have written its point this long after it began."""
HISTORY_EXPIRE_SLACK_SEC: float = 120.0
"""A history point's ``expireAt`` may differ from its minute + 30 days by this much."""


@dataclass(frozen=True)
class ClaimResult:
    claim: str
    title: str
    passed: bool
    figure: float | None
    unit: str
    why: str
    """One line: what was measured, or why it failed and where to look."""
    evidence: str
    """Where the evidence is: ``series NAME``, ``act NAME``, ``doc COLLECTION/ID``."""
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "title": self.title,
            "passed": self.passed,
            "figure": self.figure,
            "unit": self.unit,
            "why": self.why,
            "evidence": self.evidence,
            "detail": self.detail,
        }


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _missing(claim: str, title: str, act: str) -> ClaimResult:
    return ClaimResult(
        claim, title, False, None, "", f"act {act!r} did not run: nothing was measured",
        f"act {act}", {},
    )  # fmt: skip


def _first_after(
    points: Sequence[tuple[float, float]], since: float, test: Callable[[float], bool]
) -> float | None:
    return next((at for at, v in points if at >= since and test(v)), None)


# ------------------------------------------------------------------ scaling


def breach_at(
    rec: Recording, service: str, since: float, until: float | None = None
) -> float | None:
    """First moment at or after ``since`` a scale-up threshold was breached for
    ``service``: the load's p95 over ``SCALE_UP_P95_LATENCY_MS``, requests shed, or the
    service's slots in use at or over ``SCALE_UP_CPU_PCT`` (its CPU stand-in)."""
    candidates = [
        _first_after(rec.points("load.p95_ms", since, until), since,
                     lambda v: v > t.SCALE_UP_P95_LATENCY_MS),
        _first_after(rec.points("load.shed", since, until), since, lambda v: v > 0),
        _first_after(rec.points(f"util_pct.{service}", since, until), since,
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
        return _missing("scale_up", title, "push")
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
    return ClaimResult("scale_up", title, ok, _r(took), "s", why, series, detail)


def scale_down(rec: Recording) -> ClaimResult:
    title = "services scale down when load drops"
    drop, push = rec.act("drop"), rec.act("push")
    if drop is None or push is None:
        return _missing("scale_down", title, "drop")
    service = str(push.detail.get("service", ""))
    series = f"series applied.{service}"
    downs = [e for e in scale_events(rec, service) if e[0] >= drop.started_at and e[2] < e[1]]
    if not downs:
        waited = rec.ended_at - drop.started_at
        return ClaimResult(
            "scale_down", title, False, None, "s",
            f"no scale-down of {service} within {waited:.0f}s of the drop ({series}; docs "
            f"scalingDecisions: stabilisation is {t.SCALE_DOWN_STABILISATION_SEC}s)",
            series, {"service": service, "waitedSec": _r(waited)},
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
        "scale_down", title, ok, _r(took), "s", why, series,
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
        return _missing("no_degradation", title, "push")
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
            {"at": at, "from": old, "to": new, "errorPct": _r(err_pct, 3),
             "p95MsBefore": _r(p95_before), "p95MsAfter": _r(p95_after), "requests": n}
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
        "no_degradation", title, failed is None, _r(worst, 3), "% errors", why,
        "series load.errors", {"service": service, "events": rows},
    )  # fmt: skip


def isolation(rec: Recording) -> ClaimResult:
    title = "automatic isolation on critical errors"
    act = rec.act("isolate")
    if act is None:
        return _missing("isolation", title, "isolate")
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
            "isolation", title, False, _r(took), "s",
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
    return ClaimResult("isolation", title, ok, _r(took), "s", why, ref, detail)


# ------------------------------------------------------------------ deploys


def _deployment(rec: Recording, label: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = rec.docs.get("deployments", {}).get(label)
    return found


def canary_steps(rec: Recording) -> ClaimResult:
    title = "canary 5% -> 25% -> 100%"
    dep = _deployment(rec, "good")
    if dep is None:
        return _missing("canary_steps", title, "canary_good")
    ref = f"doc pack391_deployments/{dep.get('deploymentId')}"
    steps: list[int] = []
    for h in dep.get("history", []):
        pct = int(h.get("trafficPercent", 0))
        if pct and (not steps or steps[-1] != pct):
            steps.append(pct)
    wanted = list(t.CANARY_STEPS_PCT)
    in_order = [p for p in steps if p in wanted] == wanted
    phase = dep.get("phase")
    reached = next(
        (float(h["at"]) for h in dep.get("history", []) if int(h.get("trafficPercent", 0)) == 100),
        None,
    )
    minutes = None if reached is None else (reached - float(dep.get("startedAt", reached))) / 60
    detail = {"deploymentId": dep.get("deploymentId"), "steps": steps, "phase": phase}
    if not in_order or phase != "succeeded":
        return ClaimResult(
            "canary_steps", title, False, _r(minutes), "min to 100%",
            f"traffic went {' -> '.join(map(str, steps)) or 'nowhere'}%, phase {phase} "
            f"(series canary.good; {ref} history)",
            ref, detail,
        )  # fmt: skip
    return ClaimResult(
        "canary_steps", title, True, _r(minutes), "min to 100%",
        f"{' -> '.join(map(str, steps))}% then succeeded, 100% after {minutes:.1f} min",
        ref, detail,
    )  # fmt: skip


def auto_rollback(rec: Recording) -> ClaimResult:
    title = "automatic rollback on anomalies"
    dep = _deployment(rec, "bad")
    if dep is None:
        return _missing("auto_rollback", title, "canary_bad")
    ref = f"doc pack391_deployments/{dep.get('deploymentId')}"
    phase = dep.get("phase")
    auto = [
        h for h in dep.get("history", [])
        if h.get("phase") in ("rolling_back", "rolled_back") and not h.get("manual")
    ]  # fmt: skip
    reason = dep.get("reason") or ""
    detail = {"deploymentId": dep.get("deploymentId"), "phase": phase, "reason": reason}
    if phase != "rolled_back" or not auto:
        return ClaimResult(
            "auto_rollback", title, False, None, "",
            f"the bad revision ended {phase}, not rolled back by the monitor "
            f"({ref} history; series canary.bad)",
            ref, detail,
        )  # fmt: skip
    return ClaimResult(
        "auto_rollback", title, True, None, "", f"rolled back by the judge: {reason}"[:200],
        ref, detail,
    )  # fmt: skip


def pre_deploy_gates(rec: Recording) -> ClaimResult:
    title = "pre-deployment gates"
    gates = rec.docs.get("gates")
    if gates is None:
        return _missing("pre_deploy_gates", title, "gates")
    report = gates.get("report") or {}
    ref = f"doc pack391_deploy_reports/{report.get('reportId', '?')}"
    rows = report.get("gates", [])
    failed = [g["name"] for g in rows if g.get("status") == "fail"]
    passed = sum(1 for g in rows if g.get("status") == "pass")
    refusal = gates.get("unvalidatedStart") or {}
    refused = refusal.get("status") == "FAILED_PRECONDITION"
    detail = {"gates": rows, "unvalidatedStart": refusal}
    if not report.get("passed") or failed:
        return ClaimResult(
            "pre_deploy_gates", title, False, float(passed), f"of {len(rows)} gates",
            f"the good version's gates failed: {', '.join(failed) or 'report not passed'} ({ref})",
            ref, detail,
        )  # fmt: skip
    if not refused:
        return ClaimResult(
            "pre_deploy_gates", title, False, float(passed), f"of {len(rows)} gates",
            f"a version with no passing report was not refused: {refusal.get('status')} "
            "(docs gates.unvalidatedStart)",
            "docs gates.unvalidatedStart", detail,
        )  # fmt: skip
    return ClaimResult(
        "pre_deploy_gates", title, True, float(passed), f"of {len(rows)} gates",
        f"{passed} gates passed ({len(rows) - passed} skipped); an unvalidated version was refused",
        ref, detail,
    )  # fmt: skip


def rollback_within(rec: Recording) -> ClaimResult:
    """Seconds from the first bad minute (the bad canary's first traffic) to canary
    traffic at 0 %, measured on the sampled ``canary.bad`` series."""
    title = "under 1 minute to detect and roll back"
    dep = _deployment(rec, "bad")
    if dep is None:
        return _missing("rollback_within", title, "canary_bad")
    pts = rec.points("canary.bad")
    first = next((at for at, v in pts if v > 0), None)
    if first is None:
        return ClaimResult(
            "rollback_within", title, False, None, "s",
            "the bad canary never took traffic (series canary.bad)", "series canary.bad", {},
        )  # fmt: skip
    back = next((at for at, v in pts if at > first and v == 0), None)
    detail = {"firstTrafficAt": first, "zeroAt": back, "deploymentId": dep.get("deploymentId"),
              "firstTrafficSecondOfMinute": round(first % 60, 1)}  # fmt: skip
    if back is None:
        return ClaimResult(
            "rollback_within", title, False, None, "s",
            "the bad canary's traffic never went back to 0% (series canary.bad)",
            "series canary.bad", detail,
        )  # fmt: skip
    took = back - first
    ok = took <= ROLLBACK_WITHIN_SEC
    why = (
        f"bad canary's traffic at 0% {took:.0f}s after its first traffic"
        if ok
        else f"{took:.0f}s from the first bad traffic to 0%, over {ROLLBACK_WITHIN_SEC}s "
        f"(series canary.bad; doc pack391_deployments/{dep.get('deploymentId')} analyses)"
    )
    return ClaimResult(
        "rollback_within", title, ok, _r(took), "s", why, "series canary.bad", detail
    )


# ------------------------------------------------------------------ traffic protection


def ddos_detection(rec: Recording) -> ClaimResult:
    """Each scripted attack detected within ``DDOS_DETECTION_INTERVAL_SEC`` of its start,
    by a detection of its kind that was mitigated (a block or DDoS mode)."""
    title = "DDoS detection within 60 s with auto-mitigation"
    attacks = [a for a in rec.acts if a.name.startswith("attack_")]
    if not attacks:
        return _missing("ddos_detection", title, "attack_single")
    detections = rec.docs.get("detections", [])
    rows: list[dict[str, Any]] = []
    failure: tuple[str, str] | None = None
    for attack in attacks:
        kind = str(attack.detail.get("kind"))
        found = sorted(
            (d for d in detections
             if d.get("kind") == kind and float(d.get("detectedAt", 0)) >= attack.started_at),
            key=lambda d: float(d["detectedAt"]),
        )  # fmt: skip
        if not found:
            rows.append({"attack": attack.name, "kind": kind, "detectedAfterSec": None})
            failure = failure or (
                f"{kind} starting at +{attack.started_at - rec.started_at:.0f}s was never detected "
                f"(series attack.rps; docs detections)", "docs detections",
            )  # fmt: skip
            continue
        d = found[0]
        took = float(d["detectedAt"]) - attack.started_at
        ref = f"doc pack391_ddos_detections/{d.get('id')}"
        rows.append({"attack": attack.name, "kind": kind, "detectedAfterSec": _r(took),
                     "mitigated": bool(d.get("mitigated")), "id": d.get("id"),
                     "attackSecondOfMinute": round(attack.started_at % 60, 1)})  # fmt: skip
        if took > DDOS_DETECTION_INTERVAL_SEC:
            failure = failure or (f"{kind} detected {took:.0f}s after it began ({ref})", ref)
        elif not d.get("mitigated"):
            failure = failure or (f"{kind} detected but not mitigated ({ref}: held)", ref)
    worst = max((float(r["detectedAfterSec"] or 0.0) for r in rows), default=0.0)
    if failure is not None:
        return ClaimResult(
            "ddos_detection",
            title,
            False,
            _r(worst),
            "s",
            failure[0],
            failure[1],
            {"attacks": rows},
        )
    return ClaimResult(
        "ddos_detection", title, True, _r(worst), "s",
        "; ".join(f"{r['kind']} detected in {r['detectedAfterSec']:.0f}s, mitigated" for r in rows),
        "docs detections", {"attacks": rows},
    )  # fmt: skip


def effective_limit(cls: str, ddos_mode: bool) -> int:
    """A class's limit per minute; in DDoS mode every class but staff and service is scaled by
    ``DDOS_MODE_LIMIT_FACTOR`` (as ``shared.ratelimit.policy.scaled``: floor, at least 1)."""
    limit = t.RATE_LIMIT_PER_MIN.get(cls, -1)
    if limit < 0 or not ddos_mode or cls in ("staff", "service"):
        return limit
    return max(1, math.floor(limit * t.DDOS_MODE_LIMIT_FACTOR + 1e-9))


def class_enforced(probe: dict[str, Any]) -> bool:
    """A class probe's first denial came after its limit (halved while DDoS mode was on:
    ``ddosMode``) and no later than that plus what GCRA refilled while the probe ran (one
    request per 60/limit seconds), with a ``retryAfterSec``."""
    limit = effective_limit(str(probe.get("class")), bool(probe.get("ddosMode")))
    denied = probe.get("deniedAt")
    if limit < 0 or denied is None or not (probe.get("retryAfterSec") or 0) > 0:
        return False
    refilled = math.floor(float(probe.get("elapsedSec") or 0.0) * limit / t.RATE_LIMIT_PERIOD_SEC)
    return bool(limit + 1 <= int(denied) <= limit + 1 + refilled)


def rate_limits(rec: Recording) -> ClaimResult:
    """Every class denies past its limit (with ``retryAfterSec``), and every callable the
    server lists answers ``RESOURCE_EXHAUSTED`` once its caller's buckets are spent."""
    title = "rate limits on every endpoint"
    rl = rec.docs.get("rateLimits")
    if rl is None:
        return _missing("rate_limits", title, "rate_limits")
    classes = rl.get("classes", [])
    endpoints = rl.get("endpoints", [])
    wrong_class = [c["class"] for c in classes if not class_enforced(c)]
    open_endpoints = [e["name"] for e in endpoints if e.get("status") != "RESOURCE_EXHAUSTED"]
    limited = len(endpoints) - len(open_endpoints)
    detail = {"classes": classes, "endpoints": endpoints}
    missing = sorted(set(t.RATE_LIMIT_PER_MIN) - {c["class"] for c in classes})
    if wrong_class or missing:
        return ClaimResult(
            "rate_limits", title, False, float(limited), f"of {len(endpoints)} endpoints",
            f"class limits not enforced as configured: {', '.join(wrong_class + missing)} "
            "(docs rateLimits.classes)",
            "docs rateLimits.classes", detail,
        )  # fmt: skip
    if open_endpoints or not endpoints:
        return ClaimResult(
            "rate_limits", title, False, float(limited), f"of {len(endpoints)} endpoints",
            f"not limited: {', '.join(open_endpoints[:5]) or 'no endpoint probed'} "
            "(docs rateLimits.endpoints)",
            "docs rateLimits.endpoints", detail,
        )  # fmt: skip
    return ClaimResult(
        "rate_limits", title, True, float(limited), f"of {len(endpoints)} endpoints",
        f"{len(classes)} classes deny just past their limit"
        f"{' (halved: DDoS mode on)' if any(c.get('ddosMode') for c in classes) else ''} "
        "with retryAfterSec; "
        f"all {limited} callables limited",
        "docs rateLimits", detail,
    )  # fmt: skip


def brute_force(rec: Recording) -> ClaimResult:
    """A user's own failure reports block that user at attempt limit + 1 and leave its
    address (and a neighbour behind it) alone; server-observed failures for
    ``BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS`` distinct accounts from one address block it."""
    title = "brute force blocked"
    bf = rec.docs.get("bruteForce")
    if bf is None:
        return _missing("brute_force", title, "brute_force")
    attempts = bf.get("attempts", [])
    blocked_at = next((a["n"] for a in attempts if a.get("blocked")), None)
    blocks = [b for b in bf.get("blocks", []) if b.get("kind") == "brute_force"]
    scoped = {(str(b.get("scope")), str(b.get("subject"))) for b in blocks}
    user_blocked = ("user", str(bf.get("uid"))) in scoped
    own_address = ("ip", str(bf.get("address"))) in scoped
    stuffed = ("ip", str(bf.get("stuffingAddress"))) in scoped
    stuffing = bf.get("stuffing", [])
    stuffing_at = next((a["n"] for a in stuffing if a.get("blocked")), None)
    ref = f"doc pack391_blocks/{blocks[0].get('id')}" if blocks else "docs bruteForce"
    detail = {
        "attempts": attempts,
        "userBlocked": user_blocked,
        "ownAddressBlocked": own_address,
        "neighbourAllowed": bf.get("neighbourAllowed"),
        "stuffing": stuffing,
        "stuffingAddressBlocked": stuffed,
    }
    wanted = t.BRUTE_FORCE_MAX_FAILURES_COUNT + 1
    if blocked_at is None:
        return ClaimResult(
            "brute_force", title, False, None, "attempts",
            f"{len(attempts)} failed attempts and never blocked (docs bruteForce.attempts)",
            "docs bruteForce.attempts", detail,
        )  # fmt: skip
    problems = []
    if blocked_at > wanted or not user_blocked:
        problems.append(f"user blocked at attempt {blocked_at} (want {wanted})")
    if own_address or bf.get("neighbourAllowed") is not True:
        problems.append("a user's own reports blocked its address or its neighbour")
    if not stuffed or stuffing_at != t.BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS:
        problems.append(
            f"credential stuffing blocked the address at account {stuffing_at} "
            f"(want {t.BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS})"
        )
    if problems:
        return ClaimResult(
            "brute_force", title, False, float(blocked_at), "attempts",
            "; ".join(problems) + " (docs bruteForce)", ref, detail,
        )  # fmt: skip
    return ClaimResult(
        "brute_force", title, True, float(blocked_at), "attempts",
        f"attempt {blocked_at} refused the user, its address untouched; failures for "
        f"{stuffing_at} accounts blocked the stuffing address",
        ref, detail,
    )  # fmt: skip


def population(rec: Recording) -> ClaimResult:
    """Launch-day traffic (carrier NAT, IPv6 /64s, an app backend, heavy users) under every
    attack of issue 21: per attack, legitimate requests denied at most 0.1 % and no
    established user denied because of someone else's traffic, the attack's requests
    admitted from the first full minute after detection at most 1 %, Redis memory
    bounded (``stack.population``'s goals, each PASS, FAIL or n/a)."""
    title = "launch-day population under attack"
    rows = rec.docs.get("population")
    if rows is None:
        return _missing("population", title, "population")
    failed = [
        f"{r['scenario']}: {', '.join(k for k, v in r['goals'].items() if v == 'FAIL')}"
        for r in rows
        if "FAIL" in r["goals"].values()
    ]
    worst = max((float(r.get("legitDeniedPct") or 0.0) for r in rows), default=0.0)
    detail = {"rows": rows}
    if failed or not rows:
        return ClaimResult(
            "population", title, False, _r(worst), "% legit denied",
            f"goals failed: {'; '.join(failed) or 'no scenario ran'} (docs population)",
            "docs population", detail,
        )  # fmt: skip
    return ClaimResult(
        "population", title, True, _r(worst), "% legit denied",
        f"{len(rows)} scenarios, every goal met; at most {worst:g} % of legitimate requests "
        "denied",
        "docs population", detail,
    )  # fmt: skip


# ------------------------------------------------------------------ ops, markets, backups


def metrics_history(rec: Recording) -> ClaimResult:
    """A history point every minute of the rehearsal, each kept 30 days (``expireAt``)."""
    title = "metrics every minute with 30-day history"
    hist = rec.docs.get("history")
    if hist is None:
        return _missing("metrics_history", title, "history")
    minutes = hist.get("minutes", [])
    # each run writes the point of the minute it ran in: every minute that began after the
    # start and at least HISTORY_RUN_SLACK_SEC before the end must have one
    first = (int(rec.started_at) // 60 + 1) * 60
    last = int(rec.ended_at - HISTORY_RUN_SLACK_SEC)
    wanted = list(range(first, last + 1, 60))
    have = {int(float(m["at"])) // 60 * 60 for m in minutes}
    gaps = [m for m in wanted if m not in have]
    keep = t.METRICS_HISTORY_RETENTION_DAYS * 86400
    short = [
        m.get("id") for m in minutes
        if m.get("expireAt") is None
        or abs(float(m["expireAt"]) - float(m["at"]) - keep) > HISTORY_EXPIRE_SLACK_SEC
    ]  # fmt: skip
    written = float(len([m for m in wanted if m in have]))
    detail = {"wantedMinutes": len(wanted), "gaps": gaps, "badExpiry": short}
    if not wanted:
        return ClaimResult(
            "metrics_history", title, False, written, "min",
            "the rehearsal was shorter than one complete minute (nothing to judge)",
            "docs history", detail,
        )  # fmt: skip
    if gaps:
        return ClaimResult(
            "metrics_history", title, False, written, "min",
            f"{len(gaps)} of {len(wanted)} minutes have no history point, first at "
            f"+{gaps[0] - rec.started_at:.0f}s "
            "(docs history; collection pack391_ops_metrics_history)",
            "docs history", detail,
        )  # fmt: skip
    if short:
        return ClaimResult(
            "metrics_history", title, False, written, "min",
            f"points not kept {t.METRICS_HISTORY_RETENTION_DAYS} days: "
            f"pack391_ops_metrics_history/{short[0]} (expireAt)",
            f"doc pack391_ops_metrics_history/{short[0]}", detail,
        )  # fmt: skip
    return ClaimResult(
        "metrics_history", title, True, written, "min",
        f"{written:.0f} of {len(wanted)} minutes written, each expiring after "
        f"{t.METRICS_HISTORY_RETENTION_DAYS} days",
        "docs history", detail,
    )  # fmt: skip


def market_rollout(rec: Recording) -> ClaimResult:
    """A market soft-launched with ``trafficLimit`` N admits exactly N of more signups,
    then goes public."""
    title = "market rollout"
    m = rec.docs.get("market")
    if m is None:
        return _missing("market_rollout", title, "market")
    limit, admitted = int(m.get("trafficLimit", -1)), int(m.get("admitted", -1))
    ref = f"doc pack391_markets/{m.get('country')}"
    detail = dict(m)
    if admitted != limit:
        return ClaimResult(
            "market_rollout", title, False, float(admitted), f"admitted of {limit}",
            f"{admitted} admitted for a limit of {limit} ({ref}; docs market.answers)", ref, detail,
        )  # fmt: skip
    if m.get("finalStatus") != "public" or not m.get("publicAdmits"):
        return ClaimResult(
            "market_rollout", title, False, float(admitted), f"admitted of {limit}",
            f"the market did not open to the public: status {m.get('finalStatus')} ({ref})",
            ref, detail,
        )  # fmt: skip
    return ClaimResult(
        "market_rollout", title, True, float(admitted), f"admitted of {limit}",
        f"soft launch admitted exactly {limit} of {m.get('signups')} signups, then public",
        ref, detail,
    )  # fmt: skip


def restore_drill(rec: Recording) -> ClaimResult:
    title = "restore drill (RTO)"
    drill = rec.docs.get("drill")
    backup = rec.docs.get("backup")
    if drill is None or backup is None:
        return _missing("restore_drill", title, "drill")
    ref = f"doc pack391_backup_drills/{drill.get('drillId')}"
    rto = drill.get("durationSec")
    detail = {"backup": backup, "drill": drill}
    if backup.get("status") != "complete":
        return ClaimResult(
            "restore_drill", title, False, _r(rto), "s",
            f"backup {backup.get('backupId')} is {backup.get('status')} "
            f"(doc pack391_backups/{backup.get('backupId')})",
            f"doc pack391_backups/{backup.get('backupId')}", detail,
        )  # fmt: skip
    if not drill.get("ok") or rto is None or float(rto) > t.RTO_SEC:
        return ClaimResult(
            "restore_drill", title, False, _r(rto), "s",
            f"drill ok={drill.get('ok')} in {rto}s (RTO target {t.RTO_SEC}s; {ref})", ref, detail,
        )  # fmt: skip
    return ClaimResult(
        "restore_drill", title, True, _r(float(rto)), "s",
        f"{drill.get('documents')} documents restored and checked in {float(rto):.1f}s "
        f"(RTO target {t.RTO_SEC}s)",
        ref, detail,
    )  # fmt: skip


CLAIMS: dict[str, Callable[[Recording], ClaimResult]] = {
    "scale_up": scale_up,
    "scale_down": scale_down,
    "no_degradation": no_degradation,
    "isolation": isolation,
    "canary_steps": canary_steps,
    "auto_rollback": auto_rollback,
    "pre_deploy_gates": pre_deploy_gates,
    "rollback_within": rollback_within,
    "ddos_detection": ddos_detection,
    "rate_limits": rate_limits,
    "brute_force": brute_force,
    "population": population,
    "metrics_history": metrics_history,
    "market_rollout": market_rollout,
    "restore_drill": restore_drill,
}
"""The twelve claims of the spec, then the launch-day population (issue 21), the market
rollout and the restore drill."""


def judge(rec: Recording, names: Sequence[str] | None = None) -> list[ClaimResult]:
    """The claims asked for (all by default), in the order of :data:`CLAIMS`."""
    wanted = list(CLAIMS) if names is None else [n for n in CLAIMS if n in set(names)]
    return [CLAIMS[name](rec) for name in wanted]


__all__ = ["CLAIMS", "Act", "ClaimResult", "judge"]
