"""The scale guard wired to the GCP adapters (real client libraries against the local
Cloud Run and Cloud Monitoring fakes), with the registry in the Firestore emulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from firebase_functions import https_fn
from google.cloud import monitoring_v3

from functions.scaling.api import PushedMetricsStore
from functions.scaling.coordination import RedisIsolationFlags, RedisLocks
from functions.scaling.gcp import KEEP_EXTERNAL_SCALING, CloudMonitoringSource, CloudRunScaler
from functions.scaling.policy import DEFAULT_POLICY
from functions.scaling.ports import ScalingPorts
from functions.scaling.service import ScalingService
from functions.scaling.store import ServiceRegistry
from shared.audit import Change
from shared.errors import BackendUnavailable, FailedPrecondition
from shared.firestore import get_db
from shared.gcp.cloudrun import CloudRunServices, services_client
from shared.gcp.monitoring import MonitoringReader, metric_client
from shared.models.scaling import (
    InitScalingRequest,
    ManualScaleRequest,
    ReportMetricsRequest,
    ScaleGuardReport,
)
from tests.conftest import Backends
from tests.fakes.cloud_run import FakeCloudRun
from tests.fakes.grpc_api import FakeGrpcApi
from tests.fakes.http_api import FakeHttpApi

PROJECT = "demo-pack391-test"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
GATEWAY = f"projects/{PROJECT}/locations/us-central1/services/api-gateway"


def cpu_answer(cpu_ratio: float) -> Any:
    def answer(request: monitoring_v3.ListTimeSeriesRequest) -> Any:
        if 'service_name = "api-gateway"' not in request.filter or "cpu" not in request.filter:
            return monitoring_v3.ListTimeSeriesResponse()
        end = NOW - timedelta(seconds=20)
        point = monitoring_v3.Point(
            interval=monitoring_v3.TimeInterval(end_time=end),
            value=monitoring_v3.TypedValue(double_value=cpu_ratio),
        )
        return monitoring_v3.ListTimeSeriesResponse(
            time_series=[monitoring_v3.TimeSeries(points=[point])]
        )

    return answer


class Gcp:
    def __init__(self, run: FakeCloudRun, monitoring: FakeGrpcApi, backends: Backends) -> None:
        self.run = run
        self.monitoring = monitoring
        self.backends = backends

    def service(self, dry_run: bool = False, **options: float) -> ScalingService:
        client = redis.Redis.from_url(self.backends.redis_url, decode_responses=True)
        run_client = services_client(self.run.api.url)
        metrics_client = metric_client(self.monitoring.target)
        ports = ScalingPorts(
            registry=ServiceRegistry(get_db()),
            metrics=CloudMonitoringSource(MonitoringReader(metrics_client, PROJECT)),
            pushed=PushedMetricsStore(client),
            scaler=CloudRunScaler(CloudRunServices(run_client, PROJECT)),
            locks=RedisLocks(client),
            isolation=RedisIsolationFlags(client),
            dry_run=dry_run,
        )
        service = ScalingService(ports, DEFAULT_POLICY, **options)
        change = Change("admin-1", "scaling.init", None, "req-1", NOW)
        service.init(InitScalingRequest(), "us-central1", "", PROJECT, change)
        return service


@pytest.fixture
def gcp(backends: Backends) -> Iterator[Gcp]:
    with FakeHttpApi() as api, FakeGrpcApi("google.monitoring.v3.MetricService") as mon:
        run = FakeCloudRun(api)
        mon.on(
            "ListTimeSeries",
            monitoring_v3.ListTimeSeriesRequest,
            monitoring_v3.ListTimeSeriesResponse,
            cpu_answer(0.975),
        )
        run.add_service(GATEWAY, scaling={"scalingMode": "MANUAL", "manualInstanceCount": 3})
        yield Gcp(run, mon, backends)


def test_guard_scales_cloud_run_from_cloud_monitoring(gcp: Gcp) -> None:
    report = gcp.service().guard(NOW, "run-1")
    by_id = {d.service_id: d for d in report.decisions}
    gateway = by_id["api-gateway"]
    assert (gateway.action.value, gateway.desired_instances) == ("scale_up", 5)
    assert gateway.acted and gateway.platform is not None
    assert gateway.platform.platform == "cloud_run" and gateway.platform.instances == 5
    assert gcp.run.services[GATEWAY]["scaling"]["manualInstanceCount"] == 5
    [patch] = gcp.run.api.received("PATCH")
    assert patch.path == f"/v2/{GATEWAY}"
    # every other service had no metrics: no_data, and Cloud Run was not asked to change
    assert all(d.action.value == "no_data" for k, d in by_id.items() if k != "api-gateway")
    assert (
        ServiceRegistry(get_db()).get("api-gateway") or pytest.fail()
    ).state.current_instances == 5


def test_guard_notices_a_deploy_reset(gcp: Gcp) -> None:
    service = gcp.service()
    service.guard(NOW, "run-1")
    # a `firebase deploy` without preserve_external_changes puts the service back to 1
    gcp.run.services[GATEWAY]["scaling"] = {"scalingMode": "MANUAL", "manualInstanceCount": 1}
    gcp.monitoring.on(
        "ListTimeSeries",
        monitoring_v3.ListTimeSeriesRequest,
        monitoring_v3.ListTimeSeriesResponse,
        cpu_answer(0.65),
    )
    later = NOW + timedelta(minutes=1)
    report = service.guard(later, "run-2")
    gateway = next(d for d in report.decisions if d.service_id == "api-gateway")
    assert gateway.reasons[0].startswith("platform holds 1 instances, not the 5 recorded")
    assert gateway.current_instances == 1
    # back to min (2): the bound is re-applied on Cloud Run
    assert gateway.desired_instances == 2 and gateway.acted
    assert gcp.run.services[GATEWAY]["scaling"]["manualInstanceCount"] == 2


def test_dry_run_records_without_acting(gcp: Gcp) -> None:
    report = gcp.service(dry_run=True).guard(NOW, "run-1")
    gateway = next(d for d in report.decisions if d.service_id == "api-gateway")
    assert (gateway.action.value, gateway.desired_instances) == ("scale_up", 5)
    assert gateway.dry_run and not gateway.acted and gateway.platform is None
    assert "dry run: not applied" in gateway.reasons
    assert gcp.run.api.received("PATCH") == []
    assert gcp.run.services[GATEWAY]["scaling"]["manualInstanceCount"] == 3


def test_resize_hooks_are_refused_when_deployed(gcp: Gcp) -> None:
    request = ReportMetricsRequest.model_validate(
        {"serviceId": "api-gateway", "cpuPct": 10.0, "resizeHookUrl": "http://10.0.0.1/x"}
    )
    with pytest.raises(FailedPrecondition) as exc:
        gcp.service().report(request, NOW)
    assert exc.value.details["field"] == "resizeHookUrl"


def test_keep_external_scaling_stops_deploys_resetting_instances() -> None:
    def handler(_req: Any) -> Any:
        return "ok"

    plain = https_fn.on_request()(handler)
    kept = https_fn.on_request(**KEEP_EXTERNAL_SCALING)(handler)
    reset = plain.__firebase_endpoint__.minInstances  # type: ignore[attr-defined]
    assert reset is not None  # the SDK's RESET sentinel: a deploy would clear the scaling
    assert kept.__firebase_endpoint__.minInstances is None  # type: ignore[attr-defined]
    assert kept.__firebase_endpoint__.maxInstances is None  # type: ignore[attr-defined]


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.config import SCALING_BACKEND
    from shared.wiring import backend_choice

    def _backend() -> str:
        return backend_choice("PACK391_SCALING_BACKEND", SCALING_BACKEND.value)

    assert _backend() == "local"  # auto under the emulator
    monkeypatch.setenv("PACK391_SCALING_BACKEND", "gcp")
    assert _backend() == "gcp"
    monkeypatch.setenv("PACK391_SCALING_BACKEND", "kubernetes")
    with pytest.raises(FailedPrecondition):
        _backend()


# ------------------------------------------- a platform slower than the lock

LOCKS = ("{pack391:scaling}:lock:guard", "{pack391:scaling}:lock:service:api-gateway")
"""The run's lock and api-gateway's (deleting them is what expiry does to a stalled run)."""


def _first_run_held_in_cloud_run(gcp: Gcp, service: ScalingService) -> tuple[Any, Any]:
    """Run 1 decides api-gateway 3 -> 5 and sends it; Cloud Run holds the update."""
    slow = gcp.run.hold_next_patch()
    reports: list[ScaleGuardReport] = []
    runner = threading.Thread(target=lambda: reports.append(service.guard(NOW, "run-1")))
    runner.start()
    assert slow.arrived.wait(30), "run 1 never called Cloud Run"
    return slow, runner


def _finish(slow: Any, runner: threading.Thread) -> None:
    slow.release.set()
    runner.join(60)
    assert not runner.is_alive()


def _gateway_state(gcp: Gcp) -> Any:
    doc = ServiceRegistry(get_db()).get("api-gateway")
    assert doc is not None
    return doc.state


def test_the_lock_is_renewed_while_cloud_run_takes_longer_than_it(gcp: Gcp) -> None:
    """A 1 s lock and a Cloud Run update that takes over 3 s: the next minute's run finds
    the lock still held (renewed by the first run's heartbeat), so api-gateway is scaled
    once, not once per run from the state run 1 has not saved yet."""
    ttl = 1.0
    service = gcp.service(lock_ttl_sec=ttl)
    slow, runner = _first_run_held_in_cloud_run(gcp, service)
    time.sleep(3 * ttl)  # three lifetimes of the lock
    second = service.guard(NOW + timedelta(minutes=1), "run-2")
    _finish(slow, runner)
    assert [d for d in second.decisions if d.service_id == "api-gateway" and d.acted] == []
    assert len(gcp.run.api.received("PATCH")) == 1
    assert second.locked is False  # still held by run 1
    assert gcp.run.services[GATEWAY]["scaling"]["manualInstanceCount"] == 5
    state = _gateway_state(gcp)
    assert (state.current_instances, state.pending, state.last_action_at) == (5, None, NOW)


def test_an_action_in_flight_holds_the_next_run_even_once_the_lock_is_gone(gcp: Gcp) -> None:
    """Run 1 stalls past its lock (the locks expire while its update is in Cloud Run). Run 2
    takes the locks, but finds run 1's intent recorded before the call: it holds instead
    of scaling api-gateway again from the unsaved state; run 1 then completes."""
    service = gcp.service()
    slow, runner = _first_run_held_in_cloud_run(gcp, service)
    redis.Redis.from_url(gcp.backends.redis_url).delete(*LOCKS)
    second = service.guard(NOW + timedelta(minutes=1), "run-2")
    assert second.locked
    held = next(d for d in second.decisions if d.service_id == "api-gateway")
    assert (held.action.value, held.acted) == ("none", False)
    assert held.reasons[0].startswith("guard action of run-1 to 5 instances in flight")
    assert _gateway_state(gcp).pending.run_id == "run-1"
    _finish(slow, runner)
    assert len(gcp.run.api.received("PATCH")) == 1
    assert gcp.run.services[GATEWAY]["scaling"]["manualInstanceCount"] == 5
    state = _gateway_state(gcp)
    assert (state.current_instances, state.pending, state.last_action_at) == (5, None, NOW)


def test_a_manual_scale_and_the_guard_take_turns_on_a_service(gcp: Gcp) -> None:
    """While the guard's update of api-gateway is in Cloud Run, a manual scale of it is
    refused: by the service's lock, and by the recorded intent once that lock is gone.
    Without that, the guard's late update (5) would land over the manual 10 and its
    record would drop the manual pin. Once the guard is done, the manual scale goes."""
    service = gcp.service(manual_wait_sec=0.2)
    manual = ManualScaleRequest.model_validate(
        {"serviceId": "api-gateway", "action": "scale_to", "instanceCount": 10, "reason": "t"}
    )
    slow, runner = _first_run_held_in_cloud_run(gcp, service)
    during = Change("admin-1", "scaling.manual.scale_to", "t", "req-2", NOW + timedelta(seconds=30))
    with pytest.raises(BackendUnavailable, match="in progress"):
        service.manual_scale(manual, during)
    redis.Redis.from_url(gcp.backends.redis_url).delete(*LOCKS)
    with pytest.raises(BackendUnavailable, match="in flight"):
        service.manual_scale(manual, during)
    _finish(slow, runner)
    assert gcp.run.services[GATEWAY]["scaling"]["manualInstanceCount"] == 5

    after = Change("admin-1", "scaling.manual.scale_to", "t", "req-3", NOW + timedelta(seconds=40))
    result = service.manual_scale(manual, after)
    assert (result.previous_instances, result.instances) == (5, 10)
    assert gcp.run.services[GATEWAY]["scaling"]["manualInstanceCount"] == 10
    state = _gateway_state(gcp)
    assert (state.current_instances, state.pending) == (10, None)
    assert state.pinned_until == after.now + timedelta(seconds=30 * 60)
