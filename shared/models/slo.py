"""Service-level objectives: the recorded minutes (SLIs), the budgets and their actions.

The contract between the SLI recorder, the SLO evaluator and what reads their output
(the ops page, the deploy gate, market admissions, the load engine's
``--from-metrics`` scenarios).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import Field, StrictInt, StrictStr

from shared.models import RequestModel, WireModel


class SliCounts(WireModel):
    """One scope's events in one minute: ``n`` requests answered, ``bad`` of them
    failed by the system (the availability SLI's bad events: INTERNAL, UNAVAILABLE,
    DEADLINE_EXCEEDED, UNKNOWN, DATA_LOSS; a caller's own error such as
    INVALID_ARGUMENT or RESOURCE_EXHAUSTED is a good event for the service), ``slow`` of
    them answered over the scope's latency objective."""

    n: int = 0
    bad: int = 0
    slow: int = 0


class SliMinuteDoc(WireModel):
    """``pack391_sli_minutes/{YYYYMMDDTHHMMZ}``: one minute of recorded traffic, written
    once the minute is complete by ``pack391_evaluateSlos``; ``expireAt`` (35 days) for a
    TTL policy.

    ``callables``: per recorded callable or app endpoint name (the name the recorder was
    given: a function's name, or the app endpoint a load scenario names, such as
    ``swipe``); ``classes``: per endpoint class (``auth``, ``payment`` ...);
    ``services``: per scaling service (``api-gateway`` ...), from the scale guard's
    per-minute metrics."""

    at: datetime
    """Start of the minute (UTC)."""
    callables: dict[str, SliCounts] = Field(default_factory=dict)
    classes: dict[str, SliCounts] = Field(default_factory=dict)
    services: dict[str, SliCounts] = Field(default_factory=dict)
    expire_at: datetime | None = None


# ------------------------------------------------------------------ budgets that act


class SloAction(enum.StrEnum):
    """What a burning budget does, each decided by ``pack391_evaluateSlos`` every minute."""

    DEPLOY_FREEZE = "deploy_freeze"
    """The pre-deploy gate refuses a release of a service whose budget (or the
    platform's) burns at the ticket rate or faster."""
    ADMISSIONS_PAUSE = "admissions_pause"
    """Soft-launch admissions pause while the platform's budget burns."""
    SHED = "shed"
    """During a page-level burn of the platform, the lowest-priority endpoint classes are
    refused first (:data:`shared.thresholds.SLO_SHED_ORDER`: payment and auth last)."""


class ActionMode(enum.StrEnum):
    """How an action is run (a param per action)."""

    OFF = "off"
    """Not decided at all."""
    SHADOW = "shadow"
    """Decided, recorded, audited and counted where it would have acted; never acts."""
    ENFORCE = "enforce"
    """Acts."""


class ActionState(WireModel):
    """One action's current decision."""

    action: SloAction
    mode: ActionMode
    wanted: bool = False
    """The budgets call for it (whatever the mode and lifts)."""
    enforced: bool = False
    """It acts now: wanted, mode ``enforce`` and not lifted."""
    since: datetime | None = None
    """When it became wanted (None when not wanted)."""
    reason: str = ""
    scopes: list[str] = Field(default_factory=list)
    """The burning scopes behind it (``platform``, ``service:api-gateway``,
    ``class:ai`` ...)."""
    classes: list[str] = Field(default_factory=list)
    """``shed``: the endpoint classes refused, lowest priority first."""
    lifted_until: datetime | None = None
    """An ops lift (``pack391_liftSloAction``) holds it off until then."""
    lifted_by: str | None = None


class ActionsSnapshot(WireModel):
    """What the hot paths read (Redis ``pack391:slo:actions``, JSON, with a TTL: a
    missing or expired snapshot means no action, so a stopped evaluator or a lost Redis
    never leaves the platform frozen)."""

    at: datetime
    actions: dict[SloAction, ActionState] = Field(default_factory=dict)

    def enforced(self, action: SloAction) -> ActionState | None:
        """The action's state when it acts now, else None."""
        state = self.actions.get(action)
        return state if state is not None and state.enforced else None

    def shadowed(self, action: SloAction) -> ActionState | None:
        """The action's state when it is wanted in shadow mode (count, do not act)."""
        state = self.actions.get(action)
        if state is None or not state.wanted or state.mode is not ActionMode.SHADOW:
            return None
        return state


# ------------------------------------------------------------------ the evaluator's state


class BurnLevel(enum.StrEnum):
    """Where a scope's budget is, by the workbook's multi-window, multi-burn-rate rules."""

    NONE = "none"
    TICKET = "ticket"
    """6 h and 30 min both burn at least 6x: a ticket (severity medium)."""
    PAGE = "page"
    """1 h and 5 min both burn at least 14.4x: a page (severity critical)."""

    @property
    def rank(self) -> int:
        return list(BurnLevel).index(self)


class ObjectiveView(WireModel):
    availability_pct: float
    latency_ms: float
    latency_good_pct: float


class ScopeStatus(WireModel):
    """One scope's objectives, burn rates (per window: ``5m``, ``30m``, ``1h``, ``6h``;
    None where the window had too few requests) and 30-day budgets."""

    objective: ObjectiveView
    level: BurnLevel = BurnLevel.NONE
    why: str = ""
    availability_burn: dict[str, float | None] = Field(default_factory=dict)
    latency_burn: dict[str, float | None] = Field(default_factory=dict)
    requests: dict[str, int] = Field(default_factory=dict)
    """Requests per window."""
    availability_budget_left_pct: float = 100.0
    """Of the 30-day error budget, what is left (negative: overspent)."""
    latency_budget_left_pct: float = 100.0
    requests_30d: int = 0


class ActionLift(WireModel):
    """An ops lift of one action (``pack391_liftSloAction``)."""

    until: datetime
    by: str
    reason: str


class SloStateDoc(WireModel):
    """``pack391_slo/current``: the evaluator's last run (what the ops page, the deploy
    gate and ``pack391 slo`` read) and what it carries from minute to minute."""

    at: datetime
    minute: datetime
    """The minute last evaluated (runs evaluate the minute that ended two minutes ago)."""
    scopes: dict[str, ScopeStatus] = Field(default_factory=dict)
    actions: dict[SloAction, ActionState] = Field(default_factory=dict)
    lifts: dict[SloAction, ActionLift] = Field(default_factory=dict)
    shadow_counts: dict[SloAction, int] = Field(default_factory=dict)
    """Events a shadowed action would have acted on since it became wanted."""
    days: dict[str, dict[str, SliCounts]] = Field(default_factory=dict)
    """The budget window's daily buckets: ``YYYYMMDD`` -> scope -> counts."""
    rolled_until: datetime | None = None
    """The last minute added to :attr:`days`."""
    shed_level: int = 0
    """How many classes of :data:`~shared.thresholds.SLO_SHED_ORDER` the shed action
    wants (grows by one each page-level minute, shrinks by one each minute after)."""


# ------------------------------------------------------------------ requests


class GetSloStatusRequest(RequestModel):
    """No fields: the evaluator's last state."""


class LiftSloActionRequest(RequestModel):
    """Hold one automatic action off for ``minutes`` (0: remove a lift, the budgets
    decide again), audited with ``reason``."""

    action: SloAction
    minutes: Annotated[StrictInt, Field(ge=0, le=24 * 60)]
    reason: Annotated[StrictStr, Field(min_length=3, max_length=500)]


class LiftSloActionResult(WireModel):
    action: SloAction
    state: ActionState | None
    lift: ActionLift | None
