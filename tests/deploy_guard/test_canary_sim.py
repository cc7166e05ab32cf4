"""The canary benchmark's targets, checked on every test run (a few seconds): the figures
in docs/benchmarks.md come from the same code."""

from __future__ import annotations

import pytest

from bench.canary_sim import Figures, run


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Figures]]:
    return run()


def test_false_rollbacks_over_1000_healthy_runs_are_at_most_1_pct(
    results: dict[str, dict[str, Figures]],
) -> None:
    ours = results["pack391"]["healthy"]
    assert ours.runs == 1000
    assert ours.rollback_pct <= 1.0
    assert ours.promoted >= 990
    # the literal rule rolls back healthy canaries on sparse business noise
    assert results["literal"]["healthy"].rollback_pct > 10.0


@pytest.mark.parametrize("scenario", ["error_spike_at_25", "latency_creep"])
def test_injected_anomalies_roll_back_within_60_s_of_showing(
    results: dict[str, dict[str, Figures]], scenario: str
) -> None:
    f = results["pack391"][scenario]
    assert f.rolled_back == f.runs
    assert f.detection_sec_max is not None and f.detection_sec_max <= 60


def test_no_bad_canary_is_ever_promoted(results: dict[str, dict[str, Figures]]) -> None:
    for scenario in ("error_spike_at_25", "latency_creep", "low_traffic_bad"):
        assert results["pack391"][scenario].promoted == 0, scenario


def test_too_little_traffic_pauses_instead_of_promoting(
    results: dict[str, dict[str, Figures]],
) -> None:
    f = results["pack391"]["low_traffic"]
    assert (f.paused, f.promoted, f.rolled_back) == (f.runs, 0, 0)
