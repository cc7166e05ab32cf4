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
    assert len(c.judge(rec())) == 15
