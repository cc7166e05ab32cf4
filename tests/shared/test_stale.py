"""The last-known copy of reads that are safe to answer stale (shared.stale): its pure
parts with literal tables, and the read itself with a clock of the test's own and fetches
that stall the way a Firestore RPC under a budget does (the emulator: tests/market,
tests/ops, tests/scaling)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NoReturn

import pytest

from shared import deadline, stale
from shared.errors import DependencyUnavailable
from shared.stale import Answer, LastKnown, copy_age_sec, fetch_wait_sec, stalled, usable

SLACK_SEC = 0.3
"""What a read may take beyond its wait: thread scheduling on a loaded 2-core machine."""


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self, at: float = 1000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def stall(dependency: str = "firestore") -> Callable[[], NoReturn]:
    """A fetch whose dependency does not answer: it waits out what the budget gives it,
    as a Firestore RPC does, then the budget refuses the next attempt."""

    def fetch() -> NoReturn:
        while True:  # until the budget is spent: then timeout_for raises
            timeout = deadline.timeout_for(dependency, 30.0)
            assert timeout is not None, "a stalled read needs a budget"
            time.sleep(timeout)

    return fetch


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize(
    ("stored_at", "now", "age"),
    [(100.0, 105.0, 5.0), (100.0, 100.0, 0.0), (100.5, 100.0, 0.0)],
)
def test_copy_age(stored_at: float, now: float, age: float) -> None:
    assert copy_age_sec(stored_at, now) == age


@pytest.mark.parametrize(
    ("stored_at", "now", "max_age", "expected"),
    [
        (None, 100.0, 300.0, False),  # no copy
        (100.0, 100.0, 300.0, True),
        (100.0, 400.0, 300.0, True),  # exactly the maximum
        (100.0, 400.5, 300.0, False),  # past it
        (100.0, 100.0, 0.0, False),  # 0: never stale
        (100.0, 100.0, -1.0, False),
        (100.5, 100.0, 300.0, True),  # clocks read in the other order
    ],
)
def test_usable(stored_at: float | None, now: float, max_age: float, expected: bool) -> None:
    assert usable(stored_at, now, max_age) is expected


@pytest.mark.parametrize(
    ("remaining", "wait", "have_copy", "expected"),
    [
        (3.0, 1.0, True, 1.0),  # a copy to fall back on: the short wait
        (0.4, 1.0, True, 0.4),  # less left than the wait: what is left
        (-0.2, 1.0, True, 0.0),  # spent: no wait at all
        (None, 1.0, True, 1.0),  # no budget (a tool): the short wait
        (3.0, 1.0, False, 3.0),  # nothing to fall back on: the call's budget
        (None, 1.0, False, None),  # and no budget: no bound of ours
    ],
)
def test_fetch_wait(
    remaining: float | None, wait: float, have_copy: bool, expected: float | None
) -> None:
    assert fetch_wait_sec(remaining, wait, have_copy) == expected


NOW = 1000.0
"""The monotonic instant :func:`test_stalled` judges at: the table is data, not a clock."""


def _budget(remaining: float, waited_on: list[str]) -> deadline.Budget:
    return deadline.Budget("wait", 1.0, NOW + remaining, waited_on=waited_on)


@pytest.mark.parametrize(
    ("exc", "wait", "expected"),
    [
        (DependencyUnavailable("firestore", 1.0), None, True),
        (DependencyUnavailable("redis", 1.0), None, False),  # another dependency's stall
        (TimeoutError("deadline"), _budget(-0.1, ["firestore"]), True),  # at the deadline
        (TimeoutError("deadline"), _budget(0.1, ["firestore"]), True),  # within the slack
        (TimeoutError("early"), _budget(0.9, ["firestore"]), False),  # not the budget's end
        (TimeoutError("deadline"), _budget(-0.1, []), False),  # never waited on it
        (TimeoutError("deadline"), _budget(-0.1, ["redis"]), False),
        (ValueError("bad document"), None, False),
    ],
)
def test_stalled(exc: Exception, wait: deadline.Budget | None, expected: bool) -> None:
    assert stalled(exc, "firestore", wait, NOW) is expected


def test_answer_marks_name_the_response_fields() -> None:
    assert Answer("v").marks() == {"stale": False, "stale_age_sec": None}
    assert Answer("v", True, 2.5).marks() == {"stale": True, "stale_age_sec": 2.5}


# ------------------------------------------------------------------ the read


def test_fresh_then_stale_then_past_the_maximum() -> None:
    clock = Clock()
    copies: LastKnown[str, str] = LastKnown("test read", wait_sec=0.05, clock=clock)
    with deadline.budget(0.5, "call"):
        assert copies.read("k", lambda: "v1", 60.0) == Answer("v1")
        clock.at += 12.5
        assert copies.read("k", stall(), 60.0) == Answer("v1", stale=True, age_sec=12.5)
        clock.at += 60.0  # 72.5 s old: past the maximum
        with pytest.raises(DependencyUnavailable) as refused:
            copies.read("k", stall(), 60.0)
    assert refused.value.dependency == "firestore"
    assert refused.value.details["budgetSec"] == 0.5  # the call's budget, not the wait's


def test_no_copy_of_that_key_fails_and_waits_the_calls_budget() -> None:
    copies: LastKnown[str, str] = LastKnown("test read", wait_sec=0.05)
    started = time.monotonic()
    with deadline.budget(0.4, "call") as call:
        copies.read("a", lambda: "va", 60.0)
        with pytest.raises(DependencyUnavailable):
            copies.read("b", stall(), 60.0)
    took = time.monotonic() - started
    # nothing to fall back on: the read used the call's budget, not the short wait
    assert 0.35 <= took < 0.4 + SLACK_SEC, took
    assert call.waited_on == ["firestore"]  # the edge blames the right dependency


def test_a_stale_capable_read_waits_only_its_short_wait() -> None:
    copies: LastKnown[str, str] = LastKnown("test read", wait_sec=0.2)
    waits: list[float | None] = []

    def fetch() -> str:
        waits.append(deadline.remaining())
        return "v"

    with deadline.budget(5.0, "call"):
        copies.read("k", fetch, 60.0)  # no copy yet: the call's budget
        copies.read("k", fetch, 60.0)  # a copy: the short wait
        started = time.monotonic()
        answer = copies.read("k", stall(), 60.0)
        took = time.monotonic() - started
        left = deadline.remaining()
    assert left is not None and left > 4.0  # the call keeps the rest of its budget
    assert waits[0] is not None and waits[0] > 4.0
    assert waits[1] is not None and waits[1] <= 0.2
    assert answer.stale and answer.value == "v"
    assert 0.15 <= took < 0.2 + SLACK_SEC, took


def test_other_errors_are_raised_and_keep_the_copy() -> None:
    copies: LastKnown[str, str] = LastKnown("test read", wait_sec=0.05)

    def broken() -> str:
        raise ValueError("a document that does not parse")

    with deadline.budget(3.0, "call"):
        copies.read("k", lambda: "v1", 60.0)
        with pytest.raises(ValueError, match="does not parse"):
            copies.read("k", broken, 60.0)
        assert copies.read("k", stall(), 60.0).value == "v1"


def test_zero_maximum_never_answers_stale() -> None:
    copies: LastKnown[str, str] = LastKnown("test read", wait_sec=0.05)
    with deadline.budget(0.2, "call"):
        copies.read("k", lambda: "v1", 0.0)
        with pytest.raises(DependencyUnavailable):
            copies.read("k", stall(), 0.0)


def test_forget_all_drops_every_copy() -> None:
    copies: LastKnown[str, str] = LastKnown("test read", wait_sec=0.05)
    with deadline.budget(0.2, "call"):
        copies.read("k", lambda: "v1", 60.0)
        stale.forget_all()
        with pytest.raises(DependencyUnavailable):
            copies.read("k", stall(), 60.0)


def test_the_oldest_stored_copy_is_dropped_past_the_maximum_of_keys() -> None:
    copies: LastKnown[str, str] = LastKnown("test read", wait_sec=0.05, max_keys=2)
    with deadline.budget(0.3, "call"):
        copies.read("a", lambda: "va", 60.0)
        copies.read("b", lambda: "vb", 60.0)
        copies.read("a", lambda: "va2", 60.0)  # stored again: now the newest
        copies.read("c", lambda: "vc", 60.0)  # b is dropped
        assert copies.read("a", stall(), 60.0).value == "va2"
        assert copies.read("c", stall(), 60.0).value == "vc"
        with pytest.raises(DependencyUnavailable):
            copies.read("b", stall(), 60.0)


def test_concurrent_reads_keep_their_own_keys() -> None:
    copies: LastKnown[int, int] = LastKnown("test read", wait_sec=0.1)
    answers: dict[int, Answer[int]] = {}
    start = threading.Barrier(8)

    def call(key: int) -> None:
        with deadline.budget(3.0, f"call {key}"):
            copies.read(key, lambda: key * 10, 60.0)
            start.wait()  # every thread stalls at once
            answers[key] = copies.read(key, stall(), 60.0)

    threads = [threading.Thread(target=call, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert {k: (a.value, a.stale) for k, a in answers.items()} == {
        k: (k * 10, True) for k in range(8)
    }
