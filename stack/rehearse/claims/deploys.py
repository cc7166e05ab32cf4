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


# ------------------------------------------------------------------ during an attack

PLATFORM_PAUSE_WHY = "the platform explains the breach"
"""The ``why`` of a pause the judge's platform context explains (policy.phases)."""

DDOS_SIGNALS = frozenset({"ddos_mode", "ddos_detection"})


def _overlap_sec(rec: Recording, name: str) -> float:
    """Seconds the act ``name`` ran while an attack act ran."""
    act = rec.act(name)
    if act is None:
        return 0.0
    end = act.ended_at or rec.ended_at
    return sum(
        max(0.0, min(end, a.ended_at or rec.ended_at) - max(act.started_at, a.started_at))
        for a in rec.acts
        if a.name.startswith("attack_")
    )


def _platform_pauses(dep: dict[str, Any]) -> tuple[float, list[str], list[str]]:
    """(seconds held for the platform, the signals named, what is wrong with the pauses):
    every ``paused`` must be the platform's and followed by a ``resumed``."""
    held, kinds, wrong = 0.0, set[str](), list[str]()
    history = dep.get("history", [])
    for i, h in enumerate(history):
        if h.get("event") != "paused":
            continue
        if h.get("why") != PLATFORM_PAUSE_WHY:
            wrong.append(f"paused: {h.get('why')}")
            continue
        kinds.update(h.get("signals") or [])
        resumed = next((r for r in history[i + 1 :] if r.get("event") == "resumed"), None)
        if resumed is None:
            wrong.append("paused for the platform, never resumed")
            continue
        kinds.update(resumed.get("signals") or [])
        held += float(resumed["at"]) - float(h["at"])
    return held, sorted(kinds), wrong


def _seen(dep: dict[str, Any]) -> tuple[int, int, list[str]]:
    """(judged minutes with a DDoS signal, judged minutes, every signal kind seen) of the
    minute monitor's analyses (the fast judge's read no platform)."""
    minutes = [j for j in dep.get("judged", []) if j.get("signals") is not None]
    ddos = sum(1 for j in minutes if DDOS_SIGNALS & set(j["signals"]))
    kinds = sorted({k for j in minutes for k in j["signals"]})
    return ddos, len(minutes), kinds


def canary_not_fooled(rec: Recording) -> ClaimResult:
    """During an attack, a clean canary is promoted (a pause only the platform's, then
    resumed) and a bad one rolled back by the judge."""
    claim, title = "canary_not_fooled", "the canary judge is not fooled by the platform"
    good, bad = _deployment(rec, "attack_good"), _deployment(rec, "attack_bad")
    for label, dep in (("attack_bad", bad), ("attack_good", good)):
        act = rec.act(f"canary_{label}")
        refused = act is not None and act.detail.get("validation", {}).get("passed") is False
        if dep is None and refused:
            assert act is not None
            failed = ", ".join(act.detail["validation"].get("failed") or []) or "report not passed"
            return ClaimResult(
                claim, title, False, None, "min paused",
                f"canary_{label} was not started: the pre-deploy gates refused it ({failed})",
                f"act canary_{label}", {"validation": act.detail["validation"]},
            )  # fmt: skip
        if dep is None:
            return not_run(claim, title, f"canary_{label}")
    assert good is not None and bad is not None
    ref = f"doc pack391_deployments/{good.get('deploymentId')}"
    overlap = {n: round(_overlap_sec(rec, f"canary_{n}"), 1) for n in ("attack_bad", "attack_good")}
    held, kinds, wrong = _platform_pauses(good)
    ddos_minutes, judged, seen = _seen(good)
    rolled = [h for h in good.get("history", []) if h.get("event") == "rollback"]
    auto = [
        h for h in bad.get("history", [])
        if h.get("phase") in ("rolling_back", "rolled_back") and not h.get("manual")
    ]  # fmt: skip
    detail = {
        "good": {"deploymentId": good.get("deploymentId"), "phase": good.get("phase"),
                 "heldSec": round(held, 1), "pauseSignals": kinds, "judgedMinutes": judged,
                 "ddosMinutes": ddos_minutes, "signalsSeen": seen},
        "bad": {"deploymentId": bad.get("deploymentId"), "phase": bad.get("phase"),
                "reason": bad.get("reason")},
        "attackOverlapSec": overlap,
    }  # fmt: skip
    figure = round(held / 60, 1)

    def fails(why: str, evidence: str = ref) -> ClaimResult:
        return ClaimResult(claim, title, False, figure, "min paused", why, evidence, detail)

    idle = [n for n, sec in overlap.items() if sec <= 0]
    if idle:
        return fails(
            f"canary_{idle[0]} ran while no attack did: nothing was judged during an attack "
            "(acts attack_single, attack_distributed)",
            f"act canary_{idle[0]}",
        )
    if rolled or good.get("phase") in ("rolling_back", "rolled_back"):
        why = rolled[-1].get("why") if rolled else good.get("reason")
        return fails(f"the clean canary was rolled back during the attack: {why} ({ref} judged)")
    if wrong:
        return fails(f"the clean canary {wrong[0]} ({ref} history)")
    if good.get("phase") != "succeeded":
        return fails(f"the clean canary ended {good.get('phase')}, not promoted ({ref} history)")
    bad_ref = f"doc pack391_deployments/{bad.get('deploymentId')}"
    if bad.get("phase") != "rolled_back" or not auto:
        return fails(
            f"the bad canary ended {bad.get('phase')} during the attack, not rolled back by "
            f"the judge ({bad_ref} history)",
            bad_ref,
        )
    saw = (
        f"the judge saw {', '.join(seen)}, a DDoS signal in {ddos_minutes} of its {judged} "
        "judged minutes"
        if seen
        else f"no platform signal in its {judged} judged minutes"
    )
    good_act = rec.act("canary_attack_good")
    mode_on = good_act is not None and any(
        v > 0 for _, v in rec.points("ddos.mode", good_act.started_at, good_act.ended_at)
    )
    detail["ddosModeOn"] = mode_on
    clean = (
        f"paused for the platform {held / 60:.1f} min ({', '.join(kinds)}), then promoted"
        if held
        else f"never paused ({saw}; no minute's breach was the platform's), promoted"
    )
    return ClaimResult(
        claim, title, True, figure, "min paused",
        f"clean canary {clean}; bad canary rolled back: {bad.get('reason')}; DDoS mode "
        f"{'on' if mode_on else 'never on'} during the clean canary"[:400], ref, detail,
    )  # fmt: skip
