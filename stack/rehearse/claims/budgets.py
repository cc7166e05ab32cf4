"""The error budgets' claim: a burn freezes deploys of the burning service, and an
operator's lift lets the same release through (the ``budget_freeze`` act,
:mod:`stack.rehearse.acts.budgets`)."""

from __future__ import annotations

from typing import Any

from stack.rehearse.claims.result import ClaimResult, not_run, rounded
from stack.rehearse.recording import Recording


def _gate(v: dict[str, Any]) -> str | None:
    status: str | None = (v.get("budgetGate") or {}).get("status")
    return status


def budgets_act(rec: Recording) -> ClaimResult:
    """Seconds from the isolated service's first bad request to the deploy freeze seen
    in ``pack391_getSloStatus``; holds when a release of the service was then refused by
    the ``error_budget`` gate and, the freeze lifted, the same release passed."""
    claim, title = "budgets_act", "budgets act: a burn freezes deploys, a lift resumes them"
    b = rec.docs.get("budgets")
    if b is None:
        return not_run(claim, title, "budget_freeze")
    scope = b.get("scope", "service:?")
    iso = rec.act("isolate")
    began = iso.started_at if iso is not None else rec.started_at
    status = b.get("status") or {}
    freeze = status.get("freeze") or {}
    seen = b.get("burnSeenAt")
    # when the freeze came on (the recorder's samples), else when the act first saw it
    # (it waits for the circuit to close first: its first look may be minutes later)
    on = next((t for t, v in rec.points("slo.deploy_freeze", since=began) if v >= 1), None)
    took = None if seen is None else (on if on is not None else float(seen)) - began

    def at(v: dict[str, Any]) -> str:
        return f"+{float(v.get('at', rec.started_at)) - rec.started_at:.0f}s"

    detail = {k: b.get(k) for k in ("status", "refused", "lift", "afterLift", "unlift")}
    evidence = "docs budgets; series slo.deploy_freeze"

    def result(passed: bool, why: str) -> ClaimResult:
        return ClaimResult(claim, title, passed, rounded(took, 0), "s to freeze", why[:300],
                           evidence, detail)  # fmt: skip

    if seen is None:
        return result(False, (
            f"{scope} was not frozen within {b.get('waitedSec', 0):.0f}s of the isolation: "
            f"level {status.get('level')}, requests {status.get('requests')}, deploy_freeze "
            f"wanted {freeze.get('wanted')} enforced {freeze.get('enforced')} scopes "
            f"{freeze.get('scopes')} (evaluated minute {status.get('minute')})"
        ))  # fmt: skip
    refused, lift, after = b.get("refused") or {}, b.get("lift") or {}, b.get("afterLift") or {}
    if refused.get("passed") is not False or _gate(refused) != "fail":
        return result(False, (
            f"while {scope} burned, its release was not refused by error_budget: passed "
            f"{refused.get('passed')}, error_budget {_gate(refused)} "
            f"({refused.get('status')} {refused.get('message') or ''})"
        ))  # fmt: skip
    if lift.get("status") != "OK":
        return result(False, f"the lift was refused: {lift.get('status')} {lift.get('message')}")
    if not after.get("passed") or _gate(after) != "pass":
        others = [n for n, st in (after.get("gates") or {}).items() if st == "fail"]
        return result(False, (
            f"lifted, the same release was still refused: error_budget {_gate(after)}, "
            f"failed gates {', '.join(others) or 'none'} ({after.get('status')})"
        ))  # fmt: skip
    unlift = b.get("unlift") or {}
    if unlift.get("status") != "OK":
        return result(False, f"the lift could not be removed: {unlift.get('status')}")
    frozen_by = ", ".join((refused.get("budgetGate") or {}).get("frozenBy") or [scope])
    return result(True, (
        f"deploys of {scope} frozen {took:.0f}s after its errors began; at {at(refused)} "
        f"({status.get('level')}: {str(status.get('why', '')).removeprefix('availability: ')}) "
        f"its release refused by error_budget ({frozen_by}); lifted, the same release "
        f"passed at {at(after)}; lift removed"
    ))  # fmt: skip
