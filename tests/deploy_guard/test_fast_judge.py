"""The fast judge: while a canary is live it is checked every 10 s for a
conclusive breach, so a bad canary is rolled back within the spec's minute whatever the
phase of the minute monitor. The worst case is computed from the deadlines and tested
with the phase at its worst: bad traffic starting just after a tick."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from functions.deploy_guard.local import LocalJudgeChain, LocalTraffic, PushedRevisionMetrics
from functions.deploy_guard.policy.judge import fast_breaches
from functions.deploy_guard.policy.phases import (
    holds_environment,
    next_tick,
    worst_case_rollback_sec,
)
from functions.deploy_guard.ports import DeployPorts, JudgeChain
from functions.deploy_guard.readers import BusinessMetrics, GateReader
from functions.deploy_guard.service import DeployGuard
from functions.deploy_guard.store import DeployStore
from functions.scaling.api import PushedMetricsStore
from shared import thresholds as t
from shared.audit import Change
from shared.firestore import get_db
from shared.models.deploy import MetricCheck, PinTrafficRequest, StartRequest, Verdict
from shared.redis import get_redis
from stack.constants import CANARY_ROLLBACK_WORST_CASE_SEC, CANARY_TASK_DELAY_SEC
from tests.conftest import ROOT, Backends

SERVICE, OLD, NEW = "api", "api-00001", "api-00002"


@pytest.mark.parametrize(
    ("now", "tick"),
    [
        ("2026-12-07T12:00:00.000", "2026-12-07T12:00:10"),
        ("2026-12-07T12:00:00.001", "2026-12-07T12:00:10"),
        ("2026-12-07T12:00:09.999", "2026-12-07T12:00:10"),
        ("2026-12-07T12:00:55.000", "2026-12-07T12:01:00"),
    ],
)
def test_ticks_fall_on_one_grid(now: str, tick: str) -> None:
    """Every enqueuer of a tick computes the same time (so the same task name)."""
    at = datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert next_tick(at) == datetime.fromisoformat(tick).replace(tzinfo=UTC)


def test_the_worst_case_fits_the_spec_minute() -> None:
    worst = worst_case_rollback_sec(
        t.CANARY_FAST_CHECK_INTERVAL_SEC,
        CANARY_TASK_DELAY_SEC,
        t.CANARY_FAST_CHECK_BUDGET_SEC,
        t.DEPLOY_TRAFFIC_TIMEOUT_SEC,
    )
    assert worst == CANARY_ROLLBACK_WORST_CASE_SEC == 50.0
    assert worst <= 60
    # the minute monitor alone: a breach just after a run waits a minute, then the judge
    # and the write: the reason for the chain
    assert worst_case_rollback_sec(60, 0, 0, t.DEPLOY_TRAFFIC_TIMEOUT_SEC) > 60


@pytest.mark.parametrize(
    ("verdicts", "acted_on"),
    [
        ({"error_rate": "breach"}, ["error_rate"]),
        ({"token_mismatch_rate": "breach", "p95_latency_ms": "breach"}, ["token_mismatch_rate"]),
        # a partial window's p95 is not comparable: the minute monitor judges latency
        ({"p95_latency_ms": "breach"}, []),
        # failures count against the limit in the minute monitor only
        ({"error_rate": "fail", "payout_anomaly_rate": "inconclusive"}, []),
        ({"auth_failure_rate": "breach", "payout_anomaly_rate": "breach"},
         ["auth_failure_rate", "payout_anomaly_rate"]),
    ],
)  # fmt: skip
def test_the_fast_judge_acts_on_rate_breaches_only(
    verdicts: dict[str, str], acted_on: list[str]
) -> None:
    checks = [
        MetricCheck(metric=m, verdict=Verdict(v), canary=1.0, stable=1.0, threshold=1.0)
        for m, v in verdicts.items()
    ]
    assert fast_breaches(checks) == acted_on


def guard(chain: JudgeChain | None) -> DeployGuard:
    db = get_db()
    return DeployGuard(
        DeployPorts(
            store=DeployStore(db),
            splitter=LocalTraffic(get_redis()),
            metrics=PushedRevisionMetrics(PushedMetricsStore(get_redis())),
            business=BusinessMetrics(db),
            gates=GateReader(db, None),
            project="demo-pack391-test",
            region="us-central1",
            default_services=(SERVICE,),
            probe_urls=(),
            index_file=ROOT / "firestore.indexes.json",
            chain=chain,
        )
    )


def start(g: DeployGuard, now: datetime) -> str:
    """pin-traffic, a deploy at 100 % (firebase deploy), start: 5 % on the new revision."""
    platform = LocalTraffic(get_redis())
    platform.deploy(SERVICE, OLD)
    change = Change("admin-1", "test", "fast judge", "r1", now)
    g.pin(PinTrafficRequest.model_validate({"environment": "prod"}), change)
    platform.deploy(SERVICE, NEW)
    started = g.start(
        StartRequest.model_validate(
            {"version": "v2", "environment": "prod", "force": True, "reason": "test"}
        ),
        change,
    )
    assert (started.phase, started.traffic_percent) == ("progressing", 5)
    return started.deployment_id


def push(at: datetime, canary_errors: int) -> None:
    pushed = PushedRevisionMetrics(PushedMetricsStore(get_redis()))
    pushed.record(NEW, 100, canary_errors, 200.0, at)
    pushed.record(OLD, 2000, 2, 200.0, at)


def test_a_breach_is_rolled_back_by_the_next_tick_with_the_phase_at_its_worst(
    backends: Backends,
) -> None:
    """Bad traffic begins 1 ms after a tick judged the canary healthy: the next tick, 10 s
    later, rolls it back; the minute monitor would have waited for the minute's end."""
    g = guard(None)
    t0 = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    dep_id = start(g, t0)
    push(t0 + timedelta(seconds=5), canary_errors=0)
    tick = t0 + timedelta(seconds=20)
    assert (g.tick(dep_id, tick) or pytest.fail("gone")).phase == "progressing"
    bad_from = tick + timedelta(milliseconds=1)
    push(bad_from, canary_errors=40)  # 40 % errors from here on
    tick_after = next_tick(bad_from)
    assert tick_after == tick + timedelta(seconds=t.CANARY_FAST_CHECK_INTERVAL_SEC)
    started = time.monotonic()
    rolled = g.tick(dep_id, tick_after)
    judged_in = time.monotonic() - started
    assert rolled is not None and rolled.phase == "rolled_back"
    assert LocalTraffic(get_redis()).observe(SERVICE, "").shares == {OLD: 100}
    event = next(h for h in rolled.history if h.event == "rollback")
    assert event.detail["fast"] is True and event.detail["checks"] == ["error_rate"]
    assert rolled.analyses[-1].verdict == "breach"  # the alert's evidence
    # from the first bad request to stable at 100 %: one interval plus this judging
    elapsed = (tick_after - bad_from).total_seconds() + judged_in
    assert elapsed <= CANARY_ROLLBACK_WORST_CASE_SEC
    # the minute monitor, run for the same minute afterwards, finds it final: no step
    after = g.step(dep_id, t0 + timedelta(minutes=1))
    assert after is not None and after.phase == "rolled_back"


def test_a_healthy_canary_is_never_stepped_by_a_tick(backends: Backends) -> None:
    g = guard(None)
    t0 = datetime(2026, 12, 7, 13, 0, 0, tzinfo=UTC)
    dep_id = start(g, t0)
    for k in range(1, 6):
        push(t0 + timedelta(seconds=10 * k - 5), canary_errors=0)
        dep = g.tick(dep_id, t0 + timedelta(seconds=10 * k))
        assert dep is not None and (dep.phase, dep.traffic_percent) == ("progressing", 5)
    stored = g.p.store.get(dep_id)
    assert stored is not None and stored.analyses == []  # recorded by the minute monitor


def test_the_local_chain_runs_every_ten_seconds_and_ends_with_the_deployment(
    backends: Backends,
) -> None:
    """Real timers: started, the chain's next link is at the next 10 s mark; bad traffic
    makes a link roll the canary back; the link after that (scheduled before the judging,
    so a crash cannot end the chain early) finds it final and schedules none."""
    links: list[datetime] = []
    g: DeployGuard

    def run(deployment_id: str, at: datetime) -> None:
        links.append(at)
        g.tick(deployment_id, at)

    chain = LocalJudgeChain(run)
    g = guard(chain)
    now = datetime.now(UTC)
    dep_id = start(g, now)
    push(datetime.now(UTC), canary_errors=40)
    deadline = time.monotonic() + 2 * t.CANARY_FAST_CHECK_INTERVAL_SEC + 5
    while time.monotonic() < deadline:
        dep = g.p.store.get(dep_id)
        # rolled back, and confirmed on the platform (the same link's next transaction):
        # reading between the two would see a rollback that still holds its environment
        if dep is not None and dep.phase == "rolled_back" and dep.confirmed_at is not None:
            break
        time.sleep(0.2)
    dep = g.p.store.get(dep_id)
    assert dep is not None and dep.phase == "rolled_back", links
    assert (dep.ended_at or now) - now <= timedelta(seconds=CANARY_ROLLBACK_WORST_CASE_SEC)
    assert all(at.timestamp() % t.CANARY_FAST_CHECK_INTERVAL_SEC == 0 for at in links)
    assert not holds_environment(dep)
    rolled_at = len(links)
    deadline = time.monotonic() + t.CANARY_FAST_CHECK_INTERVAL_SEC + 5
    while chain._pending and time.monotonic() < deadline:
        time.sleep(0.2)
    assert chain._pending == set()
    assert len(links) == rolled_at + 1  # one last link, which found the deployment final
