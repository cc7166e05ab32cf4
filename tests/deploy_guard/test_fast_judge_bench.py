"""The fast judge's benchmark (bench/fast_judge.py), short: its targets hold on fewer runs."""

from __future__ import annotations

from bench.fast_judge import run


def test_the_fast_judge_decides_sooner_and_never_on_a_healthy_canary() -> None:
    fifteen = run(seed=7, bad_pct=15.0, runs=120)
    assert fifteen.fast_mean < 0.75 * fifteen.minute_only_mean
    assert fifteen.fast_over_60_pct < fifteen.minute_only_over_60_pct
    assert fifteen.healthy_false_rollbacks_fast_pct == 0.0
    fifty = run(seed=7, bad_pct=50.0, runs=120)
    assert fifty.fast_max <= 60  # a plain bad deploy: inside the spec's minute, every run
    assert fifty.healthy_false_rollbacks_fast_pct == 0.0
