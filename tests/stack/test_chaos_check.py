"""The chaos invariant checkers on recorded histories (pure, literal tables)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stack import chaos_check as cc
from stack.chaos_check import Call, Window

W = Window("redis-kill", started_at=100.0, undone_at=110.0)


def rl(
    t: float,
    cls: str = "swipe",
    *,
    error: str | None = None,
    reason: str | None = None,
    retry: float | None = None,
    allowed: bool | None = True,
    http: int | None = 200,
    dt: float = 0.01,
) -> Call:
    result = {} if error or allowed is None else {"allowed": allowed}
    status = http if error is None else (503 if error == "UNAVAILABLE" else http)
    return Call("ratelimit", cls, t, t + dt, status, error, reason, retry, result)


def signup(
    t: float, uid: str, admitted: bool | None, reason: str | None, error: str | None = None
) -> Call:
    result = {} if admitted is None else {"signupAdmitted": admitted}
    return Call("signup", "PL", t, t + 0.05, 200 if error is None else 503, error, reason,
                None, result, uid)  # fmt: skip


def job(t: float, name: str, http: int | None, error: str | None = None, dt: float = 1.0) -> Call:
    return Call("job", name, t, t + dt, http, error)


# ------------------------------------------------------------------ outcomes


@pytest.mark.parametrize(
    ("call", "label"),
    [
        (rl(1), "ok"),
        (rl(1, allowed=False, reason="user_limit"), "denied"),
        (rl(1, reason="redis_unavailable"), "ok:fail_open"),
        (rl(1, "auth", error="UNAVAILABLE", retry=5), "UNAVAILABLE"),
        (Call("swipe", "swipe", 1, 2, 500), "http_500"),
        (Call("swipe", "swipe", 1, 2, None, "timeout"), "timeout"),
        (signup(1, "u", True, "admitted"), "admitted"),
        (signup(1, "u", False, "traffic_limit_reached"), "refused:traffic_limit_reached"),
    ],
)
def test_outcome_labels(call: Call, label: str) -> None:
    assert cc.outcome(call) == label


def test_outcomes_count_by_phase_and_op() -> None:
    history = [rl(99), rl(101, reason="redis_unavailable"), rl(102), rl(111)]
    assert cc.outcomes(history, W) == {
        "before": {"ratelimit": {"ok": 1}},
        "during": {"ratelimit": {"ok": 1, "ok:fail_open": 1}},
        "after": {"ratelimit": {"ok": 1}},
    }


# ------------------------------------------------------------------ no INTERNAL


@pytest.mark.parametrize(
    ("history", "sandbox_fault", "held", "first_t"),
    [
        ([rl(101), Call("swipe", "swipe", 102, 103, 200)], False, True, None),
        ([rl(101), rl(105, error="INTERNAL", http=500), rl(103, error="INTERNAL", http=500)],
         False, False, 103),
        ([Call("swipe", "swipe", 104, 105, 500)], False, False, 104),
        ([Call("swipe", "swipe", 104, 105, 500)], True, True, None),  # the fault itself
        ([Call("swipe", "swipe", 120, 121, 500)], True, False, 120),  # after the undo
        ([Call("swipe", "swipe", 110.2, 110.3, 500)], True, True, None),  # undo: 1 s grace
        ([Call("swipe", "swipe", 111.2, 111.3, 500)], True, False, 111.2),
        ([job(101, "pack391_scaleGuard", 500)], False, True, None),  # a job's failure answer
    ],
)  # fmt: skip
def test_no_internal(
    history: list[Call], sandbox_fault: bool, held: bool, first_t: float | None
) -> None:
    v = cc.no_internal(history, W, sandbox_errors_window=sandbox_fault)
    assert v.held is held
    if not held:
        assert v.counterexample is not None and v.counterexample["t_start"] == first_t


# ------------------------------------------------------------------ fail closed / open


@pytest.mark.parametrize(
    ("call", "held"),
    [
        (rl(101, "auth", error="UNAVAILABLE", retry=5.0), True),
        (rl(101, "payment", error="UNAVAILABLE", retry=None), False),  # no retryAfterSec
        (rl(101, "wallet", error="UNAVAILABLE", retry=0), False),
        (rl(101, "auth", reason="redis_unavailable"), False),  # fail-closed class failed open
        (rl(101, "swipe", reason="redis_unavailable"), True),
        (rl(101, "general", reason="redis_unavailable"), True),
        (rl(101, "general", error="UNAVAILABLE", retry=5), False),  # fail-open class closed
        (rl(101, "swipe", reason="redis_unavailable", allowed=False), False),
        (rl(101, "auth", allowed=False, reason="ip_limit"), True),  # a normal denial
        (Call("wallet", "wallet", 101, 102, 503, "UNAVAILABLE", None, 5.0), True),
        (Call("wallet", "wallet", 101, 102, 503, "UNAVAILABLE", None, None), False),
    ],
)
def test_rate_limit_modes(call: Call, held: bool) -> None:
    v = cc.rate_limit_modes([rl(99), call])
    assert v.held is held
    if not held:
        assert v.counterexample is not None and v.counterexample["t_start"] == 101


def test_degraded_seen() -> None:
    assert cc.degraded_seen([rl(105, reason="redis_unavailable")], W).held
    assert cc.degraded_seen([rl(99, dt=2, error="UNAVAILABLE", retry=5)], W).held  # overlaps
    assert not cc.degraded_seen([rl(105), rl(120, reason="redis_unavailable")], W).held


# ------------------------------------------------------------------ recovery


@pytest.mark.parametrize(
    ("history", "took", "held", "stayed"),
    [
        ([rl(105, reason="redis_unavailable"), rl(110.5), rl(111)], 0.51, True, True),
        ([rl(111, "auth", error="UNAVAILABLE", retry=5), rl(113)], 3.01, True, True),
        ([rl(111, reason="redis_unavailable"), rl(125)], 15.01, False, True),  # over budget
        ([rl(111, reason="redis_unavailable")], None, False, True),  # never recovered
        ([rl(110.5), rl(112, reason="redis_unavailable")], 0.51, True, False),  # flapped back
        ([rl(109.9), rl(111)], 1.01, True, True),  # started before the undo: never counts
    ],
)
def test_recovery(history: list[Call], took: float | None, held: bool, stayed: bool) -> None:
    measured = cc.recovery_time(history, W)
    assert measured == (None if took is None else pytest.approx(took))
    assert cc.recovered_within(history, W, budget_sec=10).held is held
    v = cc.stayed_normal(history, W)
    assert v.held is stayed
    if not stayed:
        assert v.counterexample is not None and v.counterexample["t_start"] == 112


# ------------------------------------------------------------------ latency


def test_percentile_nearest_rank() -> None:
    assert cc.percentile([], 99) == 0.0
    assert cc.percentile([5.0], 99) == 5.0
    assert cc.percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert cc.percentile([float(i) for i in range(1, 101)], 50) == 50.0


@pytest.mark.parametrize(
    ("latencies_ms", "held"),
    [([10.0] * 99 + [900.0], True), ([10.0] * 98 + [900.0] * 2, False), ([], False)],
)
def test_latency_budget(latencies_ms: list[float], held: bool) -> None:
    history = [rl(101 + i * 0.01, dt=ms / 1000) for i, ms in enumerate(latencies_ms)]
    history.append(rl(120, dt=5.0))  # after the fault: not counted
    v = cc.latency_budget(history, W, budget_ms=500)
    assert v.held is held


# ------------------------------------------------------------------ answered


@pytest.mark.parametrize(
    ("call", "functions_down", "held"),
    [
        (rl(101, "auth", error="UNAVAILABLE", retry=5), False, True),
        (Call("signup", "PL", 101, 121, None, "timeout"), False, False),
        (Call("ratelimit", "auth", 101, 101.1, None, "connection"), False, False),
        (Call("ratelimit", "auth", 101, 101.1, None, "connection"), True, True),
        (Call("ratelimit", "auth", 120, 120.1, None, "connection"), True, False),  # after undo
        (Call("ratelimit", "auth", 101, 101.1, 502), False, False),  # not the protocol
        (Call("swipe", "swipe", 101, 111, None, "timeout"), False, True),  # sandbox: not callable
    ],
)
def test_answered(call: Call, functions_down: bool, held: bool) -> None:
    assert cc.answered([call], W, functions_down=functions_down).held is held


def test_signup_errors_unavailable() -> None:
    assert cc.signup_errors_unavailable([signup(1, "a", None, None, error="UNAVAILABLE")]).held
    v = cc.signup_errors_unavailable([signup(1, "a", None, None, error="INTERNAL")])
    assert not v.held and v.counterexample is not None and v.counterexample["uid"] == "a"


# ------------------------------------------------------------------ admissions


def _by_name(verdicts: list[cc.Verdict]) -> dict[str, cc.Verdict]:
    return {v.name.split(" ")[0] + ":" + v.name.split(" ")[-1]: v for v in verdicts}


ADMIT_TABLE: list[tuple[str, list[Call], set[str], set[str], set[str], list[bool]]] = [
    # name, history, firestore, redis, baseline, [limit, acked recorded, refused, agree]
    (
        "clean",
        [signup(1, "a", True, "admitted"), signup(2, "b", True, "admitted"),
         signup(3, "c", False, "traffic_limit_reached")],
        {"a", "b"}, {"a", "b"}, set(), [True, True, True, True],
    ),
    (
        "over the limit (told)",
        [signup(1, "a", True, "admitted"), signup(2, "b", True, "admitted"),
         signup(3, "c", True, "admitted")],
        {"a", "b", "c"}, {"a", "b", "c"}, set(), [False, True, True, True],
    ),
    (
        "over the limit with the baseline",
        [signup(1, "a", True, "admitted")],
        {"a", "x", "y"}, {"a", "x", "y"}, {"x", "y"}, [False, True, True, True],
    ),
    (
        "acknowledged but lost",
        [signup(1, "a", True, "admitted"), signup(2, "b", True, "already_admitted")],
        {"a"}, {"a"}, set(), [True, False, True, True],
    ),
    (
        "refused yet recorded",
        [signup(1, "a", True, "admitted"), signup(2, "c", False, "traffic_limit_reached")],
        {"a", "c"}, {"a", "c"}, set(), [True, True, False, True],
    ),
    (
        "an error may or may not have been recorded",
        [signup(1, "a", True, "admitted"), signup(2, "b", None, None, error="UNAVAILABLE")],
        {"a", "b"}, {"a", "b"}, set(), [True, True, True, True],
    ),
    (
        "redis behind firestore",
        [signup(1, "a", True, "admitted"), signup(2, "b", True, "admitted")],
        {"a", "b"}, {"a"}, set(), [True, True, True, False],
    ),
    (
        "identity refusals do not count",
        [signup(1, "a", False, "identity_required")],
        set(), set(), set(), [True, True, True, True],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("history", "fs", "rs", "base", "expected"),
    [row[1:] for row in ADMIT_TABLE],
    ids=[row[0] for row in ADMIT_TABLE],
)
def test_admissions(
    history: list[Call], fs: set[str], rs: set[str], base: set[str], expected: list[bool]
) -> None:
    verdicts = cc.admissions(history, "PL", 2, fs, rs, base)
    assert [v.held for v in verdicts] == expected
    for v in verdicts:
        assert v.held or v.counterexample is not None


def test_admissions_first_counterexample_is_the_first_over_the_limit() -> None:
    history = [signup(float(i), f"u{i}", True, "admitted") for i in (5, 1, 3, 4)]
    limit = cc.admissions(history, "PL", 2, {"u1", "u3", "u4", "u5"}, set(), set())[0]
    assert not limit.held and limit.counterexample is not None
    assert limit.counterexample["uid"] == "u4"  # the third acknowledged, by answer time


def test_admissions_ignore_other_markets() -> None:
    other = Call("signup", "DE", 1, 2, 200, None, "admitted", None, {"signupAdmitted": True}, "z")
    assert all(v.held for v in cc.admissions([other], "PL", 0, set(), set(), set()))


# ------------------------------------------------------------------ jobs

JOBS = ("pack391_scaleGuard",)


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([job(102, JOBS[0], 500), job(112, JOBS[0], 200)], [True, True]),
        ([job(102, JOBS[0], 200), job(112, JOBS[0], 200)], [True, True]),
        ([job(102, JOBS[0], None, "timeout"), job(112, JOBS[0], 200)], [False, True]),
        ([job(102, JOBS[0], 503), job(112, JOBS[0], 500)], [False, False]),
        ([job(112, JOBS[0], 200)], [False, True]),  # never triggered during the fault
        ([job(98, JOBS[0], 500, dt=3), job(112, JOBS[0], 500), job(115, JOBS[0], 200)],
         [True, True]),
    ],
)  # fmt: skip
def test_jobs_failed_or_complete(history: list[Call], expected: list[bool]) -> None:
    assert [v.held for v in cc.jobs_failed_or_complete(history, W, JOBS)] == expected


def test_jobs_refused_while_the_functions_server_is_down_did_not_run() -> None:
    history = [job(102, JOBS[0], None, "connection", dt=0.001), job(112, JOBS[0], 200)]
    assert [v.held for v in cc.jobs_failed_or_complete(history, W, JOBS)] == [False, True]
    down = cc.jobs_failed_or_complete(history, W, JOBS, functions_down=True)
    assert [v.held for v in down] == [True, True]


def test_sandbox_errors_until_the_stack_is_seen_healthy() -> None:
    window = Window("sandbox-errors", 100.0, 110.0, recovered_at=110.4)
    late = Call("swipe", "swipe", 110.2, 110.3, 500)
    assert cc.no_internal([late], window, sandbox_errors_window=True).held
    after = Call("swipe", "swipe", 110.5, 110.6, 500)
    assert not cc.no_internal([after], window, sandbox_errors_window=True).held


def _svc(sid: str, current: int, pending: Any = None) -> dict[str, Any]:
    return {
        "config": {"serviceId": sid},
        "state": {"currentInstances": current, "pending": pending},
    }


def _dec(sid: str, minute: int, desired: int, acted: bool = True, dry: bool = False) -> Any:
    at = datetime(2026, 1, 1, 12, minute, tzinfo=UTC)
    return {"serviceId": sid, "at": at, "desiredInstances": desired, "acted": acted, "dryRun": dry}


@pytest.mark.parametrize(
    ("services", "decisions", "held"),
    [
        ([_svc("api", 4)], [_dec("api", 1, 2), _dec("api", 2, 4)], True),
        ([_svc("api", 2)], [_dec("api", 1, 2), _dec("api", 2, 4)], False),  # applied, not recorded
        ([_svc("api", 2)], [_dec("api", 1, 2), _dec("api", 2, 8, acted=False)], True),
        ([_svc("api", 2)], [_dec("api", 1, 2), _dec("api", 2, 8, dry=True)], True),
        ([_svc("api", 2, pending={"desiredInstances": 4})], [], False),  # left in flight
        ([], [], False),  # no registry at all
    ],
)
def test_scale_guard_consistent(
    services: list[dict[str, Any]], decisions: list[dict[str, Any]], held: bool
) -> None:
    assert cc.scale_guard_consistent(services, decisions).held is held


def _dep(dep_id: str, env: str, phase: str, traffic: int = 10) -> dict[str, Any]:
    return {"deploymentId": dep_id, "environment": env, "phase": phase, "trafficPercent": traffic}


@pytest.mark.parametrize(
    ("deployments", "active", "held"),
    [
        ([], {}, True),
        ([_dep("d1", "prod", "running")], {"prod": {"deploymentId": "d1"}}, True),
        ([_dep("d1", "prod", "succeeded")], {}, True),
        ([_dep("d1", "prod", "running")], {}, False),  # running but not active
        ([_dep("d1", "prod", "rolled_back")], {"prod": {"deploymentId": "d1"}}, False),
        ([], {"prod": {"deploymentId": "gone"}}, False),
        ([_dep("d1", "prod", "running", 140)], {"prod": {"deploymentId": "d1"}}, False),
    ],
)
def test_deploy_monitor_consistent(
    deployments: list[dict[str, Any]], active: dict[str, dict[str, Any]], held: bool
) -> None:
    assert cc.deploy_monitor_consistent(deployments, active).held is held


def test_live_metrics_consistent() -> None:
    t0 = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC).timestamp()
    run = job(t0, "pack391_updateLiveMetrics", 200)
    failed = job(t0 + 60, "pack391_updateLiveMetrics", 500)
    snapshot = {"at": datetime(2026, 1, 1, 12, 0, 31, tzinfo=UTC)}
    assert cc.live_metrics_consistent(snapshot, ["20260101T1200Z"], [run, failed]).held
    # a successful run whose minute has no history point: half-applied
    assert not cc.live_metrics_consistent(snapshot, ["20260101T1159Z"], [run]).held
    # the snapshot is older than the last successful run
    old = {"at": datetime(2026, 1, 1, 11, 50, tzinfo=UTC)}
    assert not cc.live_metrics_consistent(old, ["20260101T1200Z"], [run]).held
    assert not cc.live_metrics_consistent(None, ["20260101T1200Z"], [run]).held
    # failed runs promise nothing
    assert cc.live_metrics_consistent(None, [], [failed]).held


def test_window_phase_and_overlap() -> None:
    assert W.phase(rl(99)) == "before" and W.phase(rl(100)) == "during"
    assert W.phase(rl(110)) == "after"
    assert W.overlaps(rl(99, dt=1.5)) and not W.overlaps(rl(99, dt=0.5))
    assert not W.overlaps(rl(110))


# ------------------------------------------------------------------ answer times

BUDGETS = {"pack391_checkRateLimit": 3.0, "pack391_manualScale": 115.0, "pack391_scaleGuard": 205.0}


def fn(t: float, function: str | None, took: float, error: str | None = None) -> Call:
    """A call of ``function`` started at ``t`` that answered after ``took`` seconds."""
    op = "swipe" if function is None else "probe"
    return Call(op, function or "swipe", t, t + took, None if error else 200, error,
                function=function)  # fmt: skip


def test_every_call_over_its_budget_plus_the_slack_is_a_violation() -> None:
    history = [
        fn(106.0, "pack391_checkRateLimit", 5.0),  # over (listed second: by start)
        fn(100.0, "pack391_checkRateLimit", 0.05),
        fn(101.0, "pack391_checkRateLimit", 3.9),  # over its budget, within the slack
        fn(102.0, "pack391_checkRateLimit", 4.2),  # over budget + slack: the first
        fn(103.0, "pack391_checkRateLimit", 20.0, error="timeout"),  # no answer: counts
        fn(104.0, "pack391_manualScale", 30.0),  # a long budget of its own
        fn(105.0, None, 60.0),  # the sandbox's app endpoint: no budget of the bundle's
        fn(105.5, "pack391_unknownFunction", 100.0),  # no budget known: not checked
    ]
    violations = cc.budget_violations(history, BUDGETS, slack_sec=1.0)
    assert [(v.call.t_start, v.budget_sec, round(v.took_sec, 3)) for v in violations] == [
        (102.0, 3.0, 4.2),
        (103.0, 3.0, 20.0),
        (106.0, 3.0, 5.0),
    ]
    verdict = cc.within_budget(history, BUDGETS, slack_sec=1.0)
    assert not verdict.held
    assert verdict.name == "every call answered within its function's budget + 1s"
    assert verdict.detail == (
        "3 call(s) over; the first, pack391_checkRateLimit, took 4.20s of a 3s budget"
    )
    assert verdict.counterexample is not None
    assert verdict.counterexample["function"] == "pack391_checkRateLimit"
    assert (verdict.counterexample["budgetSec"], verdict.counterexample["tookSec"]) == (3.0, 4.2)
    # with no slack, the 3.9 s answer is over too
    assert [v.call.t_start for v in cc.budget_violations(history, BUDGETS, 0.0)][:2] == [
        101.0,
        102.0,
    ]


def test_within_budget_holds_up_to_budget_plus_slack_and_names_the_closest() -> None:
    history = [
        fn(100.0, "pack391_checkRateLimit", 4.0),  # exactly budget + slack: within
        fn(101.0, "pack391_manualScale", 100.0),
        fn(102.0, None, 60.0),
    ]
    verdict = cc.within_budget(history, BUDGETS, slack_sec=1.0)
    assert verdict.held, verdict
    assert verdict.detail == "2 calls; the closest, pack391_checkRateLimit, took 4.00s of 3s"
    assert cc.ANSWER_SLACK_SEC == 1.0  # the slack the runner holds every call to
    assert cc.within_budget([fn(1.0, None, 60.0)], BUDGETS).detail == (
        "no call of a function with a budget"
    )


def test_longest_answers_per_function_over_the_scenario_and_during_the_fault() -> None:
    history = [
        fn(99.0, "pack391_checkRateLimit", 2.5),  # before the fault: the longest overall
        fn(100.5, "pack391_checkRateLimit", 0.25),
        fn(104.0, "pack391_checkRateLimit", 1.5),  # the longest started during it
        fn(111.0, "pack391_scaleGuard", 0.75),  # after: none during
        fn(102.0, None, 9.0),  # not a function: left out
        fn(103.0, "pack391_unknownFunction", 0.5),
    ]
    answers = cc.longest_answers(history, W, BUDGETS)
    assert answers == {
        "pack391_checkRateLimit": {"budgetSec": 3.0, "calls": 3, "maxMs": 2500.0,
                                   "maxMsDuring": 1500.0},
        "pack391_scaleGuard": {"budgetSec": 205.0, "calls": 1, "maxMs": 750.0,
                               "maxMsDuring": None},
        "pack391_unknownFunction": {"budgetSec": None, "calls": 1, "maxMs": 500.0,
                                    "maxMsDuring": 500.0},
    }  # fmt: skip
    assert cc.longest_during(answers) == ("pack391_checkRateLimit", 1500.0)
    after_only = cc.longest_answers([fn(111.0, "pack391_scaleGuard", 1)], W, {})
    assert cc.longest_during(after_only) is None


@pytest.mark.parametrize(
    ("body", "parsed"),
    [
        (
            {"error": {"status": "UNAVAILABLE", "details": {"reason": "x", "retryAfterSec": 2}}},
            ("UNAVAILABLE", "x", 2, {}),
        ),
        ({"error": {"status": "INTERNAL"}}, ("INTERNAL", None, None, {})),
        ({"result": {"allowed": True, "reason": "ok", "other": 1}}, (None, "ok", None,
                                                                     {"allowed": True})),
        ("<html>", (None, None, None, {})),
        (None, (None, None, None, {})),
    ],
)  # fmt: skip
def test_callable_answers_are_read_into_the_calls_fields(
    body: Any, parsed: tuple[Any, ...]
) -> None:
    assert cc.callable_answer(body, ("allowed",)) == parsed
