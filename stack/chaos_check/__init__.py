"""Invariant checkers over a recorded chaos history: pure functions, no I/O.

A history is the list of every request a chaos run made (:class:`Call`), with the
fault's window (:class:`Window`: when it was applied, undone, and when the stack was
seen healthy again). Each checker returns a :class:`Verdict`: held or broken, with the
FIRST counterexample (the earliest offending request, or the offending record) and a
short measurement. The runner (``stack/chaos/runner.py``) reads Firestore and Redis after
recovery and passes what it read in as plain data, so every checker is table-tested
(``tests/stack/test_chaos_check.py``).

By kind: the history and its verdicts (:mod:`.history`), the rate-limit checkers
(:mod:`.rate_limits`), the market's admissions (:mod:`.admissions`), the scheduled jobs
and their records (:mod:`.records`), each call's answer time against its function's
budget (:mod:`.answer_times`).
"""

from __future__ import annotations

from stack.chaos_check.admissions import (
    admissions,
    told_admitted,
)
from stack.chaos_check.answer_times import (
    ANSWER_SLACK_SEC,
    Violation,
    budget_violations,
    longest_answers,
    longest_during,
    within_budget,
)
from stack.chaos_check.history import (
    ADMITTED_REASONS,
    FAIL_CLOSED,
    FAIL_OPEN,
    REDIS_FAULTS,
    REDIS_UNAVAILABLE,
    REFUSED_REASONS,
    Call,
    Verdict,
    Window,
    callable_answer,
    is_degraded,
    is_normal_decision,
    outcome,
    outcomes,
)
from stack.chaos_check.rate_limits import (
    answered,
    degraded_seen,
    latency_budget,
    no_internal,
    percentile,
    rate_limit_modes,
    recovered_within,
    recovery_time,
    signup_errors_unavailable,
    stayed_normal,
)
from stack.chaos_check.records import (
    FINAL_PHASES,
    deploy_monitor_consistent,
    jobs_failed_or_complete,
    live_metrics_consistent,
    scale_guard_consistent,
)

__all__ = [
    "ADMITTED_REASONS",
    "ANSWER_SLACK_SEC",
    "FAIL_CLOSED",
    "FAIL_OPEN",
    "FINAL_PHASES",
    "REDIS_FAULTS",
    "REDIS_UNAVAILABLE",
    "REFUSED_REASONS",
    "Call",
    "Verdict",
    "Violation",
    "Window",
    "admissions",
    "answered",
    "budget_violations",
    "callable_answer",
    "degraded_seen",
    "deploy_monitor_consistent",
    "is_degraded",
    "is_normal_decision",
    "jobs_failed_or_complete",
    "latency_budget",
    "live_metrics_consistent",
    "longest_answers",
    "longest_during",
    "no_internal",
    "outcome",
    "outcomes",
    "percentile",
    "rate_limit_modes",
    "recovered_within",
    "recovery_time",
    "scale_guard_consistent",
    "signup_errors_unavailable",
    "stayed_normal",
    "told_admitted",
    "within_budget",
]
