"""The deploy guard's GCP adapters through the real client libraries, against local fakes.

Cloud Run traffic: ``run_v2.ServicesClient(transport="rest")`` against :class:`FakeCloudRun`.
Per-revision metrics: ``monitoring_v3.MetricServiceClient`` against :class:`FakeGrpcApi`.
The index gate: ``FirestoreAdminClient(transport="rest")`` against :class:`FakeHttpApi`.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3, run_v2
from google.cloud.firestore_admin_v1 import FirestoreAdminClient

from functions.deploy_guard.gcp import CloudRunTraffic, MonitoringRevisionMetrics
from functions.deploy_guard.local import LocalTraffic, PushedRevisionMetrics
from functions.deploy_guard.ports import DeployPorts, TrafficConflict
from functions.deploy_guard.readers import BusinessMetrics, GateReader
from functions.deploy_guard.service import DeployGuard, load_index_specs
from functions.deploy_guard.store import DeployStore
from functions.scaling.api import PushedMetricsStore
from shared.audit import Change
from shared.errors import FailedPrecondition
from shared.firestore import get_db
from shared.gcp.cloudrun import CloudRunServices, services_client
from shared.gcp.monitoring import MonitoringReader, metric_client
from shared.models.deploy import PinTrafficRequest, StartRequest
from shared.redis import get_redis
from tests.conftest import ROOT, Backends
from tests.fakes.cloud_functions import FakeCloudFunctions, firebase_deploy
from tests.fakes.cloud_run import SERVICE, FakeCloudRun
from tests.fakes.grpc_api import FakeGrpcApi
from tests.fakes.http_api import FakeHttpApi, Recorded

PROJECT = "demo-pack391-test"
REGION = "europe-west1"
NAME = f"projects/{PROJECT}/locations/{REGION}/services/api"
REV = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
MINUTE = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def rest_client(api: FakeHttpApi) -> CloudRunServices:
    return CloudRunServices(services_client(api.url), PROJECT)


@pytest.fixture
def cloud_run() -> Iterator[tuple[FakeCloudRun, CloudRunTraffic]]:
    with FakeHttpApi() as api:
        fake = FakeCloudRun(api)
        yield fake, CloudRunTraffic(rest_client(api))


def test_observe_reads_traffic_statuses_and_resolves_latest(
    cloud_run: tuple[FakeCloudRun, CloudRunTraffic],
) -> None:
    fake, traffic = cloud_run
    fake.add_service(
        NAME,
        latestReadyRevision=f"{NAME}/revisions/api-00002",
        trafficStatuses=[{"type": int(LATEST), "percent": 100}],
    )
    seen = traffic.observe("api", REGION)
    assert seen.latest_ready == "api-00002"
    assert seen.shares == {"api-00002": 100}


def test_apply_sends_revision_targets_with_only_traffic_in_the_mask(
    cloud_run: tuple[FakeCloudRun, CloudRunTraffic],
) -> None:
    fake, traffic = cloud_run
    fake.add_service(
        NAME,
        latestReadyRevision=f"{NAME}/revisions/api-00002",
        template={"containers": [{"image": "gcr.io/x/api:2"}]},
        traffic=[{"type": int(REV), "revision": "api-00001", "percent": 100}],
        trafficStatuses=[{"type": int(REV), "revision": "api-00001", "percent": 100}],
    )
    serving = traffic.apply("api", REGION, {"api-00001": 95, "api-00002": 5})
    assert serving == {"api-00001": 95, "api-00002": 5}
    patch = fake.api.received("PATCH")[0]
    assert patch.path == f"/v2/{NAME}"
    assert patch.query["updateMask"] == ["traffic"]
    assert patch.body["traffic"] == [
        {"type": int(REV), "revision": "api-00001", "percent": 95},
        {"type": int(REV), "revision": "api-00002", "percent": 5},
    ]
    assert fake.services[NAME]["template"] == {"containers": [{"image": "gcr.io/x/api:2"}]}
    assert traffic.observe("api", REGION).shares == {"api-00001": 95, "api-00002": 5}


def test_apply_surfaces_api_errors(cloud_run: tuple[FakeCloudRun, CloudRunTraffic]) -> None:
    fake, traffic = cloud_run
    fake.api.reply(
        "PATCH",
        r"/v2/.*",
        400,
        {"error": {"code": 400, "message": "revision not found", "status": "INVALID_ARGUMENT"}},
    )
    from google.api_core import exceptions as gexc

    with pytest.raises(gexc.BadRequest, match="revision not found"):
        traffic.apply("api", REGION, {"nope": 100})


def _series(value: dict[str, Any], **labels: str) -> monitoring_v3.TimeSeries:
    point = monitoring_v3.Point(
        interval=monitoring_v3.TimeInterval(
            start_time=MINUTE, end_time=MINUTE + timedelta(seconds=60)
        ),
        value=monitoring_v3.TypedValue(**value),
    )
    return monitoring_v3.TimeSeries(metric={"labels": labels}, points=[point])


def _answers(request: monitoring_v3.ListTimeSeriesRequest) -> Any:
    metric = request.filter.split('"')[1]
    revision = re.search(r'revision_name = "([^"]+)"', request.filter)
    assert revision is not None
    if revision.group(1) != "api-00002":
        return monitoring_v3.ListTimeSeriesResponse(time_series=[])
    found = {
        "run.googleapis.com/request_count": [
            _series({"int64_value": 940}, response_code_class="2xx"),
            _series({"int64_value": 60}, response_code_class="5xx"),
        ],
        "run.googleapis.com/request_latencies": [_series({"double_value": 321.5})],
    }[metric]
    return monitoring_v3.ListTimeSeriesResponse(time_series=found)


def test_monitoring_reads_one_revisions_minute() -> None:
    with FakeGrpcApi("google.monitoring.v3.MetricService") as api:
        api.on(
            "ListTimeSeries",
            monitoring_v3.ListTimeSeriesRequest,
            monitoring_v3.ListTimeSeriesResponse,
            _answers,
        )
        client = metric_client(api.target)
        metrics = MonitoringRevisionMetrics(MonitoringReader(client, PROJECT))
        window = metrics.window("api", REGION, "api-00002", MINUTE)
        empty = metrics.window("api", REGION, "api-00001", MINUTE)
        client.transport.close()  # type: ignore[no-untyped-call]
    assert (window.requests, window.errors, window.p95_latency_ms) == (1000, 60, 321.5)
    assert (empty.requests, empty.p95_latency_ms) == (0, None)
    sent = api.requests[0][1]
    assert sent.name == f"projects/{PROJECT}"
    assert 'resource.labels.service_name = "api"' in sent.filter
    assert list(sent.aggregation.group_by_fields) == [
        "resource.labels.revision_name",
        "metric.labels.response_code_class",
    ]
    assert sent.interval.start_time.timestamp() == MINUTE.timestamp()


def _index(group: str, fields: list[tuple[str, str]], state: str = "READY") -> dict[str, Any]:
    return {
        "name": f"projects/{PROJECT}/databases/(default)/collectionGroups/{group}/indexes/i",
        "fields": [{"fieldPath": p, "order": o} for p, o in fields],
        "state": state,
    }


def test_index_gate_compares_indexes_json_with_the_admin_api(backends: Backends) -> None:
    specs = load_index_specs(ROOT / "firestore.indexes.json")
    ready = [
        _index(s["collectionGroup"], [(f["fieldPath"], f["order"]) for f in s["fields"]])
        for s in specs
    ]
    ready[0]["state"] = "CREATING"
    with FakeHttpApi() as api:

        def listing(_req: Recorded, _m: re.Match[str]) -> tuple[int, Any]:
            return 200, {"indexes": ready}

        api.on("GET", r"/v1/projects/[^/]+/databases/[^/]+/collectionGroups/-/indexes", listing)
        client = FirestoreAdminClient(
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            transport="rest",
            client_options={"api_endpoint": api.url},
        )
        missing = GateReader(get_db(), client).missing_indexes(PROJECT, "(default)", specs)
    first = specs[0]
    assert missing == [
        f"{first['collectionGroup']}("
        + ",".join(f"{f['fieldPath']} {f['order']}" for f in first["fields"])
        + ")"
    ]
    assert GateReader(get_db(), None).missing_indexes(PROJECT, "(default)", specs) is None


def test_a_firebase_deploy_lands_at_100_and_the_canary_takes_it_back_from_the_snapshot(
    cloud_run: tuple[FakeCloudRun, CloudRunTraffic], backends: Backends
) -> None:
    """The real sequence on a function: pin-traffic (snapshot), ``firebase deploy`` (the
    Cloud Functions API puts the new revision at 100 % over the pin), start (5 %, stable
    from the snapshot), rollback (100 % back on the snapshot's revision)."""
    fake, traffic = cloud_run
    fake.add_service(
        NAME,
        latestReadyRevision=f"{NAME}/revisions/api-00001",
        traffic=[{"type": int(LATEST), "percent": 100}],
    )
    guard = gcp_guard(traffic)
    now = datetime.now(UTC)
    change = Change("admin-1", "test", "test", "r1", now)
    pinned = guard.pin(PinTrafficRequest.model_validate({"environment": "prod"}), change)
    assert [(p.service, p.revision) for p in pinned.pinned] == [("api", "api-00001")]
    assert fake.serving(NAME) == {"api-00001": 100}
    with FakeHttpApi() as functions_api:
        FakeCloudFunctions(functions_api, fake)
        new = firebase_deploy(functions_api, PROJECT, REGION, "api")
    assert fake.serving(NAME) == {new: 100}  # the pin did not survive the deploy
    started = guard.start(
        StartRequest.model_validate(
            {"version": "v2", "environment": "prod", "force": True, "reason": "test"}
        ),
        change,
    )
    assert (started.phase, started.traffic_percent) == ("progressing", 5)
    dep = guard.p.store.get(started.deployment_id)
    assert dep is not None
    assert (dep.services[0].stable_revision, dep.services[0].canary_revision) == ("api-00001", new)
    validated = next(h for h in dep.history if h.event == "validated")
    assert validated.detail["canaryShareFound"] == 100
    assert fake.serving(NAME) == {"api-00001": 95, new: 5}
    assert guard.p.store.snapshot("prod") is None  # consumed by this canary

    rolled = guard.rollback(started.deployment_id, "test rollback", change)
    assert rolled.phase == "rolled_back"
    assert fake.serving(NAME) == {"api-00001": 100}
    bodies = [r.body["traffic"] for r in fake.api.received("PATCH")]
    assert bodies[-1] == [{"type": int(REV), "revision": "api-00001", "percent": 100}]


def test_without_a_snapshot_a_deploy_at_100_is_refused_naming_pin_traffic(
    cloud_run: tuple[FakeCloudRun, CloudRunTraffic], backends: Backends
) -> None:
    fake, traffic = cloud_run
    fake.add_service(
        NAME,
        latestReadyRevision=f"{NAME}/revisions/api-00001",
        traffic=[{"type": int(LATEST), "percent": 100}],
    )
    with FakeHttpApi() as functions_api:
        FakeCloudFunctions(functions_api, fake)
        firebase_deploy(functions_api, PROJECT, REGION, "api")
    guard = gcp_guard(traffic)
    change = Change("admin-1", "test", "test", "r1", datetime.now(UTC))
    with pytest.raises(FailedPrecondition, match="pin-traffic first"):
        guard.start(
            StartRequest.model_validate(
                {"version": "v2", "environment": "prod", "force": True, "reason": "t"}
            ),
            change,
        )


def gcp_guard(traffic: CloudRunTraffic) -> DeployGuard:
    db = get_db()
    return DeployGuard(
        DeployPorts(
            store=DeployStore(db),
            splitter=traffic,
            metrics=PushedRevisionMetrics(PushedMetricsStore(get_redis())),
            business=BusinessMetrics(db),
            gates=GateReader(db, None),
            project=PROJECT,
            region=REGION,
            default_services=("api",),
            probe_urls=(),
            index_file=ROOT / "firestore.indexes.json",
        )
    )


def test_a_platform_error_is_recorded_and_the_next_run_applies_the_split(
    cloud_run: tuple[FakeCloudRun, CloudRunTraffic], backends: Backends
) -> None:
    fake, traffic = cloud_run
    fake.add_service(
        NAME,
        latestReadyRevision=f"{NAME}/revisions/api-00002",
        traffic=[{"type": int(REV), "revision": "api-00001", "percent": 100}],
        trafficStatuses=[{"type": int(REV), "revision": "api-00001", "percent": 100}],
    )
    guard = gcp_guard(traffic)
    now = datetime.now(UTC)
    change = Change("admin-1", "test", "test", "r1", now)
    unavailable = {"error": {"code": 503, "message": "try later", "status": "UNAVAILABLE"}}
    fake.api.reply("PATCH", r"/v2/.*", 503, unavailable)
    started = guard.start(
        StartRequest.model_validate(
            {"version": "v2", "environment": "prod", "force": True, "reason": "test"}
        ),
        change,
    )
    dep = guard.p.store.get(started.deployment_id)
    assert dep is not None
    assert (dep.phase, dep.traffic_percent, dep.applied_percent) == ("progressing", 5, 0)
    assert (
        dep.history[-1].event == "platform_error" and "try later" in dep.history[-1].detail["error"]
    )
    assert traffic.observe("api", REGION).shares == {"api-00001": 100}

    fake.api.on("PATCH", SERVICE, fake._patch_service)  # the API is back
    dep = guard.step(started.deployment_id, now + timedelta(seconds=30))
    assert dep is not None and dep.applied_percent == 5
    assert traffic.observe("api", REGION).shares == {"api-00001": 95, "api-00002": 5}


# ------------------------------------------------------- overlapping writers


def _healthy_minute(at: datetime) -> None:
    """Pushed samples that pass the judge for the minute before ``at``."""
    pushed = PushedRevisionMetrics(PushedMetricsStore(get_redis()))
    sample_at = at - timedelta(seconds=55)
    pushed.record("api-00002", 200, 0, 200.0, sample_at)
    pushed.record("api-00001", 2000, 0, 200.0, sample_at)


def _start_canary(fake: FakeCloudRun, guard: DeployGuard, change: Change) -> str:
    fake.add_service(
        NAME,
        latestReadyRevision=f"{NAME}/revisions/api-00002",
        traffic=[{"type": int(REV), "revision": "api-00001", "percent": 100}],
        trafficStatuses=[{"type": int(REV), "revision": "api-00001", "percent": 100}],
    )
    started = guard.start(
        StartRequest.model_validate(
            {
                "version": "v2",
                "environment": "prod",
                "force": True,
                "reason": "test",
                "bakeSec": 0,
                "minRequestsPerStep": 100,
            }
        ),
        change,
    )
    assert (started.phase, started.traffic_percent) == ("progressing", 5)
    return started.deployment_id


def test_a_canary_step_landing_after_a_rollback_is_refused(
    cloud_run: tuple[FakeCloudRun, CloudRunTraffic], backends: Backends
) -> None:
    """The monitor commits 25 % and sends it; the request reaches Cloud Run only after an
    admin's rollback committed 0 %, sent 100 % stable and reached ``rolled_back``. The late
    write carries the etag read before the rollback, so Cloud Run refuses it, and the
    monitor records nothing: stable keeps 100 %, the deployment says 0 % applied."""
    fake, traffic = cloud_run
    guard = gcp_guard(traffic)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    change = Change("admin-1", "deploy.rollback", "bad canary", "r1", now)
    deployment_id = _start_canary(fake, guard, change)
    at = now + timedelta(minutes=2)
    _healthy_minute(at)

    late = fake.hold_next_patch()  # the monitor's 25 % write reaches Cloud Run late
    stepped: list[Any] = []
    monitor = threading.Thread(target=lambda: stepped.append(guard.step(deployment_id, at)))
    monitor.start()
    assert late.arrived.wait(30), "the monitor never sent its split"
    assert late.request is not None
    assert [t["percent"] for t in late.request.body["traffic"]] == [75, 25]

    rolled = guard.rollback(deployment_id, "bad canary", change)  # not held
    assert (rolled.phase, rolled.traffic_percent, rolled.applied_percent) == ("rolled_back", 0, 0)
    assert traffic.observe("api", REGION).shares == {"api-00001": 100}

    late.release.set()
    monitor.join(60)
    assert not monitor.is_alive()
    assert traffic.observe("api", REGION).shares == {"api-00001": 100}
    dep = guard.p.store.get(deployment_id)
    assert dep is not None
    assert (dep.phase, dep.traffic_percent, dep.applied_percent) == ("rolled_back", 0, 0)
    assert late.status == 409  # refused: written against the etag before the rollback
    assert stepped and stepped[0] is not None and stepped[0].phase == "rolled_back"
    assert guard.p.store.active_ids() == []  # confirmed, the environment is free
    guard.monitor(at + timedelta(minutes=1))
    assert traffic.observe("api", REGION).shares == {"api-00001": 100}


def test_a_final_split_is_reasserted_until_the_platform_serves_it(
    cloud_run: tuple[FakeCloudRun, CloudRunTraffic], backends: Backends
) -> None:
    """A rollback whose confirming read fails keeps its environment; meanwhile the canary
    gets 25 % back from elsewhere. The next monitor run sees ``traffic_statuses`` differ
    from the final split, sends it again and only then lets the environment go."""
    fake, traffic = cloud_run
    guard = gcp_guard(traffic)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    change = Change("admin-1", "deploy.rollback", "bad canary", "r1", now)
    deployment_id = _start_canary(fake, guard, change)

    gets = itertools.count()
    internal = {"error": {"code": 500, "message": "try later", "status": "INTERNAL"}}

    def flaky_get(req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        # the rollback reads the etag (0), writes, then reads to confirm (1): that one fails
        # (INTERNAL: the client library does not retry it)
        return (500, internal) if next(gets) == 1 else fake._get_service(req, m)

    fake.api.on("GET", SERVICE, flaky_get)
    rolled = guard.rollback(deployment_id, "bad canary", change)
    assert (rolled.phase, rolled.applied_percent, rolled.confirmed_at) == ("rolled_back", 0, None)
    assert guard.p.store.active_ids() == [deployment_id]  # not confirmed: still held
    with pytest.raises(FailedPrecondition, match="is active in prod"):
        guard.start(
            StartRequest.model_validate(
                {"version": "v3", "environment": "prod", "force": True, "reason": "t"}
            ),
            change,
        )

    fake.services[NAME]["trafficStatuses"] = [
        {"type": int(REV), "revision": "api-00001", "percent": 75},
        {"type": int(REV), "revision": "api-00002", "percent": 25},
    ]
    [dep] = guard.monitor(now + timedelta(minutes=1))
    assert dep.phase == "rolled_back" and dep.confirmed_at is not None
    assert dep.history[-1].event == "reasserted"
    assert dep.history[-1].detail == {"services": ["api"]}
    assert traffic.observe("api", REGION).shares == {"api-00001": 100}
    assert guard.p.store.active_ids() == []
    assert guard.monitor(now + timedelta(minutes=2)) == []


def test_local_traffic_refuses_a_write_against_an_old_version(backends: Backends) -> None:
    local = LocalTraffic(get_redis())
    local.deploy("api", "api-00001")
    seen = local.observe("api", REGION)
    local.apply("api", REGION, {"api-00001": 100})  # another writer, after our read
    with pytest.raises(TrafficConflict):
        local.apply("api", REGION, {"api-00001": 75, "api-00002": 25}, seen.etag)
    assert local.observe("api", REGION).shares == {"api-00001": 100}
    fresh = local.observe("api", REGION)
    assert local.apply("api", REGION, {"api-00001": 90, "api-00002": 10}, fresh.etag)
