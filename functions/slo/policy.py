"""The SLO evaluator's pure decisions: burn rates, the workbook's alert levels, the
30-day budget, the actions and the alerts. Functions of data and ``now``.

Burn rate: the share of a window's requests that went bad, over the share the objective
allows (``1 - objective``). 1 spends exactly the budget over its 30 days; 14.4 spends 2 %
of it in an hour. Google's SRE workbook, "Alerting on SLOs", recommendation 6
(multiwindow, multi-burn-rate): page when the 1 h *and* the 5 min windows burn at 14.4x,
open a ticket when the 6 h *and* the 30 min windows burn at 6x (the short window makes the
alert stop soon after the burn does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared import thresholds as t
from shared.alerts.policy import AlertChange, AlertResolve, AlertSpec
from shared.models.alerts import AlertSource, Severity
from shared.models.slo import (
    ActionLift,
    ActionMode,
    ActionState,
    BurnLevel,
    ObjectiveView,
    ScopeStatus,
    SliCounts,
    SloAction,
)
from shared.slo.objectives import PLATFORM, Objective, objective_for

WINDOWS: dict[str, int] = {
    "5m": t.SLO_PAGE_SHORT_MIN,
    "30m": t.SLO_TICKET_SHORT_MIN,
    "1h": t.SLO_PAGE_LONG_MIN,
    "6h": t.SLO_TICKET_LONG_MIN,
}
"""The burn windows, by name, in minutes."""

LONGEST_MIN = max(WINDOWS.values())

RULES: tuple[tuple[BurnLevel, str, str, float], ...] = (
    (BurnLevel.PAGE, "1h", "5m", t.SLO_PAGE_BURN_RATE),
    (BurnLevel.TICKET, "6h", "30m", t.SLO_TICKET_BURN_RATE),
)
"""(level, long window, short window, burn rate), most severe first."""

Minutes = Mapping[int, Mapping[str, Mapping[str, int]]]
"""epoch minute -> scope -> {n, bad, slow} (as :func:`shared.slo.recorder.read_minutes`)."""


@dataclass(frozen=True)
class Counts:
    n: int = 0
    bad: int = 0
    slow: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.n + other.n, self.bad + other.bad, self.slow + other.slow)

    @staticmethod
    def of(raw: Mapping[str, int] | SliCounts) -> Counts:
        if isinstance(raw, SliCounts):
            return Counts(raw.n, raw.bad, raw.slow)
        return Counts(int(raw.get("n", 0)), int(raw.get("bad", 0)), int(raw.get("slow", 0)))


def judged_scopes(minutes: Minutes, overrides: Mapping[str, Objective]) -> list[str]:
    """The scopes with budgets: the platform, every class and service seen, and the
    callables given an objective of their own (the others are recorded for
    ``loadtest --from-metrics`` only)."""
    seen = {scope for per in minutes.values() for scope in per}
    seen.add(PLATFORM)
    return sorted(s for s in seen if not s.startswith("callable:") or s in overrides)


def window_sums(minutes: Minutes, end_minute: int, scope: str) -> dict[str, Counts]:
    """Each window's counts of ``scope``, the window ending with ``end_minute``
    (included); a minute Redis no longer holds counts as no requests."""
    out: dict[str, Counts] = {}
    for name, length in WINDOWS.items():
        total = Counts()
        for minute in range(end_minute - length + 1, end_minute + 1):
            raw = minutes.get(minute, {}).get(scope)
            if raw:
                total = total + Counts.of(raw)
        out[name] = total
    return out


def burn_rate(bad: int, n: int, budget_ratio: float, min_events: int) -> float | None:
    """How many times faster than the budget allows ``bad`` of ``n`` burn; None below
    ``min_events`` requests (too few to say)."""
    if n < max(min_events, 1):
        return None
    return (bad / n) / budget_ratio


def _min_events(window: str) -> int:
    return (
        t.SLO_SHORT_WINDOW_MIN_EVENTS if window in ("5m", "30m") else (t.SLO_LONG_WINDOW_MIN_EVENTS)
    )


def _level(burns: Mapping[str, float | None]) -> tuple[BurnLevel, str]:
    for level, long, short, rate in RULES:
        lb, sb = burns.get(long), burns.get(short)
        if lb is not None and sb is not None and lb >= rate and sb >= rate:
            return level, f"{long} burns {lb:.1f}x and {short} {sb:.1f}x (>= {rate:g}x)"
    return BurnLevel.NONE, ""


def assess(scope: str, sums: Mapping[str, Counts], objective: Objective) -> ScopeStatus:
    """One scope's burn rates and level (the worse of availability and latency)."""
    avail = {
        w: _rounded(burn_rate(c.bad, c.n, objective.error_budget_ratio, _min_events(w)))
        for w, c in sums.items()
    }
    slow = {
        w: _rounded(burn_rate(c.slow, c.n, objective.slow_budget_ratio, _min_events(w)))
        for w, c in sums.items()
    }
    a_level, a_why = _level(avail)
    l_level, l_why = _level(slow)
    if l_level.rank > a_level.rank:
        level, why = l_level, f"latency: {l_why}"
    else:
        level, why = a_level, (f"availability: {a_why}" if a_why else "")
    return ScopeStatus(
        objective=ObjectiveView(
            availability_pct=objective.availability_pct,
            latency_ms=objective.latency_ms,
            latency_good_pct=objective.latency_good_pct,
        ),
        level=level,
        why=why,
        availability_burn=avail,
        latency_burn=slow,
        requests={w: c.n for w, c in sums.items()},
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ------------------------------------------------------------------ the 30-day budget


def day_of(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y%m%d")


def roll_days(
    days: Mapping[str, Mapping[str, SliCounts]],
    minutes: Minutes,
    rolled_until: int | None,
    end_minute: int,
    scopes: list[str],
) -> dict[str, dict[str, SliCounts]]:
    """The daily buckets with the minutes after ``rolled_until`` up to ``end_minute``
    added (only those Redis still holds: at most :data:`LONGEST_MIN` back), and days
    older than the budget window dropped."""
    out = {
        d: {s: SliCounts(n=c.n, bad=c.bad, slow=c.slow) for s, c in v.items()}
        for d, v in days.items()
    }
    start = end_minute - LONGEST_MIN + 1
    if rolled_until is not None:
        start = max(start, rolled_until + 1)
    for minute in range(start, end_minute + 1):
        per = minutes.get(minute)
        if not per:
            continue
        bucket = out.setdefault(day_of(minute), {})
        for scope in scopes:
            raw = per.get(scope)
            if not raw:
                continue
            c = Counts.of(bucket.get(scope, SliCounts())) + Counts.of(raw)
            bucket[scope] = SliCounts(n=c.n, bad=c.bad, slow=c.slow)
    oldest = day_of(end_minute - (t.SLO_BUDGET_WINDOW_DAYS - 1) * 24 * 60)
    return {d: v for d, v in out.items() if d >= oldest}


def budget_left(
    days: Mapping[str, Mapping[str, SliCounts]], scope: str, objective: Objective
) -> tuple[float, float, int]:
    """(availability budget left %, latency budget left %, requests) over the window."""
    total = Counts()
    for bucket in days.values():
        raw = bucket.get(scope)
        if raw is not None:
            total = total + Counts.of(raw)
    if total.n == 0:
        return 100.0, 100.0, 0
    avail = 100.0 * (1 - total.bad / (total.n * objective.error_budget_ratio))
    latency = 100.0 * (1 - total.slow / (total.n * objective.slow_budget_ratio))
    return round(avail, 2), round(latency, 2), total.n


def statuses(
    minutes: Minutes,
    end_minute: int,
    days: Mapping[str, Mapping[str, SliCounts]],
    overrides: Mapping[str, Objective],
) -> dict[str, ScopeStatus]:
    """Every judged scope's status at ``end_minute``."""
    out = {}
    for scope in judged_scopes(minutes, overrides):
        objective = objective_for(scope, overrides)
        status = assess(scope, window_sums(minutes, end_minute, scope), objective)
        avail, latency, n = budget_left(days, scope, objective)
        out[scope] = status.model_copy(
            update={
                "availability_budget_left_pct": avail,
                "latency_budget_left_pct": latency,
                "requests_30d": n,
            }
        )
    return out


# ------------------------------------------------------------------ actions


def _lift_until(
    lifts: Mapping[SloAction, ActionLift], action: SloAction, now: datetime
) -> ActionLift | None:
    lift = lifts.get(action)
    return lift if lift is not None and lift.until > now else None


def _state(
    action: SloAction,
    mode: ActionMode,
    wanted: bool,
    reason: str,
    scopes: list[str],
    previous: ActionState | None,
    lifts: Mapping[SloAction, ActionLift],
    now: datetime,
    classes: list[str] | None = None,
) -> ActionState:
    if mode is ActionMode.OFF:
        return ActionState(action=action, mode=mode)
    lift = _lift_until(lifts, action, now)
    since = None
    if wanted:
        since = (
            previous.since if previous is not None and previous.wanted and previous.since else now
        )
    return ActionState(
        action=action,
        mode=mode,
        wanted=wanted,
        enforced=wanted and mode is ActionMode.ENFORCE and lift is None,
        since=since,
        reason=reason if wanted else "",
        scopes=scopes if wanted else [],
        classes=(classes or []) if wanted else [],
        lifted_until=lift.until if lift else None,
        lifted_by=lift.by if lift else None,
    )


def next_shed_level(previous: int, platform: BurnLevel) -> int:
    """One more class each minute the platform pages, one fewer each minute it does not."""
    if platform is BurnLevel.PAGE:
        return min(previous + 1, t.SLO_SHED_MAX_CLASSES, len(t.SLO_SHED_ORDER))
    return max(previous - 1, 0)


def decide_actions(
    scopes: Mapping[str, ScopeStatus],
    previous: Mapping[SloAction, ActionState],
    lifts: Mapping[SloAction, ActionLift],
    modes: Mapping[SloAction, ActionMode],
    shed_level: int,
    now: datetime,
) -> dict[SloAction, ActionState]:
    """Each action's state (``shed_level``: from :func:`next_shed_level`).

    - ``deploy_freeze``: the platform or a service burns at the ticket rate or faster;
      its ``scopes`` name them (the gate refuses a release of a named service, or any
      release when ``platform`` is named);
    - ``admissions_pause``: the platform burns at the ticket rate or faster;
    - ``shed``: the first ``shed_level`` classes of the shed order."""
    platform = scopes.get(PLATFORM)
    platform_level = platform.level if platform else BurnLevel.NONE
    burning = [
        s
        for s, st in scopes.items()
        if (s == PLATFORM or s.startswith("service:")) and st.level.rank >= BurnLevel.TICKET.rank
    ]
    freeze_why = "; ".join(f"{s}: {scopes[s].why}" for s in burning)
    platform_burns = platform_level.rank >= BurnLevel.TICKET.rank
    shed_classes = list(t.SLO_SHED_ORDER[:shed_level])
    return {
        SloAction.DEPLOY_FREEZE: _state(
            SloAction.DEPLOY_FREEZE,
            modes[SloAction.DEPLOY_FREEZE],
            bool(burning),
            freeze_why,
            burning,
            previous.get(SloAction.DEPLOY_FREEZE),
            lifts,
            now,
        ),
        SloAction.ADMISSIONS_PAUSE: _state(
            SloAction.ADMISSIONS_PAUSE,
            modes[SloAction.ADMISSIONS_PAUSE],
            platform_burns,
            f"platform: {platform.why}" if platform and platform_burns else "",
            [PLATFORM] if platform_burns else [],
            previous.get(SloAction.ADMISSIONS_PAUSE),
            lifts,
            now,
        ),
        SloAction.SHED: _state(
            SloAction.SHED,
            modes[SloAction.SHED],
            shed_level > 0,
            (
                f"platform pages: {platform.why}"
                if platform and platform_level is BurnLevel.PAGE
                else "platform page-level burn ended: restoring one class a minute"
            ),
            [PLATFORM],
            previous.get(SloAction.SHED),
            lifts,
            now,
            classes=shed_classes,
        ),
    }


def action_changes(
    previous: Mapping[SloAction, ActionState], current: Mapping[SloAction, ActionState]
) -> list[tuple[str, ActionState | None, ActionState]]:
    """The audit entries a run owes: (audit action, before, after) for each action whose
    wanted, enforced state or shed classes changed."""
    out = []
    for action, after in current.items():
        before = previous.get(action)
        b = (before.wanted, before.enforced, before.classes) if before else (False, False, [])
        if b == (after.wanted, after.enforced, after.classes):
            continue
        if after.wanted and not b[0]:
            verb = "started"
        elif not after.wanted and b[0]:
            verb = "ended"
        else:
            verb = "changed"
        out.append((f"slo.{action.value}.{verb}", before, after))
    return out


# ------------------------------------------------------------------ alerts


def dedup_key(scope: str, level: BurnLevel) -> str:
    """One alert per scope and level (``slo:platform:page``): a page that calms down to a
    ticket resolves the page and opens the ticket (the one alert model only ever raises
    an active alert's severity)."""
    return f"slo:{scope}:{level.value}"


def alert_changes(
    current: Mapping[str, ScopeStatus], previous: Mapping[str, ScopeStatus]
) -> list[AlertChange]:
    """For each scope whose level changed: resolve the old level's alert, raise the new
    one's (a page is ``critical``, a ticket ``medium``)."""
    out: list[AlertChange] = []
    for scope in sorted(set(current) | set(previous)):
        now_level = current[scope].level if scope in current else BurnLevel.NONE
        before = previous[scope].level if scope in previous else BurnLevel.NONE
        if now_level is before:
            continue
        if before is not BurnLevel.NONE:
            reason = (
                "burn rate back under the ticket rate"
                if now_level is BurnLevel.NONE
                else f"now at the {now_level.value} level"
            )
            out.append(AlertResolve(dedup_key(scope, before), reason))
        if now_level is BurnLevel.NONE:
            continue
        status = current[scope]
        page = now_level is BurnLevel.PAGE
        burns = (
            status.availability_burn
            if status.why.startswith("availability")
            else status.latency_burn
        )
        out.append(
            AlertSpec(
                source=AlertSource.OPS,
                kind="slo_burn",
                dedup_key=dedup_key(scope, now_level),
                severity=Severity.CRITICAL if page else Severity.MEDIUM,
                title=f"{scope}: error budget burning ({now_level.value}): {status.why}",
                evidence={
                    "scope": scope,
                    "level": now_level.value,
                    "why": status.why,
                    "availabilityBurn": status.availability_burn,
                    "latencyBurn": status.latency_burn,
                    "requests": status.requests,
                    "budgetLeftPct": status.availability_budget_left_pct,
                },
                rule="slo_burn",
                threshold=t.SLO_PAGE_BURN_RATE if page else t.SLO_TICKET_BURN_RATE,
                value=max((b for b in burns.values() if b is not None), default=None),
            )
        )
    return out


def evaluated_minute(now: datetime) -> int:
    """The epoch minute a run at ``now`` evaluates: the one that ended two minutes ago
    (a minute's last calls reach Redis with their instance's next flush)."""
    return int(now.timestamp()) // 60 - 2


def minute_start(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


def minute_id(minute: int) -> str:
    return minute_start(minute).strftime("%Y%m%dT%H%MZ")


def lift_expiry(now: datetime, minutes: int) -> datetime:
    return now + timedelta(minutes=minutes)
