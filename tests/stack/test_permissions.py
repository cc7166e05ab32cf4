"""The permission tables (stack/release/permissions.py) and the permission checks of the fakes of
Google's APIs: a caller without a role gets Google's ``PERMISSION_DENIED`` through the real
client libraries, and the bundle answers it as a refused platform call, not INTERNAL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.api_core import exceptions as gexc
from google.cloud import monitoring_v3

from functions.scaling.gcp import CloudRunScaler
from shared.edge_errors import to_https_error
from shared.gcp.cloudrun import CloudRunServices, services_client
from shared.gcp.monitoring import metric_client
from stack.release.permissions import (
    BY_ID,
    DEPLOYER_ROLES,
    METHODS,
    ROLE_PERMISSIONS,
    RUNTIME_ROLES,
    Principal,
    granted,
    problems,
)
from tests.fakes import google_apis
from tests.fakes.cloud_run import FakeCloudRun
from tests.fakes.grpc_api import FakeGrpcApi
from tests.fakes.http_api import FakeHttpApi

PROJECT = "demo-pack391-test"
GATEWAY = f"projects/{PROJECT}/locations/us-central1/services/api-gateway"


def test_every_method_the_bundle_calls_is_granted_by_bootstrap() -> None:
    assert problems(m.id for m in METHODS) == []
    assert all(m.doc.startswith("https://") for m in METHODS)
    for grant in (*RUNTIME_ROLES, *DEPLOYER_ROLES):
        assert grant.role in ROLE_PERMISSIONS, grant.role
        assert ROLE_PERMISSIONS[grant.role].doc.startswith("https://")


def test_methods_reached_only_through_emulators_are_in_the_table() -> None:
    """Firestore's data API runs against the emulator (no fake records it); Cloud Tasks'
    CreateTask is recorded through firebase-admin's task queue (tests/load)."""
    for method in ("RunQuery", "RunAggregationQuery", "BatchGetDocuments", "Commit",
                   "BatchWrite", "BeginTransaction", "Rollback", "ListCollectionIds"):  # fmt: skip
        assert BY_ID[f"google.firestore.v1.Firestore/{method}"].principal == Principal.RUNTIME
    create = BY_ID["google.cloud.tasks.v2.CloudTasks/CreateTask"]
    assert create.permissions == ("cloudtasks.tasks.create", "iam.serviceAccounts.actAs")


def test_each_project_role_of_the_runtime_account_is_needed() -> None:
    """Exactly the roles the calls need: every project-wide role holds a permission some
    runtime method needs that no other project-wide role holds."""
    needed = {p for m in METHODS if m.principal == Principal.RUNTIME for p in m.permissions}
    project = [g.role for g in RUNTIME_ROLES if g.on == "project"]
    for role in project:
        others = set().union(*(ROLE_PERMISSIONS[r].permissions for r in project if r != role))
        assert (ROLE_PERMISSIONS[role].permissions & needed) - others, role


def test_problems_name_the_method_and_what_is_missing() -> None:
    assert problems(["google.cloud.run.v2.Services/DeleteService"]) == [
        "google.cloud.run.v2.Services/DeleteService: not in stack.release.permissions.METHODS: "
        "add a row (its permission, who calls it, the Google page naming the permission) and "
        "grant it in bootstrap"
    ]
    assert "run.services.update" not in granted(Principal.RUNTIME, without=["roles/run.developer"])
    assert "run.services.update" in granted(Principal.RUNTIME)


def test_rest_routes_name_the_methods() -> None:
    assert google_apis.rest_method("PATCH", f"/v2/{GATEWAY}") == (
        "google.cloud.run.v2.Services/UpdateService"
    )
    assert google_apis.rest_method("POST", "/hook") is None
    assert google_apis.rest_method("POST", "/v2/projects/p/things:frob") == (
        "UNKNOWN POST /v2/projects/p/things:frob"
    )


@pytest.fixture
def cloud_run() -> Iterator[FakeCloudRun]:
    with FakeHttpApi() as api:
        fake = FakeCloudRun(api)
        fake.add_service(GATEWAY, scaling={"scalingMode": "MANUAL", "manualInstanceCount": 3})
        yield fake


def test_bootstraps_roles_let_a_cloud_run_update_through(cloud_run: FakeCloudRun) -> None:
    services = CloudRunServices(services_client(cloud_run.api.url), PROJECT)
    services.set_manual_instances("api-gateway", "us-central1", 4, 30)
    assert cloud_run.services[GATEWAY]["scaling"]["manualInstanceCount"] == 4
    assert "google.cloud.run.v2.Services/UpdateService" in google_apis.called()


def test_a_revoked_role_refuses_the_update_as_google_does(cloud_run: FakeCloudRun) -> None:
    cloud_run.api.granted = granted(Principal.RUNTIME, without=["roles/run.developer"])
    services = CloudRunServices(services_client(cloud_run.api.url), PROJECT)
    with pytest.raises(gexc.Forbidden) as refused:  # REST: 403 PERMISSION_DENIED
        services.set_manual_instances("api-gateway", "us-central1", 4, 30)
    assert refused.value.code == 403
    assert (
        f"Permission 'run.services.update' denied on resource '{GATEWAY}'" in refused.value.message
    )
    assert cloud_run.services[GATEWAY]["scaling"]["manualInstanceCount"] == 3
    # the bundle's scaler answers a refused platform call with the reason, no exception
    from shared.models.scaling import ServiceConfig

    cfg = ServiceConfig.model_validate(
        {
            "serviceId": "api-gateway",
            "cloudRunService": "api-gateway",
            "region": "us-central1",
            "initialInstances": 3,
            "minInstances": 2,
            "maxInstances": 10,
        }
    )
    answer = CloudRunScaler(services).apply(cfg, 4)
    assert not answer.ok
    assert "Forbidden" in answer.detail["error"] and "run.services.update" in answer.detail["error"]


def test_a_refused_call_that_reaches_an_edge_is_not_internal(cloud_run: FakeCloudRun) -> None:
    cloud_run.api.granted = frozenset()
    services = CloudRunServices(services_client(cloud_run.api.url), PROJECT)
    with pytest.raises(gexc.Forbidden) as refused:
        services.get("api-gateway", "us-central1")
    answer = to_https_error(refused.value, "req-1")
    assert answer.code.value == "failed-precondition"
    assert "Permission 'run.services.get' denied" in answer.message
    assert "pack391 bootstrap" in answer.message


def test_monitoring_refuses_over_grpc_without_monitoring_viewer() -> None:
    with FakeGrpcApi("google.monitoring.v3.MetricService") as api:
        api.on("ListTimeSeries", monitoring_v3.ListTimeSeriesRequest,
               monitoring_v3.ListTimeSeriesResponse,
               lambda _r: monitoring_v3.ListTimeSeriesResponse())  # fmt: skip
        client = metric_client(api.target)
        request = monitoring_v3.ListTimeSeriesRequest(name=f"projects/{PROJECT}", filter="x")
        list(client.list_time_series(request=request))  # bootstrap's roles: allowed
        api.granted = granted(Principal.RUNTIME, without=["roles/monitoring.viewer"])
        with pytest.raises(gexc.PermissionDenied) as refused:
            list(client.list_time_series(request=request))
    assert "monitoring.timeSeries.list" in refused.value.message
    assert "google.monitoring.v3.MetricService/ListTimeSeries" in google_apis.called()
