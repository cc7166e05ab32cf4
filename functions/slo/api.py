"""What the SLO area publishes for the other areas: the budgets as the ops console shows
them (one document read)."""

from __future__ import annotations

from google.cloud import firestore

from functions.slo.store import SloStateStore
from shared.models.ops import OpsLiveSlo, SloActionView, SloScopeView
from shared.models.slo import BurnLevel, SloStateDoc


def _order(scope: str) -> tuple[int, str]:
    kind = scope.partition(":")[0]
    return ({"platform": 0, "class": 1, "service": 2}.get(kind, 3), scope)


def console_view(state: SloStateDoc) -> OpsLiveSlo:
    """Every scope (platform, then classes, services, callables with an objective) and
    every action of the state."""
    scopes = [
        SloScopeView(
            scope=name,
            level=st.level.value,
            why=st.why,
            burn_1h=st.availability_burn.get("1h")
            if st.why.startswith("availability") or st.level is BurnLevel.NONE
            else st.latency_burn.get("1h"),
            burn_5m=st.availability_burn.get("5m")
            if st.why.startswith("availability") or st.level is BurnLevel.NONE
            else st.latency_burn.get("5m"),
            availability_budget_left_pct=st.availability_budget_left_pct,
            latency_budget_left_pct=st.latency_budget_left_pct,
        )
        for name, st in sorted(state.scopes.items(), key=lambda kv: _order(kv[0]))
    ]
    actions = [
        SloActionView(
            action=a.value,
            mode=s.mode.value,
            wanted=s.wanted,
            enforced=s.enforced,
            reason=s.reason,
            scopes=s.scopes,
            classes=s.classes,
            lifted_until=s.lifted_until,
            lifted_by=s.lifted_by,
        )
        for a, s in sorted(state.actions.items(), key=lambda kv: kv[0].value)
    ]
    return OpsLiveSlo(minute=state.minute, scopes=scopes, actions=actions)


def budgets(db: firestore.Client) -> OpsLiveSlo | None:
    """The console's view of ``pack391_slo/current``; None before the first run."""
    state = SloStateStore(db).get()
    return console_view(state) if state is not None else None
