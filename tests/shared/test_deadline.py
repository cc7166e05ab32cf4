"""The per-call budget (shared.deadline): nesting, the deadline each dependency call gets,
a spent budget, and the budget following a call into a thread pool."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import deadline
from shared.errors import DependencyUnavailable, ErrorCode


def test_without_a_budget_a_call_keeps_its_own_bound() -> None:
    assert deadline.current() is None
    assert deadline.remaining() is None
    assert not deadline.spent()
    assert deadline.timeout_for("firestore", 7.0) == 7.0
    assert deadline.timeout_for("firestore") is None


@pytest.mark.parametrize(
    ("outer", "inner", "longest"),
    [
        (10.0, 2.0, 2.0),  # a step gets less than its call
        (2.0, 10.0, 2.0),  # and never more than its call has left
        (5.0, 5.0, 5.0),
    ],
)
def test_a_nested_budget_never_extends_the_one_it_is_in(
    outer: float, inner: float, longest: float
) -> None:
    with deadline.budget(outer, "call"), deadline.budget(inner, "step"):
        left = deadline.remaining()
        assert left is not None and longest - 0.1 < left <= longest


def test_a_dependency_call_gets_what_is_left_at_most_its_own_bound() -> None:
    with deadline.budget(2.0, "call") as mine:
        small = deadline.timeout_for("cloud-run", 0.5)
        large = deadline.timeout_for("firestore", 60.0)
        assert small == 0.5
        assert large is not None and 1.9 < large <= 2.0
        assert mine.waited_on == ["cloud-run", "firestore"]


def test_a_spent_budget_makes_no_call_and_names_the_dependency() -> None:
    with deadline.budget(0.05, "pack391_getDashboard") as mine:
        time.sleep(0.06)
        assert deadline.spent()
        with pytest.raises(DependencyUnavailable) as refused:
            deadline.timeout_for("monitoring", 10.0)
    error = refused.value
    assert error.code is ErrorCode.UNAVAILABLE
    assert error.details["dependency"] == "monitoring"
    assert error.details["budgetSec"] == 0.05
    assert error.details["retryAfterSec"] > 0
    assert "monitoring did not answer within the call's 0.05 s budget" in error.message
    assert mine.waited_on == ["monitoring"]


def test_a_retry_pause_that_would_outlast_the_budget_is_not_taken() -> None:
    with deadline.budget(0.2, "call"):
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable):
            deadline.sleep_within(5.0, "firestore")
        assert time.monotonic() - started < 0.1  # refused at once, not slept
        deadline.sleep_within(0.01, "firestore")  # a short one is taken


def _remaining_of(_: int) -> float | None:
    return deadline.remaining()


def test_the_budget_follows_the_call_into_a_thread_pool_only_when_bound() -> None:
    with deadline.budget(3.0, "call"), ThreadPoolExecutor(max_workers=4) as pool:
        bare = pool.submit(deadline.remaining).result()
        bound = [f.result() for f in [pool.submit(deadline.in_context(deadline.remaining))] * 4]
        concurrently = list(pool.map(deadline.in_context(_remaining_of), range(8)))
    assert bare is None  # a pool's thread does not inherit the context by itself
    assert all(left is not None and 2.5 < left <= 3.0 for left in bound + concurrently)


def test_the_dependencies_a_step_waited_on_are_the_calls_too() -> None:
    with deadline.budget(5.0, "call") as call:
        with deadline.budget(1.0, "step"):
            deadline.timeout_for("storage", 1.0)
        assert deadline.blamed() == "storage"
    assert call.waited_on == ["storage"]
