"""A judge that sees the platform, end to end: the real monitor and fast judge (wired as
deployed, ``deploy_guard()``) on the Firestore emulator and redis-server, the platform's
records written where the bundle writes them (DDoS mode in Redis as the detector sets
it, a detection in ``pack391_ddos_detections``, a scale decision, the edge's stall
marks).

(a) A clean canary during a DDoS mitigation (both revisions degraded the same) is
paused, not rolled back, and promoted once the mitigation ends; (b) a bad canary during
the same mitigation is rolled back, by the minute monitor and by the fast judge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.ddos.redis_store import TrafficStore
from functions.deploy_guard.signals import PlatformReader
from functions.deploy_guard.wiring import deploy_guard
from shared import collections
from shared import thresholds as t
from shared.clock import ms
from shared.edge_budget import record_skipped, stalls_of
from shared.edge_errors import to_https_error
from shared.errors import DependencyUnavailable
from shared.firestore import get_db
from shared.models.alerts import Severity
from shared.models.ddos import DetectionDoc, DetectionKind
from shared.models.scaling import DecisionDoc, ScaleAction
from shared.redis import get_redis
from tests.conftest import Backends, Caller
from tests.deploy_guard.test_deploy_functions import (
    NEW,
    OLD,
    SERVICE,
    healthy_minute,
    landed,
    next_minute,
    platform,
    push,
    start,
    status,
)

__all__ = ["landed"]  # a fixture: see its module


def attack(minute: datetime) -> None:
    """The detector's record of a mitigated attack in ``minute``, and DDoS mode on from
    then (what ``functions.ddos.detector`` writes: the mode's ``until`` is its latest
    extension plus ``DDOS_MODE_DURATION_SEC``)."""
    until = ms(minute) + t.DDOS_MODE_DURATION_SEC * 1000
    TrafficStore(get_redis()).extend_ddos_mode(
        until, "distributed_attack", datetime.now(UTC), {"detections": ["distributed_attack"]}
    )
    doc = DetectionDoc(
        minute=minute,
        kind=DetectionKind.DISTRIBUTED_ATTACK,
        severity=Severity.CRITICAL,
        evidence={"rps": 9000},
        mitigated=True,
        detected_at=minute + timedelta(seconds=40),
    )
    minute_id = int(minute.timestamp()) // 60
    get_db().document(f"{collections.DDOS_DETECTIONS}/{minute_id}_distributed_attack").set(
        doc.to_doc()
    )


def degraded_minute(minute: datetime, canary_errors: int = 30) -> None:
    """Both revisions shedding 15 % (the canary ``canary_errors`` of its 200)."""
    push(minute, NEW, 200, canary_errors, 260.0)
    push(minute, OLD, 2000, 300, 250.0)


def test_a_clean_canary_during_a_mitigation_is_paused_then_promoted(landed: Caller) -> None:
    guard = deploy_guard()
    dep_id = start(landed)["deploymentId"]
    t0 = next_minute()
    attack(t0)
    degraded_minute(t0)
    # the fast judge, within the minute: no rollback for a breach stable shares
    ticked = guard.fast_check(dep_id, t0 + timedelta(seconds=50))
    assert ticked is not None and ticked.phase == "progressing"

    after = guard.step(dep_id, t0 + timedelta(minutes=1))
    assert after is not None and (after.phase, after.traffic_percent) == ("paused", 5)
    assert platform().observe(SERVICE, "").shares == {OLD: 95, NEW: 5}  # not rolled back
    assert after.platform_hold is not None
    assert after.platform_hold.checks == ["error_rate"]
    paused = after.history[-1]
    assert (paused.event, paused.detail["why"]) == ("paused", "the platform explains the breach")
    assert paused.detail["minutes"] == [t0.isoformat()]
    kinds = {s["kind"] for s in paused.detail["platform"]}
    assert kinds == {"ddos_mode", "ddos_detection"}
    assert after.analyses[-1].verdict == "explained"
    assert after.analyses[-1].platform is not None and after.analyses[-1].platform.active

    # the mitigation goes on a minute more: still paused, that minute recorded
    degraded_minute(t0 + timedelta(minutes=1))
    after = guard.step(dep_id, t0 + timedelta(minutes=2))
    assert after is not None and after.phase == "paused"
    assert after.platform_hold is not None
    assert after.platform_hold.minutes == [t0, t0 + timedelta(minutes=1)]

    # the mitigation ends: resumed, then judged as any canary and promoted
    assert TrafficStore(get_redis()).end_ddos_mode()
    healthy_minute(t0 + timedelta(minutes=2))
    after = guard.step(dep_id, t0 + timedelta(minutes=3))
    assert after is not None and (after.phase, after.traffic_percent) == ("progressing", 5)
    assert after.history[-1].event == "resumed"
    assert after.history[-1].detail["heldMinutes"] == [
        t0.isoformat(),
        (t0 + timedelta(minutes=1)).isoformat(),
    ]
    for k in (3, 4):
        healthy_minute(t0 + timedelta(minutes=k))
        guard.step(dep_id, t0 + timedelta(minutes=k + 1))
    push(t0 + timedelta(minutes=5), NEW, 2000, 5, 204.0)  # stable serves nothing now
    after = guard.step(dep_id, t0 + timedelta(minutes=6))
    assert after is not None and after.phase == "succeeded"
    assert platform().observe(SERVICE, "").shares == {NEW: 100}
    shown = status(landed, dep_id)
    assert shown["platformHold"] is None
    events = [h["event"] for h in shown["history"]]
    assert events == [
        "created", "validated", "step", "paused", "resumed", "step", "step", "succeeded",
    ]  # fmt: skip
    assert "rollback" not in events


@pytest.mark.parametrize("judge", ["minute", "fast"])
def test_a_bad_canary_during_the_same_mitigation_is_rolled_back(landed: Caller, judge: str) -> None:
    guard = deploy_guard()
    dep_id = start(landed)["deploymentId"]
    t0 = next_minute()
    attack(t0)
    degraded_minute(t0, canary_errors=120)  # 60 % against stable's 15 %
    if judge == "fast":
        after = guard.fast_check(dep_id, t0 + timedelta(seconds=50))
    else:
        after = guard.step(dep_id, t0 + timedelta(minutes=1))
    assert after is not None and after.phase == "rolled_back"
    assert platform().observe(SERVICE, "").shares == {OLD: 100}
    check = next(c for c in after.analyses[-1].checks if c.metric == "error_rate")
    assert check.verdict == "breach" and "over stable 15.00% + 5" in check.detail
    rollback = next(h for h in after.history if h.event == "rollback")
    if judge == "minute":  # the minute monitor's evidence names the platform it saw
        assert {s["kind"] for s in rollback.detail["platform"]} == {"ddos_mode", "ddos_detection"}
    else:
        assert rollback.detail["fast"] is True


def test_a_bad_canary_paused_for_the_platform_is_still_rolled_back(landed: Caller) -> None:
    guard = deploy_guard()
    dep_id = start(landed)["deploymentId"]
    t0 = next_minute()
    attack(t0)
    degraded_minute(t0)
    after = guard.step(dep_id, t0 + timedelta(minutes=1))
    assert after is not None and after.phase == "paused"
    degraded_minute(t0 + timedelta(minutes=1), canary_errors=120)
    # the fast judge watches a paused canary too
    after = guard.fast_check(dep_id, t0 + timedelta(minutes=1, seconds=40))
    assert after is not None and after.phase == "rolled_back"
    assert after.platform_hold is None


def test_the_reader_sees_scale_decisions_and_stall_marks(backends: Backends) -> None:
    """The production adapter over what the bundle records, and the edge's stall marks:
    a callable's ``UNAVAILABLE`` (``to_https_error``) and a skipped scheduled run
    (``record_skipped``) each count in their minute; Redis's own stall does not."""
    t0 = datetime.now(UTC).replace(second=0, microsecond=0)
    reader = PlatformReader(get_db(), get_redis())
    assert reader.context(t0 - timedelta(minutes=1), t0).signals == []
    decision = DecisionDoc(
        service_id="api-gateway",
        at=t0 - timedelta(seconds=30),
        source="guard",
        dry_run=False,
        current_instances=2,
        desired_instances=8,
        action=ScaleAction.SCALE_UP,
        reasons=["cpu"],
        acted=True,
        run_id="r1",
    )
    get_db().collection(collections.SCALING_DECISIONS).document("d1").set(decision.to_doc())
    error = to_https_error(DependencyUnavailable("firestore", 3.0), "req-1")
    assert error.code.value == "unavailable"
    to_https_error(DependencyUnavailable("redis", 3.0), "req-2")
    record_skipped("pack391_scaleGuard", "firestore", "run-1", "stalled", datetime.now(UTC))
    now_minute = datetime.now(UTC).replace(second=0, microsecond=0)
    marks = stalls_of(get_redis(), [now_minute - timedelta(minutes=1), now_minute])
    assert sum(m.get("firestore", 0) for m in marks.values()) == 2  # a minute may turn
    assert all(set(m) == {"firestore"} for m in marks.values())
    for minute in marks:
        ttl = get_redis().ttl(f"pack391:{{stalls}}:{int(minute.timestamp()) // 60}")
        assert 0 < ttl <= t.DEPENDENCY_STALL_MARK_TTL_SEC
    seen = reader.context(t0 - timedelta(minutes=1), now_minute + timedelta(minutes=1))
    assert {s.kind.value for s in seen.signals} == {"scale", "dependency_stall"}
    stall = next(s for s in seen.signals if s.kind.value == "dependency_stall")
    assert stall.detail.startswith("did not answer within budget: firestore")
