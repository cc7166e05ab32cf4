"""The claims of the launch spec, each a pure function of a :class:`Recording`.

Every claim answers pass/fail, the measured figure with its unit, and, when it fails,
one line saying why and where the evidence is (a timeline series, an act, or a
document id). Nothing here reads the stack or the clock.

Budgets are the spec's numbers (:mod:`shared.thresholds`, :mod:`stack.constants`) where it
has them; the few that are the rehearsal's own sit with their claims, each derived from the
spec's intervals. One module per area (:mod:`.scaling`, :mod:`.deploys`, :mod:`.protection`,
:mod:`.operations`, :mod:`.budgets`), the shared record in :mod:`.result`, and the one
table of claims here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stack.rehearse.claims.budgets import budgets_act
from stack.rehearse.claims.deploys import (
    auto_rollback,
    canary_not_fooled,
    canary_steps,
    pre_deploy_gates,
    rollback_within,
)
from stack.rehearse.claims.operations import (
    HISTORY_EXPIRE_SLACK_SEC,
    HISTORY_RUN_SLACK_SEC,
    market_rollout,
    metrics_history,
    restore_drill,
)
from stack.rehearse.claims.protection import (
    brute_force,
    class_enforced,
    ddos_detection,
    effective_limit,
    population,
    rate_limits,
)
from stack.rehearse.claims.result import ClaimResult
from stack.rehearse.claims.scaling import (
    ISOLATION_WITHIN_SEC,
    SCALE_DOWN_WITHIN_SEC,
    SCALE_EVENT_WINDOW_SEC,
    SCALE_UP_WITHIN_SEC,
    breach_at,
    isolation,
    no_degradation,
    scale_down,
    scale_events,
    scale_up,
)
from stack.rehearse.recording import Act, Recording

CLAIMS: dict[str, Callable[[Recording], ClaimResult]] = {
    "scale_up": scale_up,
    "scale_down": scale_down,
    "no_degradation": no_degradation,
    "isolation": isolation,
    "canary_steps": canary_steps,
    "auto_rollback": auto_rollback,
    "pre_deploy_gates": pre_deploy_gates,
    "rollback_within": rollback_within,
    "canary_not_fooled": canary_not_fooled,
    "ddos_detection": ddos_detection,
    "rate_limits": rate_limits,
    "brute_force": brute_force,
    "population": population,
    "metrics_history": metrics_history,
    "market_rollout": market_rollout,
    "restore_drill": restore_drill,
    "budgets_act": budgets_act,
}
"""The twelve claims of the spec (with, beside the deploy claims, the canary judge
during an attack), then the launch-day population, the market rollout, the restore drill
and the error budgets' deploy freeze."""


def judge(rec: Recording, names: Sequence[str] | None = None) -> list[ClaimResult]:
    """The claims asked for (all by default), in the order of :data:`CLAIMS`."""
    wanted = list(CLAIMS) if names is None else [n for n in CLAIMS if n in set(names)]
    return [CLAIMS[name](rec) for name in wanted]


__all__ = [
    "CLAIMS",
    "HISTORY_EXPIRE_SLACK_SEC",
    "HISTORY_RUN_SLACK_SEC",
    "ISOLATION_WITHIN_SEC",
    "SCALE_DOWN_WITHIN_SEC",
    "SCALE_EVENT_WINDOW_SEC",
    "SCALE_UP_WITHIN_SEC",
    "Act",
    "ClaimResult",
    "auto_rollback",
    "breach_at",
    "brute_force",
    "budgets_act",
    "canary_not_fooled",
    "canary_steps",
    "class_enforced",
    "ddos_detection",
    "effective_limit",
    "isolation",
    "judge",
    "market_rollout",
    "metrics_history",
    "no_degradation",
    "population",
    "pre_deploy_gates",
    "rate_limits",
    "restore_drill",
    "rollback_within",
    "scale_down",
    "scale_events",
    "scale_up",
]
