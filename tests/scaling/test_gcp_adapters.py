"""The GCP adapters through the real client libraries, against local fakes of the APIs.

Cloud Run: ``run_v2.ServicesClient(transport="rest")`` against :class:`FakeCloudRun` (REST).
Cloud Monitoring: ``monitoring_v3.MetricServiceClient`` (gRPC only) against a real gRPC
server (:class:`FakeGrpcApi`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import monitoring_v3, run_v2

from functions.scaling.gcp import CloudMonitoringSource, CloudRunScaler
from shared.gcp.cloudrun import CloudRunServices, services_client
from shared.gcp.monitoring import MonitoringReader, metric_client
from shared.models.scaling import ServiceConfig
from tests.fakes.cloud_run import FakeCloudRun
from tests.fakes.grpc_api import FakeGrpcApi
from tests.fakes.http_api import FakeHttpApi
from tests.scaling.helpers import service_config

PROJECT = "demo-pack391-test"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NAME = f"projects/{PROJECT}/locations/europe-west1/services/api-gateway"


def cfg(**over: Any) -> ServiceConfig:
    return service_config(**{"region": "europe-west1", "max_instances": 50, **over})


# ---------------------------------------------------------------- Cloud Run


@pytest.fixture
def cloud_run() -> Iterator[tuple[FakeCloudRun, CloudRunScaler]]:
    with FakeHttpApi() as api:
        fake = FakeCloudRun(api)
        yield fake, CloudRunScaler(CloudRunServices(services_client(api.url), PROJECT))


def test_cloud_run_scaler_sets_manual_instances_and_waits_for_the_operation(
    cloud_run: tuple[FakeCloudRun, CloudRunScaler],
) -> None:
    fake, scaler = cloud_run
    fake.add_service(NAME, scaling={"minInstanceCount": 1}, template={"containers": [{}]})
    answer = scaler.apply(cfg(), 9)
    assert answer.ok and answer.instances == 9
    assert answer.detail["service"] == NAME
    assert answer.detail["operation"].startswith(f"projects/{PROJECT}/locations/europe-west1/")

    patches = fake.api.received("PATCH")
    assert len(patches) == 1
    patch = patches[0]
    assert patch.path == f"/v2/{NAME}"
    assert patch.query["updateMask"] == ["scaling.scalingMode,scaling.manualInstanceCount"]
    # the library sends enums as numbers ($alt=json;enum-encoding=int): MANUAL is 2
    assert patch.query["$alt"] == ["json;enum-encoding=int"]
    manual = int(run_v2.ServiceScaling.ScalingMode.MANUAL)
    assert patch.body["scaling"] == {"scalingMode": manual, "manualInstanceCount": 9}
    # the library polled the operation (our fake answers done=false first)
    assert len(fake.api.received("GET", r"/v2/.*/operations/.*")) == 1
    # only the masked fields changed on the service
    assert fake.services[NAME]["template"] == {"containers": [{}]}
    assert fake.services[NAME]["scaling"]["manualInstanceCount"] == 9
    assert scaler.observed(cfg()) == 9


def test_cloud_run_observed_is_none_under_automatic_scaling(
    cloud_run: tuple[FakeCloudRun, CloudRunScaler],
) -> None:
    fake, scaler = cloud_run
    fake.add_service(NAME, scaling={"scalingMode": "AUTOMATIC", "minInstanceCount": 2})
    assert scaler.observed(cfg()) is None


def test_cloud_run_errors_are_an_answer_not_a_crash(
    cloud_run: tuple[FakeCloudRun, CloudRunScaler],
) -> None:
    fake, scaler = cloud_run
    fake.api.reply(
        "PATCH",
        r"/v2/.*",
        403,
        {
            "error": {
                "code": 403,
                "message": "caller lacks run.services.update",
                "status": "PERMISSION_DENIED",
            }
        },
    )
    answer = scaler.apply(cfg(), 5)
    assert not answer.ok
    assert "run.services.update" in answer.detail["error"]


# --------------------------------------------------------- Cloud Monitoring


def point(end: datetime, **value: Any) -> monitoring_v3.Point:
    return monitoring_v3.Point(
        interval=monitoring_v3.TimeInterval(end_time=end, start_time=end - timedelta(seconds=60)),
        value=monitoring_v3.TypedValue(**value),
    )


def series(*points: monitoring_v3.Point, **labels: str) -> monitoring_v3.TimeSeries:
    return monitoring_v3.TimeSeries(metric={"labels": labels}, points=list(points))


def monitoring_answers(request: monitoring_v3.ListTimeSeriesRequest) -> Any:
    end = NOW - timedelta(seconds=30)
    older = end - timedelta(seconds=60)
    metric = request.filter.split('"')[1]
    found = {
        "run.googleapis.com/container/cpu/utilizations": [
            series(point(end, double_value=0.8), point(older, double_value=0.2))
        ],
        "run.googleapis.com/request_latencies": [series(point(end, double_value=512.0))],
        "run.googleapis.com/request_count": [
            series(point(end, int64_value=970), response_code_class="2xx"),
            series(point(end, int64_value=30), response_code_class="5xx"),
        ],
        "cloudtasks.googleapis.com/queue/depth": [series(point(end, int64_value=7200))],
    }[metric]
    return monitoring_v3.ListTimeSeriesResponse(time_series=found)


@pytest.fixture
def monitoring() -> Iterator[tuple[FakeGrpcApi, CloudMonitoringSource]]:
    with FakeGrpcApi("google.monitoring.v3.MetricService") as api:
        api.on(
            "ListTimeSeries",
            monitoring_v3.ListTimeSeriesRequest,
            monitoring_v3.ListTimeSeriesResponse,
            monitoring_answers,
        )
        client = metric_client(api.target)
        yield api, CloudMonitoringSource(MonitoringReader(client, PROJECT))
        client.transport.close()  # type: ignore[no-untyped-call]


def test_monitoring_source_reads_cloud_run_metrics(
    monitoring: tuple[FakeGrpcApi, CloudMonitoringSource],
) -> None:
    api, source = monitoring
    snap = source.read(cfg(), NOW)
    assert snap is not None
    assert snap.source == "cloud_monitoring"
    assert snap.cpu_pct == pytest.approx(80.0)  # the newest point, as a percentage
    assert snap.p95_latency_ms == 512.0
    assert snap.requests_per_min == 1000.0
    assert snap.error_rate_pct == pytest.approx(3.0)
    assert snap.queue_backlog is None  # not a worker: the queue is not queried
    assert snap.at == NOW - timedelta(seconds=90)

    sent = api.received("ListTimeSeries")
    assert len(sent) == 3
    by_metric = {r.filter.split('"')[1]: r for r in sent}
    latency = by_metric["run.googleapis.com/request_latencies"]
    assert latency.name == f"projects/{PROJECT}"
    assert 'resource.labels.service_name = "api-gateway"' in latency.filter
    assert 'resource.labels.location = "europe-west1"' in latency.filter
    agg = monitoring_v3.Aggregation
    assert latency.aggregation.per_series_aligner == agg.Aligner.ALIGN_PERCENTILE_95
    assert latency.aggregation.cross_series_reducer == agg.Reducer.REDUCE_MAX
    assert latency.aggregation.alignment_period == timedelta(seconds=60)
    requests = by_metric["run.googleapis.com/request_count"]
    assert list(requests.aggregation.group_by_fields) == ["metric.labels.response_code_class"]
    assert requests.interval.end_time == NOW


def test_monitoring_source_reads_a_workers_queue(
    monitoring: tuple[FakeGrpcApi, CloudMonitoringSource],
) -> None:
    api, source = monitoring
    snap = source.read(cfg(service_id="media-processing", queue_source="media-jobs"), NOW)
    assert snap is not None and snap.queue_backlog == 7200
    queue = [r for r in api.received("ListTimeSeries") if "cloudtasks" in r.filter]
    assert len(queue) == 1 and 'resource.labels.queue_id = "media-jobs"' in queue[0].filter


def test_monitoring_source_without_points_is_no_data() -> None:
    with FakeGrpcApi("google.monitoring.v3.MetricService") as api:
        api.on(
            "ListTimeSeries",
            monitoring_v3.ListTimeSeriesRequest,
            monitoring_v3.ListTimeSeriesResponse,
            lambda _r: monitoring_v3.ListTimeSeriesResponse(),
        )
        client = metric_client(api.target)
        assert CloudMonitoringSource(MonitoringReader(client, PROJECT)).read(cfg(), NOW) is None
        client.transport.close()  # type: ignore[no-untyped-call]
