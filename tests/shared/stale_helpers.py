"""What the stale-answer tests share (tests/market/test_stale_reads.py,
tests/scaling/test_stale_registry.py, tests/ops/test_stale_dashboard.py): a short ops
budget, no copy left by an earlier test, timed calls, and the check of an UNAVAILABLE
answer within the budget."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared import stale
from tests.conftest import Caller, CallResult

BUDGET_SEC = 2.0
"""The ops budget of these tests (``PACK391_BUDGET_OPS_MS``): well above the stale read's
1 s wait (:data:`shared.stale.STALE_READ_WAIT_SEC`) plus the slack, so that a read that
waited its whole budget instead fails the test, and short enough to keep each test within
a few seconds."""

SLACK_SEC = 0.5
"""What an answer may take beyond its budget (or its wait): one retry pause of the client
library and the scheduling of a loaded 2-core machine."""

EARLY_SEC = 0.05
"""The budget's error may come this much before its deadline (shared.firestore_budget
counts a DEADLINE_EXCEEDED that close to it as the budget's)."""


@pytest.fixture
def short_budget(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ops calls get :data:`BUDGET_SEC`, and no copy of an earlier test is left."""
    monkeypatch.setenv("PACK391_BUDGET_OPS_MS", str(int(BUDGET_SEC * 1000)))
    stale.forget_all()
    yield
    stale.forget_all()


def ok(caller: Caller, name: str, data: dict[str, Any], role: str = "admin") -> Any:
    """The result of a call that must succeed."""
    answer = caller.call(name, data, role=role)
    assert answer.status == 200, answer.body
    return answer.result


def timed(
    caller: Caller, name: str, data: dict[str, Any], role: str = "admin"
) -> tuple[CallResult, float]:
    """A call and how long it took to answer (seconds)."""
    started = time.monotonic()
    answer = caller.call(name, data, role=role)
    return answer, time.monotonic() - started


def assert_unavailable(answer: CallResult, took: float) -> None:
    """``UNAVAILABLE`` naming Firestore, with a retry hint, within the budget."""
    assert answer.status == 503, f"HTTP {answer.status} after {took:.2f}s: {answer.body}"
    assert answer.error["status"] == "UNAVAILABLE"
    assert answer.error["details"]["dependency"] == "firestore"
    assert answer.error["details"]["retryAfterSec"] > 0
    assert took < BUDGET_SEC + SLACK_SEC, f"answered after {took:.2f}s"
