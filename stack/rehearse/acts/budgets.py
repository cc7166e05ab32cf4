"""The budgets act (after the isolation): a burning error budget freezes deploys of its
service, and an operator's lift lets them through again.

The isolation's failing revision burns notification-service's availability budget; the
SLO evaluator (``pack391_evaluateSlos``, every minute, on the scale guard's per-service
metrics of the minute that ended two minutes ago) then wants the ``deploy_freeze`` with
that service's scope. The act waits for ``pack391_getSloStatus`` to show it enforced,
validates a release of the service (``pack391_preDeployValidator`` naming it: the
``error_budget`` gate refuses it), lifts the freeze (``pack391_liftSloAction``), validates
the same release again (it passes), and removes the lift. Everything it saw goes to
``docs["budgets"]``."""

from __future__ import annotations

import logging
import time
from typing import Any

from stack.rehearse.acts.track import Track
from stack.rehearse.calls import Answer
from stack.rehearse.settings import ISOLATED_SERVICE

log = logging.getLogger("pack391.rehearse")

POLL_SEC = 5.0
"""How often the act reads the SLO status while it waits for the burn."""

SCOPE = f"service:{ISOLATED_SERVICE}"


def slo_view(state: dict[str, Any] | None) -> dict[str, Any]:
    """The part of ``pack391_getSloStatus``'s state the claim reads: the service's scope
    (level, why, burn rates, requests) and the deploy freeze."""
    state = state or {}
    scope = (state.get("scopes") or {}).get(SCOPE) or {}
    freeze = (state.get("actions") or {}).get("deploy_freeze") or {}
    return {
        "minute": state.get("minute"),
        "level": scope.get("level"),
        "why": scope.get("why"),
        "availabilityBurn": scope.get("availabilityBurn"),
        "requests": scope.get("requests"),
        "freeze": {k: freeze.get(k) for k in ("mode", "wanted", "enforced", "scopes", "reason",
                                               "liftedUntil")},
    }  # fmt: skip


def burning(view: dict[str, Any]) -> bool:
    """The freeze is enforced and names the service's scope."""
    freeze = view["freeze"]
    return bool(freeze.get("enforced")) and SCOPE in (freeze.get("scopes") or [])


def validation(answer: Answer, at: float) -> dict[str, Any]:
    """One validator answer as the claim reads it."""
    gates = answer.result.get("gates", [])
    budget: dict[str, Any] = next((g for g in gates if g.get("name") == "error_budget"), {})
    return {
        "at": at,
        "status": answer.status,
        "message": answer.message,
        "reportId": answer.result.get("reportId"),
        "passed": answer.result.get("passed"),
        "gates": {g.get("name"): g.get("status") for g in gates},
        "budgetGate": {"status": budget.get("status"),
                       "frozenBy": (budget.get("evidence") or {}).get("frozenBy"),
                       "liftedUntil": (budget.get("evidence") or {}).get("liftedUntil")},
    }  # fmt: skip


class Budgets(Track):
    """The ``budget_freeze`` act."""

    def budgets(self) -> None:
        s = self.stack
        out: dict[str, Any] = {"scope": SCOPE, "waitedSec": self.s.budget_wait_sec}
        self.rec.docs["budgets"] = out
        release = {
            "version": f"v{self.run_id}-budget", "environment": "rehearsal-budget",
            "services": [ISOLATED_SERVICE],
        }  # fmt: skip
        with self.act("budget_freeze", service=ISOLATED_SERVICE) as act:
            deadline = time.time() + self.s.budget_wait_sec
            view: dict[str, Any] = slo_view(None)
            while time.time() < deadline:
                answer = s.call("pack391_getSloStatus", {}, s.ops)
                view = slo_view(answer.result.get("state")) if answer.status == "OK" else view
                if burning(view):
                    out["burnSeenAt"] = time.time()
                    break
                time.sleep(POLL_SEC)
            out["status"] = view
            if "burnSeenAt" not in out:
                act.detail["burnSeen"] = False
                return
            out["refused"] = validation(s.call("pack391_preDeployValidator", release), time.time())
            lifted = s.call("pack391_liftSloAction", {
                "action": "deploy_freeze", "minutes": self.s.budget_lift_min,
                "reason": f"launch rehearsal {self.run_id}: lift the freeze",
            }, s.ops)  # fmt: skip
            out["lift"] = {"at": time.time(), "status": lifted.status, "message": lifted.message,
                           "until": (lifted.result.get("lift") or {}).get("until")}  # fmt: skip
            out["afterLift"] = validation(
                s.call("pack391_preDeployValidator", release), time.time()
            )
            unlifted = s.call("pack391_liftSloAction", {
                "action": "deploy_freeze", "minutes": 0,
                "reason": f"launch rehearsal {self.run_id}: the lift removed",
            }, s.ops)  # fmt: skip
            state = unlifted.result.get("state") or {}
            out["unlift"] = {"at": time.time(), "status": unlifted.status,
                             "enforced": state.get("enforced")}  # fmt: skip
            act.detail["burnSeen"] = True
