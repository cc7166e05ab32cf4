"""Scenarios, shapes, schedules and safety policy: pure, literal tables."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from functions.load.policy import Admission, admit_run, cap_problem, target_problem
from functions.load.scenarios import (
    MIXES,
    Plan,
    Shape,
    arrival_offsets,
    build_plan,
    expected_requests,
    pick_endpoint,
    rate_share,
)


@pytest.mark.parametrize(
    ("shape", "offset", "share"),
    [
        (Shape.CONSTANT, 0.0, 1.0),
        (Shape.CONSTANT, 99.9, 1.0),
        (Shape.CONSTANT, 100.0, 0.0),
        (Shape.RAMP, 5.0, 0.5),
        (Shape.RAMP, 50.0, 1.0),
        (Shape.RAMP, 95.0, 0.5),
        (Shape.STEP, 10.0, 0.25),
        (Shape.STEP, 30.0, 0.5),
        (Shape.STEP, 60.0, 0.75),
        (Shape.STEP, 99.0, 1.0),
        (Shape.SPIKE, 10.0, 0.2),
        (Shape.SPIKE, 45.0, 1.0),
        (Shape.SPIKE, 70.0, 0.2),
    ],
)
def test_rate_share(shape: Shape, offset: float, share: float) -> None:
    assert rate_share(shape, offset, 100.0) == pytest.approx(share)


def test_constant_schedule_is_exact() -> None:
    offsets = [o for _, o in arrival_offsets(Shape.CONSTANT, 100.0, 2.0)]
    assert len(offsets) == 200
    assert offsets[:3] == pytest.approx([0.0, 0.01, 0.02])
    assert offsets[-1] == pytest.approx(1.99)


@pytest.mark.parametrize("shape", [s for s in Shape if s is not Shape.RECORDED])
def test_shards_split_the_schedule_exactly(shape: Shape) -> None:
    whole = list(arrival_offsets(shape, 333.0, 3.0))
    parts = [list(arrival_offsets(shape, 333.0, 3.0, shard, 3)) for shard in range(3)]
    assert sorted(x for part in parts for x in part) == whole
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert expected_requests(shape, 333.0, 3.0) == len(whole)


def test_spike_schedules_more_in_the_spike() -> None:
    per_sec = Counter(int(o) for _, o in arrival_offsets(Shape.SPIKE, 100.0, 10.0))
    assert per_sec[5] == 100
    assert per_sec[1] == 20


@pytest.mark.parametrize("scenario", sorted(MIXES))
def test_mix_shares_hold_in_every_window(scenario: str) -> None:
    mix = MIXES[scenario]
    picks = Counter(pick_endpoint(mix, i) for i in range(1000))
    for name, share in mix:
        assert picks[name] == pytest.approx(1000 * share, abs=10)


def test_plan_defaults_and_overrides_round_trip() -> None:
    plan = build_plan("swipe_load", "http://127.0.0.1:1/")
    assert (plan.rps, plan.duration_sec, plan.shards, plan.shape) == (1666.0, 300, 2, Shape.RAMP)
    assert plan.target == "http://127.0.0.1:1"
    custom = build_plan(
        "live_calls", "http://x", rps=5, duration_sec=3, shards=4, thresholds={"p95_ms": 50.0}
    )
    assert (custom.rps, custom.duration_sec, custom.shards) == (5, 3, 4)
    assert custom.thresholds.p95_ms == 50.0 and custom.thresholds.p99_ms == 800.0
    assert Plan.from_json(custom.to_json()) == custom


@pytest.mark.parametrize(
    ("target", "allowlist", "local", "allowed"),
    [
        ("http://127.0.0.1:5002", [], True, True),
        ("http://localhost:5002", [], True, True),
        ("http://[::1]:5002", [], True, True),
        ("http://127.0.0.1:5002", [], False, False),
        ("http://10.0.0.5", [], True, False),
        ("https://staging.example.com", ["staging.example.com"], False, True),
        ("https://api.staging.example.com", [".staging.example.com"], False, True),
        ("https://evil-staging.example.com", [".staging.example.com"], False, False),
        ("https://example.com", ["staging.example.com"], False, False),
        ("ftp://127.0.0.1", [], True, False),
        ("http://u:p@127.0.0.1", [], True, False),
    ],
)
def test_target_allowlist(target: str, allowlist: list[str], local: bool, allowed: bool) -> None:
    assert (target_problem(target, allowlist, local) is None) is allowed


@pytest.mark.parametrize(
    ("new", "running", "allowed"),
    [(100.0, [], True), (5000.0, [], True), (5001.0, [], False), (3000.0, [2500.0], False)],
)
def test_global_rps_cap(new: float, running: list[float], allowed: bool) -> None:
    assert (cap_problem(new, running, 5000.0) is None) is allowed


T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _ledger(*entries: tuple[str, float, int]) -> dict[str, Admission]:
    return {r: Admission(r, rps, T0 + timedelta(seconds=s)) for r, rps, s in entries}


@pytest.mark.parametrize(
    ("ledger", "new_rps", "admitted", "held", "reaped"),
    [
        (_ledger(), 5000.0, True, ["new"], []),
        (_ledger(("a", 3000.0, 60)), 2000.0, True, ["a", "new"], []),
        (_ledger(("a", 3000.0, 60)), 2500.0, False, ["a"], []),
        # a run past its deadline holds nothing: reaped, its share released
        (_ledger(("dead", 4000.0, -1)), 2500.0, True, ["new"], ["dead"]),
        (_ledger(("dead", 4000.0, 0), ("a", 3000.0, 60)), 2500.0, False, ["a"], ["dead"]),
    ],
)
def test_admission_ledger(
    ledger: dict[str, Admission],
    new_rps: float,
    admitted: bool,
    held: list[str],
    reaped: list[str],
) -> None:
    verdict = admit_run(ledger, Admission("new", new_rps, T0 + timedelta(minutes=5)), T0, 5000.0)
    assert (verdict.admitted, sorted(verdict.held), list(verdict.reaped)) == (
        admitted,
        held,
        reaped,
    )
    assert (verdict.problem is None) is admitted
