"""Market controls answer stale while Firestore stalls: the real emulator, paused
(SIGSTOP) as ``pack391 chaos firestore-pause`` pauses it, called through the callable
protocol (docs/reliability.md, "Stale answers")."""

from __future__ import annotations

import time

import pytest

from shared.stale import STALE_READ_WAIT_SEC
from tests.conftest import Caller, Pauser
from tests.shared.stale_helpers import (
    BUDGET_SEC,
    EARLY_SEC,
    SLACK_SEC,
    assert_unavailable,
    ok,
    short_budget,  # noqa: F401 (the fixture, by name)
    timed,
)

pytestmark = pytest.mark.usefixtures("short_budget")

GET = "pack391_getMarketControls"
UPDATE = "pack391_updateMarketControl"


def test_market_controls_answer_stale_during_a_pause_and_fresh_after(
    caller: Caller, firestore_paused: Pauser
) -> None:
    ok(caller, UPDATE, {"country": "PL", "config": {"launchStatus": "public"}})
    warm_started = time.monotonic()
    warm = ok(caller, GET, {})
    warm_ended = time.monotonic()
    assert (warm["stale"], warm["staleAgeSec"]) == (False, None)
    one = ok(caller, GET, {"country": "PL"})  # another key: its own copy
    with firestore_paused():
        call_started = time.monotonic()
        during, took = timed(caller, GET, {})
        since_warm = time.monotonic() - warm_started
        single, _ = timed(caller, GET, {"country": "PL"})
        never_read, took_unread = timed(caller, GET, {"country": "JP"})  # no copy of JP
    view = during.result
    assert took < STALE_READ_WAIT_SEC + SLACK_SEC, f"answered after {took:.2f}s"
    assert view["stale"] is True
    # the copy was stored during the warm call and answered during this one, after the wait
    assert call_started - warm_ended <= view["staleAgeSec"] <= since_warm
    assert view["staleAgeSec"] >= STALE_READ_WAIT_SEC - EARLY_SEC
    assert {k: v for k, v in view.items() if not k.startswith("stale")} == {
        k: v for k, v in warm.items() if not k.startswith("stale")
    }
    assert single.result["stale"] is True
    assert single.result["markets"] == one["markets"]
    assert_unavailable(never_read, took_unread)

    ok(caller, UPDATE, {"country": "PL", "config": {"launchStatus": "paused"}})
    started = time.monotonic()
    after = ok(caller, GET, {"country": "PL"})
    assert time.monotonic() - started < BUDGET_SEC, "the next call answers normally"
    assert (after["stale"], after["staleAgeSec"]) == (False, None)
    assert after["markets"][0]["launchStatus"] == "paused"  # read now, and kept as the copy


def test_market_controls_without_a_copy_answer_unavailable(
    caller: Caller, firestore_paused: Pauser
) -> None:
    with firestore_paused():
        answer, took = timed(caller, GET, {})
    assert_unavailable(answer, took)
    # nothing to fall back on: the read waited what the call had, not just the short wait
    assert took >= BUDGET_SEC - 0.25, f"answered after {took:.2f}s"


def test_a_copy_past_the_maximum_staleness_is_not_answered(
    caller: Caller, firestore_paused: Pauser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK391_STALE_MAX_SEC", "1")
    ok(caller, GET, {})
    time.sleep(1.1)  # the copy is now older than the 1 s maximum (a monotonic clock)
    with firestore_paused():
        answer, took = timed(caller, GET, {})
    assert_unavailable(answer, took)


def test_zero_maximum_staleness_never_answers_stale(
    caller: Caller, firestore_paused: Pauser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK391_STALE_MAX_SEC", "0")
    ok(caller, GET, {})
    with firestore_paused():
        answer, took = timed(caller, GET, {})
    assert_unavailable(answer, took)
