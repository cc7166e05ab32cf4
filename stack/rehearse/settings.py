"""The rehearsal's knobs (:class:`Settings`) and the services its acts play on."""

from __future__ import annotations

from dataclasses import dataclass

SCALED_SERVICE = "media-processing"
SCALED_SCENARIO = "live_calls"
CANARY_SERVICE = "chat-service"
ISOLATED_SERVICE = "notification-service"
MARKET_COUNTRY = "SE"


@dataclass(frozen=True)
class Settings:
    """The rehearsal's knobs (``pack391 rehearse --help``); ``short()`` for ``make test``."""

    claims: tuple[str, ...]
    short: bool = False
    service_latency_ms: float = 200.0
    """Each request of the scaled service's serving revision waits this long (a slot held,
    no CPU): 3 instances x 8 slots then hold 120 RPS, whatever else this box runs."""
    hold_rps: float = 40.0
    hold_sec: float = 100.0
    push_rps: float = 110.0
    """92 % of the slots: past the 65 % target (and its 10 % band), short of shedding."""
    push_sec: float = 110.0
    """The breach's minute, the guard's run at its end, and the window after the event."""
    push_second: float = 5.0
    """The push begins at this second of a minute (the guard judges whole minutes: a
    breach late in a minute is seen a minute later; recorded in the claim's detail)."""
    push_past_minute_sec: float | None = None
    """When set (``--short``), the push ends this long into the minute after the one it
    began in (the guard's run at that minute's end is what it waits for), not after
    ``push_sec``."""
    push_window_sec: float = 0.0
    """Or up to this much later, when the hold reaches that window anyway (``--short``:
    less waiting for a minute; stack.rehearse.cli.SHORT_DEFAULTS says why the window
    still gives the guard a minute over its target)."""
    drop_rps: float = 15.0
    scale_down_wait_sec: float = 480.0
    chat_rps: float = 30.0
    bake_sec: int = 60
    """``bakeSec`` of each canary step (the spec's default is 300 s)."""
    min_requests_per_step: int = 100
    isolation_error_pct: float = 30.0
    isolation_rps: float = 3.0
    isolation_max_sec: float = 200.0
    recovery_rps: float = 0.6
    """The isolated service's good load while its circuit recovers: 36 requests a minute,
    over the guard's 20 (a minute with fewer is not judged, and the circuit stays
    half-open), and few enough that the burn the errors left stays over the ticket rate
    (6x) in the 30-minute window for the budgets act."""
    recovery_max_sec: float = 600.0
    single_rps: float = 25.0
    attack_sec: float = 65.0
    distributed_addresses: int = 300
    distributed_rps: float = 90.0
    attack_second: float = 15.0
    canary_max_sec: float = 480.0
    """How long a canary is watched (a pause for the platform keeps it waiting)."""
    budget_wait_sec: float = 420.0
    """How long the budgets act waits, from the isolation's end, for the SLO evaluator to
    show the isolated service burning (it judges the minute that ended two minutes ago,
    from the scale guard's metrics of that minute)."""
    budget_lift_min: int = 10
    """``minutes`` of the budgets act's ``pack391_liftSloAction`` (removed at once after)."""
    market_limit: int = 5
    market_signups: int = 8

    def wants(self, *claims: str) -> bool:
        return any(c in self.claims for c in claims)


SCALING_CLAIMS = ("scale_up", "scale_down", "no_degradation")

DEPLOY_CLAIMS = ("canary_steps", "auto_rollback", "pre_deploy_gates", "rollback_within")

ATTACK_CANARY_CLAIMS = ("canary_not_fooled",)
"""Canaries judged while an attack is live: the deploy track plays them after its own,
once the attacks track has begun its first flood."""

BUDGET_CLAIMS = ("budgets_act",)
"""The error budgets' deploy freeze: played by the isolation track after its act."""
