"""The deploy claims: canary steps, automatic rollback, pre-deploy gates and the
rollback's time budget."""

from __future__ import annotations

from typing import Any

from shared import thresholds as t
from stack.constants import ROLLBACK_WITHIN_SEC
from stack.rehearse.claims.result import ClaimResult, not_run, rounded
from stack.rehearse.recording import Recording


def _deployment(rec: Recording, label: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = rec.docs.get("deployments", {}).get(label)
    return found


def canary_steps(rec: Recording) -> ClaimResult:
    title = "canary 5% -> 25% -> 100%"
    dep = _deployment(rec, "good")
    if dep is None:
        return not_run("canary_steps", title, "canary_good")
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
            "canary_steps", title, False, rounded(minutes), "min to 100%",
            f"traffic went {' -> '.join(map(str, steps)) or 'nowhere'}%, phase {phase} "
            f"(series canary.good; {ref} history)",
            ref, detail,
        )  # fmt: skip
    return ClaimResult(
        "canary_steps", title, True, rounded(minutes), "min to 100%",
        f"{' -> '.join(map(str, steps))}% then succeeded, 100% after {minutes:.1f} min",
        ref, detail,
    )  # fmt: skip


def auto_rollback(rec: Recording) -> ClaimResult:
    title = "automatic rollback on anomalies"
    dep = _deployment(rec, "bad")
    if dep is None:
        return not_run("auto_rollback", title, "canary_bad")
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
        return not_run("pre_deploy_gates", title, "gates")
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
        return not_run("rollback_within", title, "canary_bad")
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
        "rollback_within", title, ok, rounded(took), "s", why, "series canary.bad", detail
    )
