"""The SLO evaluator's run (``pack391_evaluateSlos``, every minute) and the lift.

One run evaluates the minute that ended two minutes ago
(:func:`~functions.slo.policy.evaluated_minute`):

1. the services' counts of that minute (the scale guard's metrics) are set in Redis
   beside the calls the edges recorded;
2. the minute is written to ``pack391_sli_minutes`` (the source of
   ``loadtest --from-metrics``);
3. six hours of minutes are read back from Redis in one pipeline, and every judged
   scope's burn rates, level and 30-day budget computed (:mod:`functions.slo.policy`);
4. in one transaction on ``pack391_slo/current``: the new state, the actions and an audit
   entry for each action that started, changed or ended (a re-run of a minute already
   evaluated changes nothing);
5. alerts raised or resolved through the one alert model (``source: ops``, kind
   ``slo_burn``, key ``slo:{scope}``), and the actions' snapshot written to Redis for the
   hot paths.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis

from functions.slo import policy
from functions.slo.store import ServiceMinutes, SloStateStore
from shared import thresholds as t
from shared.alerts.store import AlertStore
from shared.audit import Change
from shared.errors import FailedPrecondition
from shared.models.alerts import SYSTEM_ACTOR
from shared.models.slo import (
    ActionLift,
    ActionMode,
    ActionsSnapshot,
    SliCounts,
    SliMinuteDoc,
    SloAction,
    SloStateDoc,
)
from shared.slo.actions import read_shadow, write_actions
from shared.slo.objectives import PLATFORM, Objective
from shared.slo.recorder import read_minutes, write_scope_counts


@dataclass(frozen=True)
class EvaluateReport:
    minute: datetime
    evaluated: bool
    """False: another run had evaluated this minute already."""
    levels: dict[str, str]
    actions: dict[str, dict[str, Any]]


def _split(per: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, SliCounts]]:
    out: dict[str, dict[str, SliCounts]] = {"callables": {}, "classes": {}, "services": {}}
    for scope, raw in per.items():
        kind, _, name = scope.partition(":")
        target = {"callable": "callables", "class": "classes", "service": "services"}.get(kind)
        if target is None or not name:
            continue
        out[target][name] = SliCounts(
            n=int(raw.get("n", 0)), bad=int(raw.get("bad", 0)), slow=int(raw.get("slow", 0))
        )
    return out


class SloService:
    def __init__(
        self,
        state: SloStateStore,
        services: ServiceMinutes,
        client: redis.Redis,
        alerts: AlertStore,
        objectives: Callable[[], Mapping[str, Objective]],
        modes: Callable[[], Mapping[SloAction, ActionMode]],
    ) -> None:
        self._state, self._services, self._redis = state, services, client
        self._alerts, self._objectives, self._modes = alerts, objectives, modes

    def evaluate(self, now: datetime) -> EvaluateReport:
        minute = policy.evaluated_minute(now)
        start = policy.minute_start(minute)
        write_scope_counts(self._redis, minute, self._services.minute(start))
        minutes = read_minutes(self._redis, range(minute - policy.LONGEST_MIN + 1, minute + 1))
        self._state.put_minute(
            policy.minute_id(minute),
            SliMinuteDoc(
                at=start,
                expire_at=start + timedelta(days=t.SLO_MINUTES_RETENTION_DAYS),
                **_split(minutes.get(minute, {})),
            ),
        )
        overrides, modes = self._objectives(), self._modes()
        shadow = read_shadow(self._redis, minute)
        previous_scopes: dict[str, Any] = {}

        def build(before: SloStateDoc | None) -> tuple[SloStateDoc, list[Any]] | None:
            if before is not None and before.minute >= start:
                return None  # evaluated by another run
            previous_scopes.clear()
            previous_scopes.update(before.scopes if before else {})
            rolled = (
                int(before.rolled_until.timestamp()) // 60
                if before and before.rolled_until
                else None
            )
            scopes_now = policy.judged_scopes(minutes, overrides)
            days = policy.roll_days(
                before.days if before else {}, minutes, rolled, minute, scopes_now
            )
            statuses = policy.statuses(minutes, minute, days, overrides)
            shed = policy.next_shed_level(
                before.shed_level if before else 0,
                statuses[PLATFORM].level,
            )
            prev_actions = before.actions if before else {}
            lifts = {
                a: lift for a, lift in (before.lifts if before else {}).items() if lift.until > now
            }
            actions = policy.decide_actions(statuses, prev_actions, lifts, modes, shed, now)
            counts = {
                a: (
                    (
                        before.shadow_counts.get(a, 0)
                        if before and prev_actions.get(a) and prev_actions[a].wanted
                        else 0
                    )
                    + shadow.get(a.value, 0)
                )
                for a, s in actions.items()
                if s.wanted and s.mode is ActionMode.SHADOW
            }
            after = SloStateDoc(
                at=now,
                minute=start,
                scopes=statuses,
                actions=actions,
                lifts=lifts,
                shadow_counts=counts,
                days=days,
                rolled_until=start,
                shed_level=shed,
            )
            audits = [
                (
                    Change(
                        SYSTEM_ACTOR,
                        name,
                        a.reason or "budget recovered",
                        f"slo-{uuid.uuid4().hex[:12]}",
                        now,
                    ),
                    b.model_dump(mode="json", by_alias=True) if b else None,
                    a.model_dump(mode="json", by_alias=True),
                )
                for name, b, a in policy.action_changes(prev_actions, actions)
            ]
            return after, audits

        after = self._state.update(build)
        if after is None:
            current = self._state.get()
            if current is not None:
                self._publish(current, now)
            return EvaluateReport(start, False, {}, {})
        changes = policy.alert_changes(after.scopes, previous_scopes)
        if changes:
            self._alerts.apply(changes, now)
        self._publish(after, now)
        return EvaluateReport(
            start,
            True,
            {s: st.level.value for s, st in after.scopes.items()},
            {a.value: s.model_dump(mode="json", by_alias=True) for a, s in after.actions.items()},
        )

    def _publish(self, state: SloStateDoc, now: datetime) -> None:
        write_actions(self._redis, ActionsSnapshot(at=now, actions=state.actions))

    def status(self) -> SloStateDoc | None:
        return self._state.get()

    def lift(self, action: SloAction, minutes: int, change: Change) -> SloStateDoc:
        """Hold ``action`` off for ``minutes`` (0: remove the lift), audited; the hot
        paths see it at once (the snapshot is rewritten)."""
        now = change.now

        def build(before: SloStateDoc | None) -> tuple[SloStateDoc, list[Any]] | None:
            if before is None:
                raise FailedPrecondition(
                    "no SLO state yet: pack391_evaluateSlos has not run, so nothing can be lifted"
                )
            lifts = {a: lift for a, lift in before.lifts.items() if lift.until > now}
            if minutes == 0:
                lifts.pop(action, None)
            else:
                lifts[action] = ActionLift(
                    until=policy.lift_expiry(now, minutes),
                    by=change.actor_email or change.actor_uid,
                    reason=change.reason or "",
                )
            actions = dict(before.actions)
            old = actions.get(action)
            if old is not None:
                lift = lifts.get(action)
                actions[action] = old.model_copy(
                    update={
                        "enforced": old.wanted and old.mode is ActionMode.ENFORCE and lift is None,
                        "lifted_until": lift.until if lift else None,
                        "lifted_by": lift.by if lift else None,
                    }
                )
            after = before.model_copy(update={"lifts": lifts, "actions": actions})
            before_lift = before.lifts.get(action)
            return after, [
                (
                    change,
                    before_lift.model_dump(mode="json", by_alias=True) if before_lift else None,
                    lifts[action].model_dump(mode="json", by_alias=True)
                    if action in lifts
                    else None,
                )
            ]

        after = self._state.update(build)
        assert after is not None
        self._publish(after, now)
        return after
