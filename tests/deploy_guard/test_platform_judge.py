"""A judge that sees the platform, pure: the Mann-Whitney U test against textbook values,
the judge's verdicts with and without a platform context, what the platform's records
mean for the judged minutes, and the pause the platform explains (literal tables)."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.deploy_guard.policy.judge import fast_breaches, judge
from functions.deploy_guard.policy.phases import (
    judged,
    on_check,
    on_control,
    step_points,
    with_event,
)
from functions.deploy_guard.policy.platform import platform_context
from functions.deploy_guard.policy.stats import average_ranks, mann_whitney_greater
from shared import thresholds as t
from shared.models.alerts import Severity
from shared.models.ddos import DetectionDoc, DetectionKind
from shared.models.deploy import (
    Analysis,
    ControlAction,
    DeploymentDoc,
    Phase,
    PlatformContext,
    PlatformHold,
    PlatformSignal,
    PlatformSignalKind,
    RevisionWindow,
    ServiceTarget,
    Verdict,
)
from shared.models.scaling import AlertKind, DecisionDoc, ScaleAction, ScalingEventDoc

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
WINDOW = NOW - timedelta(minutes=1)

# ------------------------------------------------------------ Mann-Whitney U


@pytest.mark.parametrize(
    ("x", "y", "continuity", "u", "z", "p"),
    [
        # scipy.stats.mannwhitneyu's documented example (males against females, method
        # "asymptotic"): U1 = 17, two-sided p 0.11134688653314041, so one side half of it
        ([19, 22, 16, 29, 24], [20, 11, 17, 12], True, 17.0, 1.59217, 0.11134688653314041 / 2),
        # ties, worked by hand: ranks 1, 3, 3, 3, 6, 6, 6, 8; R_x = 13, U = 3, mean 8,
        # variance 16/12 * (9 - 48/56) = 10.857142857, z = (3 - 8 - 0.5) / 3.295018
        ([1, 2, 2, 3], [2, 3, 3, 4], True, 3.0, -1.66919, 0.95246),
        ([2, 3, 3, 4], [1, 2, 2, 3], True, 13.0, 1.36570, 0.08602),
        ([1, 2, 2, 3], [2, 3, 3, 4], False, 3.0, -1.51744, 0.93542),
        # five minutes each, every canary minute worse: the smallest p of 5 against 5
        ([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], True, 25.0, 2.50672, 0.0060929),
        # all tied: no evidence either way
        ([3, 3], [3, 3], True, 2.0, 0.0, 1.0),
    ],
)
def test_mann_whitney_against_textbook_values(
    x: list[float], y: list[float], continuity: bool, u: float, z: float, p: float
) -> None:
    got = mann_whitney_greater(x, y, continuity)
    assert got.u == u
    assert got.z == pytest.approx(z, abs=1e-5)
    assert got.p_greater == pytest.approx(p, abs=1e-5)


@pytest.mark.parametrize(
    ("n", "worse", "p"),
    [(3, 3, 0.0404), (4, 4, 0.0152), (5, 5, 0.0061), (5, 4, 0.0108), (5, 3, 0.0183)],
)
def test_how_many_minutes_the_test_needs(n: int, worse: int, p: float) -> None:
    """The threshold's claim: three minutes a side can never fail a check, four can only
    when every canary minute is worse than every stable one, five can with one or two
    minutes that are not (each under stable's worst minute)."""
    stable = [float(i) for i in range(n)]
    canary = [100.0 + i for i in range(worse)] + [n - 1.5 - i / 10 for i in range(n - worse)]
    got = mann_whitney_greater(canary, stable).p_greater
    assert got == pytest.approx(p, abs=1e-4)
    assert t.CANARY_MWU_MIN_POINTS_COUNT == 5


@pytest.mark.parametrize(
    ("x", "y"),
    [([5.0, 1.0, 3.0], [2.0, 3.0, 3.0, 0.5]), ([0.0, 0.0, 1.0], [0.0, 1.0]), ([7.0], [7.0, 8.0])],
)
def test_u_counts_the_pairs_the_first_sample_wins(x: list[float], y: list[float]) -> None:
    """U by its definition (pairs won, ties a half), not by ranks."""
    pairs = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(x, y))
    assert mann_whitney_greater(x, y).u == pairs


def test_ranks_share_their_mean_and_empty_samples_are_refused() -> None:
    assert average_ranks([10.0, 20.0, 10.0, 30.0]) == ([1.5, 3.0, 1.5, 4.0], [2, 1, 1])
    with pytest.raises(ValueError, match="at least one"):
        mann_whitney_greater([], [1.0])
    assert math.isclose(mann_whitney_greater([2.0], [1.0]).p_greater, 0.5 * math.erfc(0))


# ------------------------------------------------------------ the judge

FINE = RevisionWindow(requests=2000, errors=10, p95_latency_ms=200.0)  # 0.5 %
DEGRADED = RevisionWindow(requests=2000, errors=300, p95_latency_ms=200.0)  # 15 %
DDOS = PlatformContext(
    window_start=WINDOW,
    window_end=NOW,
    signals=[
        PlatformSignal(kind=PlatformSignalKind.DDOS_MODE, at=WINDOW, detail="on", minutes=[WINDOW])
    ],
)
CALM = PlatformContext(window_start=WINDOW, window_end=NOW)


def c(errors: int, requests: int = 1000, p95: float = 205.0) -> RevisionWindow:
    return RevisionWindow(requests=requests, errors=errors, p95_latency_ms=p95)


@pytest.mark.parametrize(
    ("canary", "stable", "platform", "verdict", "error_check"),
    [
        # bad on its own: stable fine in the same minute -> rolled back, platform or not
        (c(150), FINE, None, Verdict.BREACH, Verdict.BREACH),
        (c(150), FINE, DDOS, Verdict.BREACH, Verdict.BREACH),
        # both revisions at 15 %: the platform explains it -> pause
        (c(150), DEGRADED, DDOS, Verdict.EXPLAINED, Verdict.EXPLAINED),
        # both at 15 % and nothing on the platform says why -> hold, no rollback, no step
        (c(150), DEGRADED, CALM, Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE),
        (c(150), DEGRADED, None, Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE),
        # 40 % against stable's 15 %: worse than stable + 5 -> rolled back during the attack
        (c(400), DEGRADED, DDOS, Verdict.BREACH, Verdict.BREACH),
        # 23 %: the 99.5 % bound (19.76 %) is under 15 + 5, the 84 % one (21.70 %) over
        (c(230), DEGRADED, DDOS, Verdict.FAIL, Verdict.FAIL),
        # 21 %: neither bound over 20 % -> the platform's
        (c(210), DEGRADED, DDOS, Verdict.EXPLAINED, Verdict.EXPLAINED),
        # better than degraded stable: a pass
        (c(10), DEGRADED, DDOS, Verdict.PASS, Verdict.PASS),
        # today's minimum sample size still holds: 5 of 30 is not judged as a pass or pause
        (c(5, requests=30), DEGRADED, DDOS, Verdict.INCONCLUSIVE, Verdict.EXPLAINED),
        # latency is judged against stable in the same minute: both slow is no breach
        (c(0, p95=600.0), DEGRADED.model_copy(update={"p95_latency_ms": 590.0}), DDOS,
         Verdict.PASS, Verdict.PASS),
        (c(0, p95=600.0), FINE, DDOS, Verdict.BREACH, Verdict.PASS),
    ],
)  # fmt: skip
def test_the_judge_compares_with_stable_and_sees_the_platform(
    canary: RevisionWindow,
    stable: RevisionWindow,
    platform: PlatformContext | None,
    verdict: Verdict,
    error_check: Verdict,
) -> None:
    got, checks = judge(canary, stable, platform=platform)
    assert got == verdict
    assert next(ch for ch in checks if ch.metric == "error_rate").verdict == error_check
    # the fast judge rolls back on breaches only: never on one the platform explains
    assert bool(fast_breaches(checks)) is (error_check == Verdict.BREACH)


def minutes(canary_errors: list[int], stable_errors: list[int]) -> list[tuple[Any, Any]]:
    return [
        (c(ce), RevisionWindow(requests=1000, errors=se, p95_latency_ms=200.0))
        for ce, se in zip(canary_errors, stable_errors, strict=True)
    ]


@pytest.mark.parametrize(
    ("points", "canary", "verdict", "detail"),
    [
        # five minutes at 21 % against 15 %: each minute alone is within the noise of
        # 15 + 5, together every canary minute is worse -> Mann-Whitney fails it (two tie
        # groups of 5: variance 25/12 * (11 - 240/90), z = 12 / 4.1667, p = 0.0020)
        (minutes([210] * 4, [150] * 4), c(210), Verdict.FAIL, "Mann-Whitney p=0.0020"),
        # fewer minutes: the Wilson bounds of the minute alone -> the platform's
        (minutes([210] * 3, [150] * 3), c(210), Verdict.EXPLAINED, "platform explains"),
        # four minutes alike, the fifth at 21 %: not consistently worse
        (minutes([150] * 4, [150] * 4), c(210), Verdict.EXPLAINED, "platform explains"),
    ],
)
def test_the_step_minutes_are_tested_with_mann_whitney(
    points: list[tuple[Any, Any]], canary: RevisionWindow, verdict: Verdict, detail: str
) -> None:
    stable = RevisionWindow(requests=1000, errors=150, p95_latency_ms=200.0)
    got, checks = judge(canary, stable, points=points, platform=DDOS)
    assert got == verdict
    assert detail in next(ch for ch in checks if ch.metric == "error_rate").detail


def test_latency_over_the_step_minutes() -> None:
    """Latency: one minute over 1.5 x stable's (and 25 ms more) is a breach, as before;
    the step's minutes add a fail when the canary's are over stable's limit as a whole
    though the judged minute alone is not (stable a little slower in it)."""
    calm = [(c(0, p95=290.0), c(0, p95=200.0)) for _ in range(4)]
    got, _ = judge(c(0, p95=290.0), c(0, p95=200.0), points=calm, platform=CALM)
    assert got == Verdict.PASS  # 290 is under 1.5 x 200 every minute
    got, checks = judge(c(0, p95=330.0), c(0, p95=200.0), points=calm, platform=CALM)
    latency = next(ch for ch in checks if ch.metric == "p95_latency_ms")
    assert (got, latency.verdict) == (Verdict.BREACH, Verdict.BREACH)  # this minute over
    slow = [(c(0, p95=340.0), c(0, p95=200.0)) for _ in range(4)]
    # the judged minute: 310 against 210 is within 1.5 x; against the step: U = 24 of 25,
    # two tie groups of 4: variance 25/12 * (11 - 120/90), z = 11 / 4.4876, p = 0.0071
    got, checks = judge(c(0, p95=310.0), c(0, p95=210.0), points=slow, platform=CALM)
    latency = next(ch for ch in checks if ch.metric == "p95_latency_ms")
    assert (got, latency.verdict) == (Verdict.FAIL, Verdict.FAIL)
    assert "Mann-Whitney p=0.0071" in latency.detail
    got, _ = judge(c(0, p95=310.0), c(0, p95=210.0), points=slow[:3], platform=CALM)
    assert got == Verdict.PASS  # four minutes: too few for the test


# ------------------------------------------------------------ the platform's records


def detection(minute: datetime, severity: Severity, mitigated: bool) -> DetectionDoc:
    return DetectionDoc(
        minute=minute,
        kind=DetectionKind.DISTRIBUTED_ATTACK,
        severity=severity,
        evidence={},
        mitigated=mitigated,
        detected_at=minute + timedelta(seconds=50),
    )


def decision(at: datetime, action: ScaleAction, acted: bool = True, dry: bool = False) -> Any:
    return DecisionDoc(
        service_id="api-gateway",
        at=at,
        source="guard",
        dry_run=dry,
        current_instances=2,
        desired_instances=6,
        action=action,
        reasons=[],
        acted=acted,
        run_id="r1",
    )


M0 = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
M1 = M0 + timedelta(minutes=1)
DURATION = timedelta(seconds=t.DDOS_MODE_DURATION_SEC)


@pytest.mark.parametrize(
    ("records", "kinds", "covered"),
    [
        ({}, [], []),
        # DDoS mode on: extended last at M0 + 30 s (until that + 15 min) -> from M0
        ({"ddos_mode": (M0 + timedelta(seconds=30) + DURATION, "attack")}, ["ddos_mode"], [M0, M1]),
        # DDoS mode on, but extended only after the judged minutes ended
        ({"ddos_mode": (M1 + timedelta(minutes=1, seconds=5) + DURATION, "x")}, [], []),
        ({"detections": [detection(M1, Severity.CRITICAL, True)]}, ["ddos_detection"], [M1]),
        ({"detections": [detection(M1, Severity.LOW, False)]}, [], []),  # a blip
        ({"detections": [detection(M1, Severity.MEDIUM, True)]}, ["ddos_detection"], [M1]),
        ({"detections": [detection(M0 - timedelta(minutes=1), Severity.HIGH, True)]}, [], []),
        # a scale-up 90 s before the window explains its first minute (120 s to settle)
        ({"scale_decisions": [decision(M0 - timedelta(seconds=90), ScaleAction.SCALE_UP)]},
         ["scale"], [M0]),
        ({"scale_decisions": [decision(M0 - timedelta(seconds=130), ScaleAction.SCALE_UP)]},
         [], []),
        ({"scale_decisions": [decision(M1, ScaleAction.NONE)]}, [], []),
        ({"scale_decisions": [decision(M1, ScaleAction.SCALE_DOWN, dry=True)]}, [], []),
        ({"scale_decisions": [decision(M1, ScaleAction.SCALE_DOWN, acted=False)]}, [], []),
        ({"isolation_events": [ScalingEventDoc(service_id="chat", kind=AlertKind.ISOLATED,
          at=M1 + timedelta(seconds=3), error_rate_pct=60.0, threshold_pct=50.0, message="")]},
         ["isolation"], [M1]),
        ({"stalls": {M1: {"firestore": 4}}}, ["dependency_stall"], [M1]),
        ({"stalls": {M1 + timedelta(minutes=1): {"firestore": 4}}}, [], []),
    ],
)  # fmt: skip
def test_what_the_platforms_records_mean_for_the_judged_minutes(
    records: dict[str, Any], kinds: list[str], covered: list[datetime]
) -> None:
    got = platform_context(M0, M1 + timedelta(minutes=1), **records)
    assert (got.kinds(), got.minutes(), got.active) == (kinds, covered, bool(kinds))


# ------------------------------------------------------------ the pause


def dep(**over: Any) -> DeploymentDoc:
    base: dict[str, Any] = {
        "deployment_id": "d1",
        "version": "v2",
        "environment": "production",
        "phase": Phase.PROGRESSING,
        "step": 0,
        "steps_pct": [5, 25, 100],
        "traffic_percent": 5,
        "applied_percent": 5,
        "services": [ServiceTarget(service="api", region="r", stable_revision="a",
                                   canary_revision="b")],
        "bake_sec": 60,
        "min_requests_per_step": 100,
        "step_started_at": NOW - timedelta(minutes=5),
        "created_by": "admin-1",
        "created_at": NOW,
        "updated_at": NOW,
    }  # fmt: skip
    return DeploymentDoc(**{**base, **over})


def analysis(verdict: Verdict, platform: PlatformContext | None) -> Analysis:
    checks = judge(c(150), DEGRADED, platform=platform)[1]
    forced = [ch.model_copy(update={"verdict": verdict}) for ch in checks[:1]]
    return Analysis(
        at=NOW,
        window_start=WINDOW,
        step=0,
        traffic_percent=5,
        verdict=verdict,
        checks=forced,
        canary=c(150, requests=200),
        stable=DEGRADED,
        platform=platform,
    )


HOLD = PlatformHold(since=NOW - timedelta(minutes=2), checks=["error_rate"], kinds=["scale"],
                    minutes=[WINDOW - timedelta(minutes=1)])  # fmt: skip


@pytest.mark.parametrize(
    ("before", "verdict", "platform", "phase", "held_minutes", "event"),
    [
        ({}, Verdict.EXPLAINED, DDOS, Phase.PAUSED, 1, "paused"),
        # held: the platform still has a signal -> still paused, the minute recorded
        ({"phase": Phase.PAUSED, "platform_hold": HOLD}, Verdict.EXPLAINED, DDOS,
         Phase.PAUSED, 2, "created"),
        ({"phase": Phase.PAUSED, "platform_hold": HOLD}, Verdict.PASS, DDOS,
         Phase.PAUSED, 2, "created"),
        # the platform is clear -> resumed (judged again from the next minute)
        ({"phase": Phase.PAUSED, "platform_hold": HOLD}, Verdict.PASS, CALM,
         Phase.PROGRESSING, None, "resumed"),
        ({"phase": Phase.PAUSED, "platform_hold": HOLD}, Verdict.INCONCLUSIVE, CALM,
         Phase.PROGRESSING, None, "resumed"),
        # the canary's own breach while held: rolled back during the attack
        ({"phase": Phase.PAUSED, "platform_hold": HOLD}, Verdict.BREACH, DDOS,
         Phase.ROLLING_BACK, None, "rollback"),
        ({"phase": Phase.PAUSED, "platform_hold": HOLD, "failures": 1}, Verdict.FAIL, DDOS,
         Phase.ROLLING_BACK, None, "rollback"),
        ({"phase": Phase.PAUSED, "platform_hold": HOLD}, Verdict.FAIL, DDOS,
         Phase.PAUSED, 2, "created"),
    ],
)  # fmt: skip
def test_a_pause_the_platform_explains(
    before: dict[str, Any],
    verdict: Verdict,
    platform: PlatformContext,
    phase: Phase,
    held_minutes: int | None,
    event: str,
) -> None:
    start = with_event(dep(**before), NOW - timedelta(minutes=9), "created")
    after = on_check(start, analysis(verdict, platform), NOW)
    assert after.phase == phase
    assert (len(after.platform_hold.minutes) if after.platform_hold else None) == held_minutes
    assert after.history[-1].event == event
    assert after.traffic_percent == (0 if phase == Phase.ROLLING_BACK else 5)
    if event == "paused":
        detail = after.history[-1].detail
        assert detail["why"] == "the platform explains the breach"
        assert detail["minutes"] == [WINDOW.isoformat()]
        assert detail["platform"] == [
            {"kind": "ddos_mode", "detail": "on", "minutes": [WINDOW.isoformat()]}
        ]
        assert after.platform_hold is not None and after.platform_hold.checks == ["error_rate"]
    if event == "resumed":
        assert after.step_started_at == NOW  # the bake starts again
        assert after.history[-1].detail["heldMinutes"] == [
            (WINDOW - timedelta(minutes=1)).isoformat()
        ]


def test_who_is_judged_and_a_human_takes_over_a_platform_pause() -> None:
    held = dep(phase=Phase.PAUSED, platform_hold=HOLD)
    assert judged(held) and judged(dep()) and not judged(dep(phase=Phase.PAUSED))
    by_hand = on_control(held, ControlAction.PAUSE, "looking", NOW)
    assert (by_hand.phase, by_hand.platform_hold) == (Phase.PAUSED, None)
    assert not judged(by_hand)  # a human's pause waits for a human
    resumed = on_control(held, ControlAction.RESUME, "ok", NOW)
    assert (resumed.phase, resumed.platform_hold) == (Phase.PROGRESSING, None)


def test_the_step_points_are_the_minute_monitors_of_this_step() -> None:
    minute = analysis(Verdict.PASS, CALM)
    fast = minute.model_copy(update={"platform": None})  # the fast judge's partial window
    earlier_step = minute.model_copy(update={"step": 1})
    later = minute.model_copy(update={"window_start": NOW})
    d = dep(analyses=[minute, fast, earlier_step, later])
    assert step_points(d, NOW) == [(minute.canary, minute.stable)]
