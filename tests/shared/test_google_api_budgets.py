"""Google API calls keep the call's budget (shared.gcp.budget): each client library,
pointed at a local endpoint that speaks the API's shape and answers slowly (a stalled
dependency), gives up when the budget does and names the dependency."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[attr-defined]
from google.cloud.monitoring_v3 import ListTimeSeriesRequest, ListTimeSeriesResponse

from functions.backup.destinations import destination_for
from shared import deadline
from shared.errors import DependencyUnavailable
from shared.gcp import budget
from shared.gcp import monitoring as gm
from shared.gcp.cloudrun import CloudRunServices, services_client
from tests.fakes.cloud_run import FakeCloudRun
from tests.fakes.cloud_storage import FakeCloudStorage, serve
from tests.fakes.grpc_api import FakeGrpcApi
from tests.fakes.http_api import FakeHttpApi, Recorded

PROJECT = "demo-pack391-test"
REGION = "europe-west1"
NAME = f"projects/{PROJECT}/locations/{REGION}/services/api"
BUDGET_SEC = 0.5
SLACK_SEC = 0.5
"""Beyond the budget: the client's last retry pause (at most 0.1 s at first) and the
scheduling of a loaded machine."""
STALL_SEC = 3.0
"""How long the stalled fakes take to answer: far past the budget."""


def _within(started: float) -> float:
    took = time.monotonic() - started
    assert took < BUDGET_SEC + SLACK_SEC, f"answered after {took:.2f}s"
    return took


@pytest.fixture
def cloud_run() -> Iterator[tuple[FakeCloudRun, CloudRunServices]]:
    with FakeHttpApi() as api:
        fake = FakeCloudRun(api)
        fake.add_service(NAME, scaling={"minInstanceCount": 1}, template={"containers": [{}]})
        yield fake, CloudRunServices(services_client(api.url), PROJECT)


def test_a_cloud_run_read_and_update_give_up_with_the_budget(
    cloud_run: tuple[FakeCloudRun, CloudRunServices],
) -> None:
    fake, services = cloud_run
    assert services.get("api", REGION).name == NAME  # answers when not stalled

    def slow(req: Recorded, m: Any) -> tuple[int, Any]:
        time.sleep(STALL_SEC)
        return fake._get_service(req, m)

    fake.api.on("GET", f"/v2/{NAME}", slow)

    def slow_update(_req: Recorded, _m: Any) -> tuple[int, Any]:
        time.sleep(STALL_SEC)
        return 503, {}

    fake.api.on("PATCH", f"/v2/{NAME}", slow_update)
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: services.get("api", REGION),
        "update": lambda: services.set_manual_instances("api", REGION, 3, timeout_sec=60),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with deadline.budget(BUDGET_SEC, name), pytest.raises(DependencyUnavailable) as refused:
            call()
        _within(started)
        assert refused.value.dependency == "cloud-run", name


def test_a_monitoring_query_gives_up_with_the_budget() -> None:
    def slow(_: ListTimeSeriesRequest) -> ListTimeSeriesResponse:
        time.sleep(STALL_SEC)
        return ListTimeSeriesResponse()

    with FakeGrpcApi("google.monitoring.v3.MetricService") as api:
        api.on(
            "ListTimeSeries",
            ListTimeSeriesRequest,
            ListTimeSeriesResponse,
            slow,
        )
        client = gm.metric_client(api.target)
        reader = gm.MonitoringReader(client, PROJECT)
        end = datetime.now(UTC)
        query = gm.Query(gm.REQUESTS, gm.Aligner.ALIGN_DELTA, gm.Reducer.REDUCE_SUM, ())
        try:
            started = time.monotonic()
            with (
                deadline.budget(BUDGET_SEC, "query"),
                pytest.raises(DependencyUnavailable) as refused,
            ):
                reader.series(query, "", end - timedelta(minutes=1), end, timedelta(minutes=1))
            _within(started)
            assert refused.value.dependency == "monitoring"
        finally:
            client.transport.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def gcs() -> Iterator[FakeCloudStorage]:
    yield from serve()


def test_a_cloud_storage_write_and_read_give_up_with_the_budget(gcs: FakeCloudStorage) -> None:
    client = storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs.url},
    )
    destination = destination_for("gs://avalo-europe-west1/pack391", client)
    destination.write("a", b"x")
    gcs.delay_sec = STALL_SEC
    calls: dict[str, Callable[[], object]] = {
        "write": lambda: destination.write("b", b"y"),
        "read": lambda: destination.read("a"),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with deadline.budget(BUDGET_SEC, name), pytest.raises(DependencyUnavailable) as refused:
            call()
        _within(started)
        assert refused.value.dependency == "storage", name
    gcs.delay_sec = 0
    time.sleep(STALL_SEC)  # the stalled requests end (the fake serves them one by one)
    with deadline.budget(5.0, "after"):
        assert destination.read("a") == b"x"


def test_a_call_that_takes_no_timeout_is_waited_for_within_the_budget() -> None:
    done: list[str] = []

    def enqueue() -> str:  # firebase-admin's task queue client: no timeout to pass
        time.sleep(1.0)
        done.append("enqueued")
        return "task"

    started = time.monotonic()
    with deadline.budget(0.3, "enqueue"), pytest.raises(DependencyUnavailable) as refused:
        budget.bounded(budget.CLOUD_TASKS, 30.0, enqueue)
    assert time.monotonic() - started < 0.3 + SLACK_SEC
    assert refused.value.dependency == "cloud-tasks"
    assert done == []  # refused before the enqueue ended; it still ends in the background
    with deadline.budget(5.0, "fast"):
        assert budget.bounded(budget.CLOUD_TASKS, 30.0, lambda: "quick") == "quick"
