"""Cloud Run updates issued in parallel, each within its deadline, and function timeouts
that fit the worst case.

Real ``run_v2.ServicesClient(transport="rest")`` against :class:`FakeCloudRun`; "slow"
updates are the fake's own held patches (:meth:`FakeCloudRun.hold_next_patch`), released
by the test after a delay, or never (until the test ends)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from google.cloud import monitoring_v3, run_v2

from functions.scaling import budget
from functions.scaling.api import PushedMetricsStore
from functions.scaling.coordination import RedisIsolationFlags, RedisLocks
from functions.scaling.gcp import CloudMonitoringSource, CloudRunScaler
from functions.scaling.policy import DEFAULT_POLICY
from functions.scaling.ports import ScalingPorts
from functions.scaling.service import ScalingService
from functions.scaling.store import ServiceRegistry
from shared import thresholds as t
from shared.audit import Change
from shared.errors import BackendUnavailable
from shared.firestore import get_db
from shared.gcp.cloudrun import CloudRunServices, in_parallel, services_client
from shared.gcp.monitoring import MonitoringReader, metric_client
from shared.models.scaling import InitScalingRequest, ManualScaleRequest
from tests.conftest import Backends
from tests.fakes.cloud_run import FakeCloudRun, HeldPatch
from tests.fakes.grpc_api import FakeGrpcApi
from tests.fakes.http_api import FakeHttpApi
from tests.scaling.test_scaling_gcp_service import NOW, PROJECT

REGION = "us-central1"
DELAY_SEC = 2.0
"""How long each slow update takes."""


def service_name(service: str) -> str:
    return f"projects/{PROJECT}/locations/{REGION}/services/{service}"


def hold(fake: FakeCloudRun, count: int) -> list[HeldPatch]:
    return [fake.hold_next_patch() for _ in range(count)]


def release_together(holds: list[HeldPatch], delay: float, keep: int = 0) -> threading.Thread:
    """Once every held update has reached Cloud Run (all in flight at once: impossible one
    after the other), wait ``delay`` and answer all but the last ``keep`` of them."""

    def run() -> None:
        for held in holds:
            assert held.arrived.wait(30), "an update never reached Cloud Run"
        time.sleep(delay)
        for held in holds[: len(holds) - keep]:
            held.release.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def all_arrived(holds: list[HeldPatch]) -> bool:
    return all(h.arrived.is_set() for h in holds)


# ------------------------------------------------ the shared helper, for any area


@pytest.fixture
def run_api() -> Iterator[tuple[FakeCloudRun, CloudRunServices]]:
    with FakeHttpApi() as api:
        fake = FakeCloudRun(api)
        yield fake, CloudRunServices(services_client(api.url), PROJECT)


SERVICES = [f"svc-{i}" for i in range(5)]


def test_updates_run_in_parallel_and_take_as_long_as_one(
    run_api: tuple[FakeCloudRun, CloudRunServices],
) -> None:
    """5 updates of 2 s each: all 5 reach Cloud Run before any is answered, and the whole
    takes about one update (one after the other: 10 s or more)."""
    fake, services = run_api
    for sid in SERVICES:
        fake.add_service(service_name(sid), scaling={"manualInstanceCount": 1})
    holds = hold(fake, len(SERVICES))
    releaser = release_together(holds, DELAY_SEC)
    calls = {
        sid: (lambda sid=sid: services.set_manual_instances(sid, REGION, 4, 30.0))
        for sid in SERVICES
    }
    began = time.monotonic()
    answers = in_parallel(calls, deadline_sec=30.0)
    took = time.monotonic() - began
    releaser.join(5)
    assert all_arrived(holds)
    assert took < 0.5 * len(SERVICES) * DELAY_SEC, f"{took:.1f} s: not in parallel"
    for sid, answer in answers.items():
        assert not isinstance(answer, BaseException), answer
        updated, _operation = answer
        assert isinstance(updated, run_v2.Service)
        assert updated.scaling.manual_instance_count == 4, sid
        assert fake.services[service_name(sid)]["scaling"]["manualInstanceCount"] == 4


def test_a_slow_update_times_out_without_losing_the_others(
    run_api: tuple[FakeCloudRun, CloudRunServices],
) -> None:
    """One update never answered: it is a TimeoutError at its own deadline (1.5 s, the
    whole update: request plus operation), the 4 others are answered and kept."""
    fake, services = run_api
    for sid in SERVICES:
        fake.add_service(service_name(sid), scaling={"manualInstanceCount": 1})
    holds = hold(fake, len(SERVICES))
    releaser = release_together(holds, 0.2, keep=1)
    calls = {
        sid: (lambda sid=sid: services.set_manual_instances(sid, REGION, 6, 1.5))
        for sid in SERVICES
    }
    began = time.monotonic()
    try:
        answers = in_parallel(calls, deadline_sec=30.0)
        took = time.monotonic() - began
    finally:
        holds[-1].release.set()  # the fake's thread may finish now
    releaser.join(5)
    stuck = holds[-1].request
    assert stuck is not None
    slow = stuck.path.rsplit("/", 1)[-1]
    assert isinstance(answers[slow], TimeoutError), answers[slow]
    assert took < 10.0, f"{took:.1f} s: the deadline did not hold"
    for sid in set(SERVICES) - {slow}:
        answer = answers[sid]
        assert not isinstance(answer, BaseException), answer
        assert answer[0].scaling.manual_instance_count == 6


def test_in_parallel_stops_waiting_at_its_deadline() -> None:
    """A call past the overall deadline is answered TimeoutError; the others' results and
    errors are kept, each under its key."""
    gate = threading.Event()

    def slow() -> str:
        gate.wait(10)
        return "late"

    def fails() -> str:
        raise ValueError("no")

    began = time.monotonic()
    answers = in_parallel({"a": lambda: "ok", "b": slow, "c": fails}, deadline_sec=0.5)
    gate.set()
    assert time.monotonic() - began < 3
    assert answers["a"] == "ok"
    assert isinstance(answers["b"], TimeoutError)
    assert isinstance(answers["c"], ValueError)
    assert in_parallel({}, 1.0) == {}


# ------------------------------------------------------------- the scale guard


def every_service_hot(request: monitoring_v3.ListTimeSeriesRequest) -> Any:
    """97.5 % CPU for every service (no other metric): each one scales up."""
    if "cpu" not in request.filter:
        return monitoring_v3.ListTimeSeriesResponse()
    point = monitoring_v3.Point(
        interval=monitoring_v3.TimeInterval(end_time=NOW - timedelta(seconds=20)),
        value=monitoring_v3.TypedValue(double_value=0.975),
    )
    return monitoring_v3.ListTimeSeriesResponse(
        time_series=[monitoring_v3.TimeSeries(points=[point])]
    )


class Platform:
    def __init__(self, run: FakeCloudRun, monitoring: FakeGrpcApi, backends: Backends) -> None:
        self.run = run
        self.monitoring = monitoring
        self.backends = backends

    def service(self, operation_timeout_sec: float, **options: Any) -> ScalingService:
        client = redis.Redis.from_url(self.backends.redis_url, decode_responses=True)
        reader = MonitoringReader(
            metric_client(self.monitoring.target), PROJECT, t.MONITORING_READ_TIMEOUT_SEC
        )
        scaler = CloudRunScaler(
            CloudRunServices(services_client(self.run.api.url), PROJECT),
            operation_timeout_sec=operation_timeout_sec,
        )
        ports = ScalingPorts(
            registry=ServiceRegistry(get_db()),
            metrics=CloudMonitoringSource(reader),
            pushed=PushedMetricsStore(client),
            scaler=scaler,
            locks=RedisLocks(client),
            isolation=RedisIsolationFlags(client),
        )
        service = ScalingService(ports, DEFAULT_POLICY, **options)
        change = Change("admin-1", "scaling.init", None, "req-1", NOW)
        service.init(InitScalingRequest(), REGION, "", PROJECT, change)
        return service


@pytest.fixture
def platform(backends: Backends) -> Iterator[Platform]:
    with FakeHttpApi() as api, FakeGrpcApi("google.monitoring.v3.MetricService") as mon:
        run = FakeCloudRun(api)
        mon.on(
            "ListTimeSeries",
            monitoring_v3.ListTimeSeriesRequest,
            monitoring_v3.ListTimeSeriesResponse,
            every_service_hot,
        )
        for sid, (initial, _low, _high) in t.SCALING_SERVICE_INSTANCES.items():
            run.add_service(
                service_name(sid),
                scaling={"scalingMode": "MANUAL", "manualInstanceCount": initial},
            )
        yield Platform(run, mon, backends)


def test_the_guard_updates_every_service_at_once_and_keeps_the_others_when_one_is_slow(
    platform: Platform,
) -> None:
    """The 7 services all scale up: their 7 updates are in Cloud Run at the same time; 6
    are answered after 2 s, one never. The run ends at that one's 4 s deadline (one after
    the other it would have waited 6 x 2 s first), reports it not applied (TimeoutError),
    and records and reports the 6 others as applied."""
    service = platform.service(operation_timeout_sec=2 * DELAY_SEC)
    count = len(t.SCALING_SERVICE_INSTANCES)
    holds = hold(platform.run, count)
    releaser = release_together(holds, DELAY_SEC, keep=1)
    began = time.monotonic()
    try:
        report = service.guard(NOW, "run-1")
        took = time.monotonic() - began
    finally:
        holds[-1].release.set()
    releaser.join(5)
    assert all_arrived(holds), "the updates were not in flight together"
    stuck = holds[-1].request
    assert stuck is not None
    slow = stuck.path.rsplit("/", 1)[-1]
    by_id = {d.service_id: d for d in report.decisions}
    assert set(by_id) == set(t.SCALING_SERVICE_INSTANCES)
    assert took < (count - 1) * DELAY_SEC, f"{took:.1f} s: the updates ran one at a time"
    late = by_id[slow]
    assert late.action.value == "scale_up" and not late.acted
    assert late.platform is not None and "TimeoutError" in late.platform.detail["error"]
    registry = ServiceRegistry(get_db())
    for sid, decision in by_id.items():
        if sid == slow:
            continue
        assert decision.acted and decision.platform is not None, sid
        assert decision.platform.instances == decision.desired_instances
        doc = registry.get(sid)
        assert doc is not None and doc.state.current_instances == decision.desired_instances
        assert doc.state.pending is None


def test_a_manual_scale_answers_unavailable_at_the_update_deadline(platform: Platform) -> None:
    """Cloud Run never answers: the manual scale is UNAVAILABLE at its 1 s deadline, well
    within its function timeout, and its intent is cleared for the next decider."""
    service = platform.service(operation_timeout_sec=1.0)
    held = platform.run.hold_next_patch()
    manual = ManualScaleRequest.model_validate(
        {"serviceId": "api-gateway", "action": "scale_to", "instanceCount": 10}
    )
    began = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable, match="did not take 10"):
            service.manual_scale(manual, Change("admin-1", "scaling.manual", None, "r-2", NOW))
    finally:
        held.release.set()
    assert time.monotonic() - began < 8
    doc = ServiceRegistry(get_db()).get("api-gateway")
    assert doc is not None and doc.state.pending is None and doc.state.current_instances == 3


# ------------------------------------------------------------ the arithmetic


def test_the_function_timeouts_cover_the_worst_case() -> None:
    """Every wait at its deadline still fits each function's timeout, with margin; the spec's
    services are one parallel wave; the guard stops waiting before its timeout."""
    from functions.scaling.edges import pack391_manualScale, pack391_scaleGuard

    guard_timeout = pack391_scaleGuard.__firebase_endpoint__.timeoutSeconds  # type: ignore[attr-defined]
    manual_timeout = pack391_manualScale.__firebase_endpoint__.timeoutSeconds  # type: ignore[attr-defined]
    assert guard_timeout == budget.GUARD_TIMEOUT_SEC
    assert manual_timeout == budget.MANUAL_SCALE_TIMEOUT_SEC
    assert len(t.SCALING_SERVICE_INSTANCES) <= t.CLOUD_RUN_MAX_PARALLEL_UPDATES
    assert budget.guard_worst_case_sec() <= 0.8 * guard_timeout
    assert budget.manual_scale_worst_case_sec() <= 0.85 * manual_timeout
    # the update's own deadline is shorter than the timeout less everything else
    rest = budget.guard_worst_case_sec() - t.SCALE_OPERATION_TIMEOUT_SEC
    assert guard_timeout - rest > t.SCALE_OPERATION_TIMEOUT_SEC
    assert budget.per_service_sec() <= budget.guard_wait_sec() < guard_timeout
    manual_rest = budget.manual_scale_worst_case_sec() - t.SCALE_OPERATION_TIMEOUT_SEC
    assert manual_timeout - manual_rest > t.SCALE_OPERATION_TIMEOUT_SEC
    # one after the other, the same waits would not fit
    assert len(t.SCALING_SERVICE_INSTANCES) * budget.per_service_sec() > guard_timeout
