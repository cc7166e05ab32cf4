"""``make bench-stack`` in small: its rate search (a pure function) and one short step
against the real sandbox, with CPU sampled and shed counted apart from errors."""

from __future__ import annotations

import pytest

from bench.stack import best_rate, next_rate
from bench.stack_measures import commit_delta, cpu_table

COARSE = (200.0, 400.0, 600.0, 800.0)


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], 200.0),
        ([(200.0, True)], 400.0),
        ([(200.0, True), (400.0, True), (600.0, True), (800.0, True)], None),  # all held
        ([(200.0, True), (400.0, False)], 300.0),
        ([(200.0, True), (400.0, False), (300.0, True)], 350.0),
        ([(200.0, True), (400.0, False), (300.0, True), (350.0, False)], None),  # within 50
        ([(200.0, False)], 100.0),
        ([(200.0, False), (100.0, False), (50.0, False)], None),
        ([(200.0, True), (400.0, False), (300.0, False), (250.0, True)], None),
    ],
)
def test_next_rate_table(history: list[tuple[float, bool]], expected: float | None) -> None:
    assert next_rate(history, COARSE, min_gap=50.0, max_steps=11) == expected


def test_the_search_stops_at_its_step_budget() -> None:
    history = [(200.0, True), (400.0, False)]
    assert next_rate(history, COARSE, min_gap=1.0, max_steps=2) is None


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([(200.0, True), (400.0, False), (300.0, True)], 300.0),
        ([(200.0, True), (400.0, False), (600.0, True)], 200.0),  # a pass above a failure
        ([(200.0, False)], None),
    ],
)
def test_best_rate(history: list[tuple[float, bool]], expected: float | None) -> None:
    assert best_rate(history) == expected


def test_cpu_table() -> None:
    table = cpu_table({"a": 1.0, "b": 5.0}, {"a": 4.0, "b": 6.0, "new": 9.0}, wall_sec=10.0)
    assert table == {
        "a": {"cpuSec": 3.0, "pctOfCore": 30.0, "sharePct": 75.0},
        "b": {"cpuSec": 1.0, "pctOfCore": 10.0, "sharePct": 25.0},
    }


def test_commit_delta() -> None:
    before = {"groupCommit": True, "writes": 10, "commits": 8, "failedCommits": 1}
    after = {"groupCommit": True, "writes": 110, "commits": 48, "failedCommits": 1}
    assert commit_delta(before, after) == {
        "on": True, "writes": 100, "commits": 40, "failedCommits": 0, "writesPerCommit": 2.5
    }  # fmt: skip
    idle = {"groupCommit": False, "writes": 0, "commits": 0, "failedCommits": 0}
    assert commit_delta(idle, idle) == {
        "on": False, "writes": 0, "commits": 0, "failedCommits": 0, "writesPerCommit": None
    }  # fmt: skip
    assert commit_delta(None, after) is None
