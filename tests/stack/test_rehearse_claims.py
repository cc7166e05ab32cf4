"""The rehearsal's claims, each a pure function of a recording: literal tables."""

from __future__ import annotations

from typing import Any

import pytest

from stack.rehearse import claims as c
from stack.rehearse.recording import Act, Recording

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


def rec(
    series: dict[str, list[tuple[float, float]]] | None = None,
    acts: list[Act] | None = None,
    docs: dict[str, Any] | None = None,
    length: float = 900.0,
) -> Recording:
    shifted = {k: [(T0 + t, v) for t, v in pts] for k, pts in (series or {}).items()}
    return Recording(T0, T0 + length, shifted, acts or [], docs or {})


def act(name: str, start: float, end: float | None = None, **detail: Any) -> Act:
    return Act(name, T0 + start, None if end is None else T0 + end, detail)


PUSH = act("push", 100, 300, service="matching-engine")


# ------------------------------------------------------------------ scale up


@pytest.mark.parametrize(
    ("series", "passed", "figure", "why_has"),
    [
        # p95 over 400 ms at +120, applied 5 -> 9 at +160: 40 s
        (
            {"load.p95_ms": [(110, 90), (120, 650)], "applied.matching-engine": [(0, 5), (160, 9)]},
            True, 40.0, "5 -> 9 instances 40s after the breach",
        ),
        # slots in use at 70 % (over the 65 % CPU target) at +105, applied at +180: 75 s
        (
            {"util_pct.matching-engine": [(100, 40), (105, 70)],
             "applied.matching-engine": [(0, 5), (180, 10)]},
            False, 75.0, "over 60s",
        ),
        # shed at +130, never applied
        (
            {"load.shed": [(129, 0), (130, 3)], "applied.matching-engine": [(0, 5)]},
            False, None, "no scale-up of matching-engine applied",
        ),
        # never breached
        (
            {"load.p95_ms": [(120, 100)], "applied.matching-engine": [(0, 5), (200, 6)]},
            False, None, "never breached",
        ),
        # a breach before the push does not count; the one in it does
        (
            {"load.p95_ms": [(50, 900), (60, 50), (200, 500)],
             "applied.matching-engine": [(0, 5), (230, 7)]},
            True, 30.0, "30s after the breach",
        ),
    ],
)  # fmt: skip
def test_scale_up(
    series: dict[str, list[tuple[float, float]]], passed: bool, figure: float | None, why_has: str
) -> None:
    result = c.scale_up(rec(series, [PUSH]))
    assert (result.passed, result.figure) == (passed, figure)
    assert why_has in result.why
    assert result.evidence == "series applied.matching-engine" or not passed


def test_scale_up_without_its_act_fails_saying_so() -> None:
    result = c.scale_up(rec())
    assert not result.passed and "did not run" in result.why and result.evidence == "act push"


@pytest.mark.parametrize(
    ("applied", "passed", "figure"),
    [
        ([(0, 5), (160, 9), (700, 6)], True, 400.0),  # drop at +300, down at +700
        ([(0, 5), (160, 9), (300 + 520, 6)], False, 520.0),  # over 5 min + 3 runs (480 s)
        ([(0, 5), (160, 9)], False, None),
        ([(0, 5), (160, 9), (250, 8)], False, None),  # before the drop: not a scale-down after it
    ],
)
def test_scale_down(applied: list[tuple[float, float]], passed: bool, figure: float | None) -> None:
    drop = act("drop", 300, 900)
    result = c.scale_down(rec({"applied.matching-engine": applied}, [PUSH, drop]))
    assert (result.passed, result.figure) == (passed, figure)


def test_scale_events_lists_each_change() -> None:
    r = rec({"applied.x": [(0, 5), (10, 5), (20, 9), (30, 9), (40, 6)]})
    assert c.scale_events(r, "x") == [(T0 + 20, 5, 9), (T0 + 40, 9, 6)]


@pytest.mark.parametrize(
    ("load", "passed", "figure", "why_has"),
    [
        # 100 rps, no errors, p95 falls after the scale-up at +160
        (
            {"load.offered_rps": [(s, 100) for s in range(130, 191)],
             "load.p95_ms": [(s, 600 if s < 160 else 80) for s in range(130, 191)]},
            True, 0.0, "1 scale event(s): worst error rate 0.00%",
        ),
        # 2 % errors in the 30 s after the event
        (
            {"load.offered_rps": [(s, 100) for s in range(130, 191)],
             "load.errors": [(s, 2) for s in range(160, 191)],
             "load.p95_ms": [(s, 80) for s in range(130, 191)]},
            False, 2.0, "errors 2.00%",
        ),
        # p95 worse after than before, and over 400 ms
        (
            {"load.offered_rps": [(s, 100) for s in range(130, 191)],
             "load.p95_ms": [(s, 300 if s < 160 else 900) for s in range(130, 191)]},
            False, 0.0, "p95 300 -> 900 ms",
        ),
    ],
)  # fmt: skip
def test_no_degradation(
    load: dict[str, list[tuple[float, float]]], passed: bool, figure: float, why_has: str
) -> None:
    series: dict[str, list[tuple[float, float]]] = {
        **load, "applied.matching-engine": [(0.0, 5.0), (160.0, 9.0)],
    }  # fmt: skip
    result = c.no_degradation(rec(series, [PUSH]))
    assert (result.passed, result.figure) == (passed, figure)
    assert why_has in result.why


def test_no_degradation_without_a_scale_event_fails() -> None:
    result = c.no_degradation(rec({"applied.matching-engine": [(0, 5)]}, [PUSH]))
    assert not result.passed and "no scale event" in result.why


@pytest.mark.parametrize(
    ("alerts", "passed", "figure", "why_has"),
    [
        ([{"id": "a1", "serviceId": "payment-processor", "kind": "isolated", "at": T0 + 470}],
         True, 70.0, "isolated 70s after"),
        ([{"id": "a1", "serviceId": "payment-processor", "kind": "isolated", "at": T0 + 540}],
         False, 140.0, "over 120s"),
        ([{"id": "a1", "serviceId": "payment-processor", "kind": "isolated", "at": T0 + 470},
          {"id": "a2", "serviceId": "matching-engine", "kind": "isolated", "at": T0 + 470}],
         False, 70.0, "other services were isolated too: matching-engine"),
        ([{"id": "a1", "serviceId": "payment-processor", "kind": "recovered", "at": T0 + 470}],
         False, None, "never isolated"),
        ([], False, None, "never isolated"),
    ],
)  # fmt: skip
def test_isolation(
    alerts: list[dict[str, Any]], passed: bool, figure: float | None, why_has: str
) -> None:
    iso = act("isolate", 400, 600, service="payment-processor")
    result = c.isolation(rec(acts=[iso], docs={"scalingAlerts": alerts}))
    assert (result.passed, result.figure) == (passed, figure)
    assert why_has in result.why


# ------------------------------------------------------------------ deploys


def history(*steps: tuple[float, int, str]) -> list[dict[str, Any]]:
    return [{"at": T0 + at, "trafficPercent": pct, "phase": phase} for at, pct, phase in steps]


@pytest.mark.parametrize(
    ("dep", "passed", "figure"),
    [
        ({"deploymentId": "d1", "phase": "succeeded", "startedAt": T0,
          "history": history((0, 0, "pending"), (60, 5, "progressing"), (180, 25, "progressing"),
                             (300, 100, "promoting"), (360, 100, "succeeded"))}, True, 5.0),
        ({"deploymentId": "d1", "phase": "succeeded", "startedAt": T0,
          "history": history((60, 5, "progressing"), (300, 100, "promoting"))}, False, 5.0),
        ({"deploymentId": "d1", "phase": "paused", "startedAt": T0,
          "history": history((60, 5, "progressing"), (180, 25, "progressing"))}, False, None),
    ],
)  # fmt: skip
def test_canary_steps(dep: dict[str, Any], passed: bool, figure: float | None) -> None:
    result = c.canary_steps(rec(docs={"deployments": {"good": dep}}))
    assert (result.passed, result.figure) == (passed, figure)
    assert result.evidence == "doc pack391_deployments/d1"


@pytest.mark.parametrize(
    ("dep", "passed"),
    [
        ({"deploymentId": "d2", "phase": "rolled_back", "reason": "error_rate breach",
          "history": history((60, 5, "progressing"), (120, 0, "rolling_back"),
                             (121, 0, "rolled_back"))}, True),
        ({"deploymentId": "d2", "phase": "succeeded",
          "history": history((60, 5, "progressing"), (300, 100, "succeeded"))}, False),
        ({"deploymentId": "d2", "phase": "rolled_back",
          "history": [{"at": T0 + 60, "trafficPercent": 0, "phase": "rolled_back",
                       "manual": True}]}, False),
    ],
)  # fmt: skip
def test_auto_rollback(dep: dict[str, Any], passed: bool) -> None:
    assert c.auto_rollback(rec(docs={"deployments": {"bad": dep}})).passed is passed


@pytest.mark.parametrize(
    ("canary", "passed", "figure", "why_has"),
    [
        ([(0, 0), (70, 5), (126, 0)], True, 56.0, "at 0% 56s after"),
        ([(0, 0), (70, 5), (150, 0)], False, 80.0, "over 60s"),
        ([(0, 0), (70, 5)], False, None, "never went back to 0%"),
        ([(0, 0)], False, None, "never took traffic"),
    ],
)
def test_rollback_within(
    canary: list[tuple[float, float]], passed: bool, figure: float | None, why_has: str
) -> None:
    r = rec({"canary.bad": canary}, docs={"deployments": {"bad": {"deploymentId": "d2"}}})
    result = c.rollback_within(r)
    assert (result.passed, result.figure) == (passed, figure)
    assert why_has in result.why


GATES = [{"name": n, "status": "pass"} for n in ("system_health", "payment_system")] + [
    {"name": "api_endpoints", "status": "skipped"}
]


@pytest.mark.parametrize(
    ("gates", "passed", "why_has"),
    [
        ({"report": {"reportId": "r1", "passed": True, "gates": GATES},
          "unvalidatedStart": {"status": "FAILED_PRECONDITION"}},
         True, "2 gates passed (1 skipped)"),
        ({"report": {"reportId": "r1", "passed": True, "gates": GATES},
          "unvalidatedStart": {"status": None}}, False, "was not refused"),
        ({"report": {"reportId": "r1", "passed": False,
                     "gates": [*GATES, {"name": "auth_failures", "status": "fail"}]},
          "unvalidatedStart": {"status": "FAILED_PRECONDITION"}}, False, "auth_failures"),
    ],
)  # fmt: skip
def test_pre_deploy_gates(gates: dict[str, Any], passed: bool, why_has: str) -> None:
    result = c.pre_deploy_gates(rec(docs={"gates": gates}))
    assert result.passed is passed and why_has in result.why


# ------------------------------------------------------------------ the judge during an attack

ATTACKS = [act("attack_single", 300, 365), act("attack_distributed", 450, 515)]
PAUSE_WHY = "the platform explains the breach"


def ev(at: float, event: str, phase: str, pct: int = 5, **more: Any) -> dict[str, Any]:
    return {"at": T0 + at, "event": event, "phase": phase, "trafficPercent": pct,
            "manual": False, "why": None, "signals": [], **more}  # fmt: skip


def minute(at: float, *signals: str, verdict: str = "pass") -> dict[str, Any]:
    return {"windowStart": T0 + at, "verdict": verdict, "signals": list(signals)}


GOOD_CLEAN = {
    "deploymentId": "g1", "phase": "succeeded",
    "history": [ev(320, "step", "progressing"), ev(400, "step", "progressing", 25),
                ev(470, "step", "promoting", 100), ev(540, "succeeded", "succeeded", 100)],
    "judged": [minute(300, "ddos_detection"), minute(360), minute(420),
               minute(480, "ddos_detection"), minute(540)],
}  # fmt: skip
GOOD_PAUSED = {
    "deploymentId": "g1", "phase": "succeeded",
    "history": [ev(320, "step", "progressing"),
                ev(370, "paused", "paused", why=PAUSE_WHY, signals=["ddos_detection"]),
                ev(490, "resumed", "progressing", why="the platform is clear",
                   signals=["ddos_detection", "ddos_mode"]),
                ev(560, "step", "progressing", 25), ev(640, "step", "promoting", 100),
                ev(700, "succeeded", "succeeded", 100)],
    "judged": [minute(300, "ddos_detection", verdict="explained"), minute(360, "ddos_mode")],
}  # fmt: skip
BAD_ROLLED = {
    "deploymentId": "b1", "phase": "rolled_back", "reason": "canary breached token_mismatch_rate",
    "history": [ev(305, "step", "progressing"),
                ev(318, "rollback", "rolling_back", 0, why="canary breached token_mismatch_rate"),
                ev(320, "confirmed", "rolled_back", 0)],
}  # fmt: skip
DURING = [*ATTACKS, act("canary_attack_bad", 300, 330), act("canary_attack_good", 332, 720)]


def with_history(dep: dict[str, Any], *history: dict[str, Any], phase: str) -> dict[str, Any]:
    return {**dep, "phase": phase, "history": list(history)}


@pytest.mark.parametrize(
    ("good", "bad", "acts", "passed", "figure", "why_has"),
    [
        # clean: never paused, the judge saw the detections; bad rolled back
        (GOOD_CLEAN, BAD_ROLLED, DURING, True, 0.0,
         "never paused (the judge saw ddos_detection, a DDoS signal in 2 of its 5 judged "
         "minutes"),
        # paused for the platform 2 minutes, resumed, promoted
        (GOOD_PAUSED, BAD_ROLLED, DURING, True, 2.0,
         "paused for the platform 2.0 min (ddos_detection, ddos_mode), then promoted"),
        # the clean canary rolled back by a fooled judge
        (with_history(GOOD_CLEAN, ev(320, "step", "progressing"),
                      ev(380, "rollback", "rolling_back", 0, why="canary breached error_rate"),
                      phase="rolled_back"),
         BAD_ROLLED, DURING, False, 0.0,
         "rolled back during the attack: canary breached error_rate"),
        # paused for the platform and never resumed
        (with_history(GOOD_CLEAN, ev(370, "paused", "paused", why=PAUSE_WHY), phase="paused"),
         BAD_ROLLED, DURING, False, 0.0, "paused for the platform, never resumed"),
        # a pause that is not the platform's (a human's to lift)
        (with_history(GOOD_CLEAN, ev(370, "paused", "paused", why="too many inconclusive checks"),
                      ev(500, "resumed", "progressing"), ev(600, "succeeded", "succeeded", 100),
                      phase="succeeded"),
         BAD_ROLLED, DURING, False, 0.0, "paused: too many inconclusive checks"),
        # the bad canary promoted during the attack
        (GOOD_CLEAN, with_history(BAD_ROLLED, ev(305, "step", "progressing"),
                                  ev(600, "succeeded", "succeeded", 100), phase="succeeded"),
         DURING, False, 0.0, "the bad canary ended succeeded during the attack"),
        # both canaries ran, but before any attack
        (GOOD_CLEAN, BAD_ROLLED,
         [*ATTACKS, act("canary_attack_bad", 100, 130), act("canary_attack_good", 132, 290)],
         False, 0.0, "canary_attack_bad ran while no attack did"),
    ],
)  # fmt: skip
def test_canary_not_fooled(
    good: dict[str, Any], bad: dict[str, Any], acts: list[Act], passed: bool, figure: float,
    why_has: str,
) -> None:  # fmt: skip
    r = rec(acts=acts, docs={"deployments": {"attack_good": good, "attack_bad": bad}})
    result = c.canary_not_fooled(r)
    assert (result.passed, result.figure) == (passed, figure), result.why
    assert why_has in result.why


def test_canary_not_fooled_says_whether_ddos_mode_was_on() -> None:
    docs = {"deployments": {"attack_good": GOOD_CLEAN, "attack_bad": BAD_ROLLED}}
    off = c.canary_not_fooled(rec({"ddos.mode": [(0, 0), (400, 0)]}, DURING, docs))
    on = c.canary_not_fooled(rec({"ddos.mode": [(0, 0), (400, 1)]}, DURING, docs))
    assert "DDoS mode never on during the clean canary" in off.why
    assert "DDoS mode on during the clean canary" in on.why
    assert (off.detail["ddosModeOn"], on.detail["ddosModeOn"]) == (False, True)


def test_canary_not_fooled_not_run_or_refused_by_the_gates() -> None:
    result = c.canary_not_fooled(rec())
    assert not result.passed and "did not run" in result.why
    assert result.evidence == "act canary_attack_bad"
    validation = {"reportId": "r9", "passed": False, "failed": ["error_budget"]}
    refused = act("canary_attack_bad", 300, 301, validation=validation)
    result = c.canary_not_fooled(rec(acts=[*ATTACKS, refused]))
    assert not result.passed and result.evidence == "act canary_attack_bad"
    assert "not started: the pre-deploy gates refused it (error_budget)" in result.why


def test_the_recorder_keeps_why_a_deployment_paused_and_what_the_judge_saw() -> None:
    from datetime import UTC, datetime

    from stack.rehearse.timeline import history_entry, judged_minute

    at = datetime(2027, 1, 15, 8, 3, tzinfo=UTC)
    paused = history_entry({
        "at": at, "event": "paused", "phase": "paused", "trafficPercent": 5,
        "detail": {"why": PAUSE_WHY, "checks": ["error_rate"],
                   "platform": [{"kind": "ddos_detection", "detail": "x", "minutes": []},
                                {"kind": "scale", "detail": "y", "minutes": []}]},
    })  # fmt: skip
    assert paused == {
        "at": at.timestamp(), "event": "paused", "phase": "paused", "trafficPercent": 5,
        "manual": False, "why": PAUSE_WHY, "signals": ["ddos_detection", "scale"],
    }  # fmt: skip
    resumed = history_entry(
        {
            "at": at,
            "event": "resumed",
            "phase": "progressing",
            "detail": {"why": "the platform is clear", "kinds": ["ddos_mode"]},
        }
    )
    assert (resumed["why"], resumed["signals"]) == ("the platform is clear", ["ddos_mode"])
    rollback = history_entry(
        {
            "at": at,
            "event": "rollback",
            "phase": "rolling_back",
            "detail": {"reason": "canary breached token_mismatch_rate"},
        }
    )
    assert rollback["why"] == "canary breached token_mismatch_rate" and rollback["signals"] == []
    minute_doc = {
        "windowStart": at, "verdict": "explained", "step": 0,
        "checks": [{"metric": "error_rate", "verdict": "explained", "canary": 4.0, "stable": 3.9},
                   {"metric": "p95_latency_ms", "verdict": "pass"}],
        "canary": {"requests": 80}, "stable": {"requests": 1500},
        "platform": {"signals": [{"kind": "ddos_detection"}, {"kind": "ddos_detection"}]},
    }  # fmt: skip
    assert judged_minute(minute_doc) == {
        "windowStart": at.timestamp(), "verdict": "explained", "step": 0,
        "signals": ["ddos_detection"],
        "checks": {"error_rate": {"verdict": "explained", "canary": 4.0, "stable": 3.9}},
        "requests": [80, 1500],
    }  # fmt: skip
    fast = judged_minute({**minute_doc, "platform": None, "verdict": "breach"})
    assert fast["signals"] is None  # the fast judge reads no platform


# ------------------------------------------------------------------ budgets act

ISOLATE = act("isolate", 200, 265, service="notification-service")
BURNING = {"minute": "2027-01-15T08:03:00Z", "level": "page", "why": "availability: ...",
           "requests": {"5m": 190},
           "freeze": {"wanted": True, "enforced": True,
                      "scopes": ["service:notification-service"]}}  # fmt: skip


def validated(at: float, passed: bool, budget: str, **gates: str) -> dict[str, Any]:
    return {"at": T0 + at, "status": "OK", "message": "", "passed": passed,
            "gates": {"system_health": "pass", **gates, "error_budget": budget},
            "budgetGate": {"status": budget, "frozenBy": ["service:notification-service"]
                           if budget == "fail" else None}}  # fmt: skip


BUDGETS = {
    "scope": "service:notification-service", "waitedSec": 420.0, "burnSeenAt": T0 + 350,
    "status": BURNING, "refused": validated(352, False, "fail"),
    "lift": {"at": T0 + 353, "status": "OK", "message": "", "until": "..."},
    "afterLift": validated(355, True, "pass"), "unlift": {"at": T0 + 356, "status": "OK"},
}  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "passed", "figure", "why_has"),
    [
        ({}, True, 150.0,
         "deploys of service:notification-service frozen 150s after its errors began; at "
         "+352s (page: ...) its release refused by error_budget (service:notification-service);"
         " lifted, the same release passed at +355s; lift removed"),
        # the evaluator never showed the burn
        ({"burnSeenAt": None, "status": {**BURNING, "level": "none",
                                         "freeze": {"wanted": False, "enforced": False}}},
         False, None, "was not frozen within 420s of the isolation: level none"),
        # the release went through while burning (the gate saw no freeze)
        ({"refused": validated(352, True, "pass")}, False, 150.0,
         "its release was not refused by error_budget: passed True, error_budget pass"),
        # refused, but by another gate only
        ({"refused": validated(352, False, "pass", payment_system="fail")}, False, 150.0,
         "error_budget pass"),
        # lifted, still refused by the budget gate
        ({"afterLift": validated(355, False, "fail")}, False, 150.0,
         "lifted, the same release was still refused: error_budget fail"),
        # lifted, refused by another gate
        ({"afterLift": validated(355, False, "pass", system_health="fail")}, False, 150.0,
         "failed gates system_health"),
        ({"lift": {"at": T0 + 353, "status": "PERMISSION_DENIED", "message": "ops only"}},
         False, 150.0, "the lift was refused: PERMISSION_DENIED ops only"),
    ],
)  # fmt: skip
def test_budgets_act(
    changes: dict[str, Any], passed: bool, figure: float | None, why_has: str
) -> None:
    result = c.budgets_act(rec(acts=[ISOLATE], docs={"budgets": {**BUDGETS, **changes}}))
    assert (result.passed, result.figure) == (passed, figure), result.why
    assert why_has in result.why


def test_budgets_act_counts_from_the_first_sample_of_the_freeze() -> None:
    # the act looked only after the circuit closed (+350); the freeze was on from +290
    freeze = {"slo.deploy_freeze": [(100.0, 1.0), (200.0, 0.0), (290.0, 1.0), (300.0, 1.0)]}
    result = c.budgets_act(rec(freeze, [ISOLATE], {"budgets": BUDGETS}))
    assert result.passed and result.figure == 90.0
    assert "frozen 90s after its errors began" in result.why


def test_budgets_act_not_run() -> None:
    result = c.budgets_act(rec())
    assert not result.passed and result.evidence == "act budget_freeze"


# ------------------------------------------------------------------ protection


SINGLE = act("attack_single", 615, 700, kind="single_source_flood")
DISTRIBUTED = act("attack_distributed", 735, 820, kind="distributed_attack")


@pytest.mark.parametrize(
    ("detections", "passed", "figure", "why_has"),
    [
        ([{"id": "m1_single_source_flood", "kind": "single_source_flood", "detectedAt": T0 + 661,
           "mitigated": True},
          {"id": "m2_distributed_attack", "kind": "distributed_attack", "detectedAt": T0 + 781,
           "mitigated": True}], True, 46.0, "single_source_flood detected in 46s, mitigated"),
        ([{"id": "m1", "kind": "single_source_flood", "detectedAt": T0 + 690, "mitigated": True},
          {"id": "m2", "kind": "distributed_attack", "detectedAt": T0 + 781, "mitigated": True}],
         False, 75.0, "single_source_flood detected 75s after it began"),
        ([{"id": "m1", "kind": "single_source_flood", "detectedAt": T0 + 661, "mitigated": False},
          {"id": "m2", "kind": "distributed_attack", "detectedAt": T0 + 781, "mitigated": True}],
         False, 46.0, "not mitigated"),
        ([{"id": "m1", "kind": "single_source_flood", "detectedAt": T0 + 661, "mitigated": True}],
         False, 46.0, "distributed_attack starting at +735s was never detected"),
        # a detection from before the attack is not this attack's
        ([{"id": "m0", "kind": "single_source_flood", "detectedAt": T0 + 600, "mitigated": True},
          {"id": "m2", "kind": "distributed_attack", "detectedAt": T0 + 781, "mitigated": True}],
         False, 46.0, "single_source_flood starting at +615s was never detected"),
    ],
)  # fmt: skip
def test_ddos_detection(
    detections: list[dict[str, Any]], passed: bool, figure: float, why_has: str
) -> None:
    result = c.ddos_detection(rec(acts=[SINGLE, DISTRIBUTED], docs={"detections": detections}))
    assert (result.passed, result.figure) == (passed, figure)
    assert why_has in result.why


LIMITS = {
    "auth": 5, "wallet": 10, "payment": 3, "ai": 50, "swipe": 100, "general": 200, "staff": 600,
    "service": 1200,
}  # fmt: skip


def classes(**wrong: int) -> list[dict[str, Any]]:
    return [
        {"class": k, "deniedAt": wrong.get(k, v + 1), "retryAfterSec": 12.0, "elapsedSec": 0.5}
        for k, v in LIMITS.items()
    ]


@pytest.mark.parametrize(
    ("probe", "enforced"),
    [
        ({"class": "auth", "deniedAt": 6, "retryAfterSec": 11.9, "elapsedSec": 0.1}, True),
        ({"class": "auth", "deniedAt": 5, "retryAfterSec": 11.9, "elapsedSec": 0.1}, False),
        ({"class": "auth", "deniedAt": 7, "retryAfterSec": 11.9, "elapsedSec": 0.1}, False),
        # 200/min for 3 s: 10 tokens refilled while probing, so 201..211 is the limit
        ({"class": "general", "deniedAt": 211, "retryAfterSec": 0.2, "elapsedSec": 3.0}, True),
        ({"class": "general", "deniedAt": 212, "retryAfterSec": 0.2, "elapsedSec": 3.0}, False),
        ({"class": "general", "deniedAt": 201, "retryAfterSec": None, "elapsedSec": 3.0}, False),
        ({"class": "general", "deniedAt": None, "retryAfterSec": None, "elapsedSec": 3.0}, False),
        ({"class": "nonsense", "deniedAt": 3, "retryAfterSec": 1.0, "elapsedSec": 0.0}, False),
        # DDoS mode halves every class but staff (floor, at least 1)
        (
            {
                "class": "auth",
                "deniedAt": 3,
                "retryAfterSec": 30.0,
                "elapsedSec": 0.0,
                "ddosMode": True,
            },
            True,
        ),
        (
            {
                "class": "payment",
                "deniedAt": 2,
                "retryAfterSec": 60.0,
                "elapsedSec": 0.0,
                "ddosMode": True,
            },
            True,
        ),
        (
            {
                "class": "auth",
                "deniedAt": 6,
                "retryAfterSec": 30.0,
                "elapsedSec": 0.0,
                "ddosMode": True,
            },
            False,
        ),
        (
            {
                "class": "staff",
                "deniedAt": 601,
                "retryAfterSec": 0.1,
                "elapsedSec": 0.0,
                "ddosMode": True,
            },
            True,
        ),
        # a service principal's own bucket is never scaled by DDoS mode either
        (
            {
                "class": "service",
                "deniedAt": 1201,
                "retryAfterSec": 0.05,
                "elapsedSec": 0.0,
                "ddosMode": True,
            },
            True,
        ),
    ],
)
def test_class_enforced(probe: dict[str, Any], enforced: bool) -> None:
    assert c.class_enforced(probe) is enforced


@pytest.mark.parametrize(
    ("rl", "passed", "figure", "why_has"),
    [
        ({"classes": classes(), "endpoints": [{"name": "a", "status": "RESOURCE_EXHAUSTED"},
                                              {"name": "b", "status": "RESOURCE_EXHAUSTED"}]},
         True, 2.0, "all 2 callables limited"),
        ({"classes": classes(), "endpoints": [{"name": "a", "status": "RESOURCE_EXHAUSTED"},
                                              {"name": "b", "status": "OK"}]},
         False, 1.0, "not limited: b"),
        ({"classes": classes(payment=5),
          "endpoints": [{"name": "a", "status": "RESOURCE_EXHAUSTED"}]},
         False, 1.0, "payment"),
        ({"classes": classes()[:2], "endpoints": [{"name": "a", "status": "RESOURCE_EXHAUSTED"}]},
         False, 1.0, "ai, general, payment, service, staff, swipe"),
        ({"classes": classes(), "endpoints": []}, False, 0.0, "no endpoint probed"),
    ],
)  # fmt: skip
def test_rate_limits(rl: dict[str, Any], passed: bool, figure: float, why_has: str) -> None:
    result = c.rate_limits(rec(docs={"rateLimits": rl}))
    assert (result.passed, result.figure) == (passed, figure)
    assert why_has in result.why


def attempts(blocked_from: int | None, n: int = 7) -> list[dict[str, Any]]:
    return [
        {"n": i, "blocked": blocked_from is not None and i >= blocked_from} for i in range(1, n)
    ]


BLOCKS = [
    {"id": "b1", "scope": "user", "subject": "u", "kind": "brute_force"},
    {"id": "b2", "scope": "ip", "subject": "127.9.0.67", "kind": "brute_force"},
]


def bf_doc(
    blocked_from: int | None,
    blocks: list[dict[str, Any]],
    n: int = 7,
    neighbour: bool = True,
    stuffing_at: int | None = 5,
) -> dict[str, Any]:
    return {
        "uid": "u",
        "address": "127.9.0.66",
        "attempts": attempts(blocked_from, n),
        "neighbourAllowed": neighbour,
        "stuffingAddress": "127.9.0.67",
        "stuffing": [
            {"n": i, "blocked": stuffing_at is not None and i >= stuffing_at} for i in range(1, 7)
        ],
        "blocks": blocks,
    }


OWN_ADDRESS = {"id": "b3", "scope": "ip", "subject": "127.9.0.66", "kind": "brute_force"}


@pytest.mark.parametrize(
    ("bf", "passed", "figure", "why_has"),
    [
        (bf_doc(6, BLOCKS), True, 6.0, "attempt 6 refused the user, its address untouched"),
        (bf_doc(None, []), False, None, "never blocked"),
        (bf_doc(6, BLOCKS[:1]), False, 6.0, "credential stuffing blocked the address"),
        (bf_doc(7, BLOCKS, n=9), False, 7.0, "user blocked at attempt 7"),
        # a user's own reports must never block its address, nor its neighbour
        (bf_doc(6, [*BLOCKS, OWN_ADDRESS]), False, 6.0, "blocked its address or its neighbour"),
        (bf_doc(6, BLOCKS, neighbour=False), False, 6.0, "its neighbour"),
        (bf_doc(6, BLOCKS, stuffing_at=4), False, 6.0, "at account 4 (want 5)"),
    ],
)
def test_brute_force(bf: dict[str, Any], passed: bool, figure: float | None, why_has: str) -> None:
    result = c.brute_force(rec(docs={"bruteForce": bf}))
    assert (result.passed, result.figure) == (passed, figure)
    assert why_has in result.why


def population_row(scenario: str, **goals: str) -> dict[str, Any]:
    verdicts = {"legit": "PASS", "attack": "PASS", "memory": "n/a", "key": "n/a", **goals}
    return {"scenario": scenario, "legitDeniedPct": 0.0, "goals": verdicts}


@pytest.mark.parametrize(
    ("rows", "passed", "why_has"),
    [
        ([population_row("none"), population_row("single_source")], True, "2 scenarios"),
        (
            [population_row("none"), population_row("ua_rotating", memory="FAIL")],
            False,
            "ua_rotating: memory",
        ),
        ([], False, "no scenario ran"),
    ],
)
def test_population(rows: list[dict[str, Any]], passed: bool, why_has: str) -> None:
    result = c.population(rec(docs={"population": rows}))
    assert result.passed is passed
    assert why_has in result.why


def test_population_missing_names_its_act() -> None:
    result = c.population(rec(docs={}))
    assert result.passed is False and "population" in result.why


# ------------------------------------------------------------------ ops, markets, backups

DAYS_30 = 30 * 86400


def minutes(*offsets: int, keep: float = DAYS_30) -> list[dict[str, Any]]:
    return [{"id": f"m{o}", "at": T0 + o, "expireAt": T0 + o + keep} for o in offsets]


@pytest.mark.parametrize(
    ("points", "length", "passed", "figure", "why_has"),
    [
        # 300 s from a minute boundary: the runs of +60..+240 have written their points
        (minutes(0, 60, 120, 180, 240), 300.0, True, 4.0, "4 of 4 minutes written"),
        (minutes(60, 180, 240), 300.0, False, 3.0,
         "1 of 4 minutes have no history point, first at +120s"),
        (minutes(60, 120, 180, 240, keep=7 * 86400), 300.0, False, 4.0, "not kept 30 days"),
        (minutes(60, 120, 180, 240), 260.0, True, 3.0, "3 of 3 minutes"),
        (minutes(), 80.0, False, 0.0, "shorter than one complete minute"),
    ],
)  # fmt: skip
def test_metrics_history(
    points: list[dict[str, Any]], length: float, passed: bool, figure: float, why_has: str
) -> None:
    result = c.metrics_history(rec(docs={"history": {"minutes": points}}, length=length))
    assert (result.passed, result.figure) == (passed, figure)
    assert why_has in result.why


@pytest.mark.parametrize(
    ("market", "passed", "why_has"),
    [
        ({"country": "PL", "trafficLimit": 5, "admitted": 5, "signups": 8,
          "finalStatus": "public", "publicAdmits": True}, True, "exactly 5 of 8"),
        ({"country": "PL", "trafficLimit": 5, "admitted": 6, "signups": 8,
          "finalStatus": "public", "publicAdmits": True}, False, "6 admitted for a limit of 5"),
        ({"country": "PL", "trafficLimit": 5, "admitted": 5, "signups": 8,
          "finalStatus": "soft_launch", "publicAdmits": False}, False, "did not open"),
    ],
)  # fmt: skip
def test_market_rollout(market: dict[str, Any], passed: bool, why_has: str) -> None:
    result = c.market_rollout(rec(docs={"market": market}))
    assert result.passed is passed and why_has in result.why


@pytest.mark.parametrize(
    ("backup", "drill", "passed", "figure"),
    [
        ({"backupId": "b1", "status": "complete"},
         {"drillId": "d1", "ok": True, "durationSec": 4.26, "documents": 900}, True, 4.3),
        ({"backupId": "b1", "status": "complete"},
         {"drillId": "d1", "ok": False, "durationSec": 4.2, "documents": 0}, False, 4.2),
        ({"backupId": "b1", "status": "complete"},
         {"drillId": "d1", "ok": True, "durationSec": 1000.0, "documents": 9}, False, 1000.0),
        ({"backupId": "b1", "status": "failed"},
         {"drillId": "d1", "ok": True, "durationSec": 4.0, "documents": 9}, False, 4.0),
    ],
)  # fmt: skip
def test_restore_drill(
    backup: dict[str, Any], drill: dict[str, Any], passed: bool, figure: float
) -> None:
    result = c.restore_drill(rec(docs={"backup": backup, "drill": drill}))
    assert (result.passed, result.figure) == (passed, figure)


def test_judge_runs_the_claims_asked_for_in_their_order() -> None:
    results = c.judge(rec(), ["brute_force", "scale_up"])
    assert [r.claim for r in results] == ["scale_up", "brute_force"]
    assert all(not r.passed and "did not run" in r.why for r in results)
    assert len(c.judge(rec())) == 17
