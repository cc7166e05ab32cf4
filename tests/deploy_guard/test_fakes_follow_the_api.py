"""The Cloud Run and Cloud Functions fakes behave as Google's APIs do where the deploy
guard depends on it: one test per behaviour, each naming the documentation it follows
(the fakes' docstrings quote it). Driven through the real ``run_v2`` client library (REST
transport) and, for ``firebase deploy``, the request shape firebase-tools sends."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from google.cloud import run_v2

from shared.gcp.cloudrun import (
    CloudRunServices,
    function_service_id,
    services_client,
    serving_shares,
    short_revision,
)
from stack.cli import main as cli_main
from tests.fakes.cloud_functions import FakeCloudFunctions, firebase_deploy
from tests.fakes.cloud_run import FakeCloudRun
from tests.fakes.http_api import FakeHttpApi

PROJECT = "demo-pack391-test"
REGION = "us-central1"
SERVICE_ID = "pack391-checkratelimit"
NAME = f"projects/{PROJECT}/locations/{REGION}/services/{SERVICE_ID}"
REV = int(run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION)
LATEST = int(run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST)


@pytest.fixture
def run_api() -> Iterator[tuple[FakeCloudRun, CloudRunServices]]:
    with FakeHttpApi() as api:
        fake = FakeCloudRun(api)
        fake.add_service(
            NAME,
            latestReadyRevision=f"{NAME}/revisions/{SERVICE_ID}-00001-abc",
            template={"containers": [{"image": "gcr.io/p/app:1"}]},
            traffic=[{"type": LATEST, "percent": 100}],
        )
        yield fake, CloudRunServices(services_client(api.url), PROJECT)


def test_a_function_runs_as_its_lower_cased_hyphenated_service() -> None:
    assert function_service_id("pack391_checkRateLimit") == SERVICE_ID
    assert function_service_id("pack391ExecuteLoadTest") == "pack391executeloadtest"


def test_firebase_deploy_moves_all_traffic_over_a_pinned_split(
    run_api: tuple[FakeCloudRun, CloudRunServices],
) -> None:
    """Cloud Functions v2 ``ServiceConfig.allTrafficOnLatestRevision``: "when set to true,
    the revision being deployed will serve 100% of traffic, ignoring any traffic split
    settings"; firebase-tools leaves it out, which is true."""
    fake, services = run_api
    services.set_traffic(SERVICE_ID, REGION, {f"{SERVICE_ID}-00001-abc": 100}, None, 10)
    with FakeHttpApi() as functions_api:
        FakeCloudFunctions(functions_api, fake)
        new = firebase_deploy(functions_api, PROJECT, REGION, "pack391_checkRateLimit")
    assert new != f"{SERVICE_ID}-00001-abc"
    assert serving_shares(services.get(SERVICE_ID, REGION)) == {new: 100}
    assert fake.services[NAME]["traffic"] == [{"type": LATEST, "percent": 100}]


def test_a_functions_update_that_asks_keeps_the_split(
    run_api: tuple[FakeCloudRun, CloudRunServices],
) -> None:
    """``allTrafficOnLatestRevision: false``: the traffic settings stay."""
    fake, services = run_api
    services.set_traffic(SERVICE_ID, REGION, {f"{SERVICE_ID}-00001-abc": 100}, None, 10)
    with FakeHttpApi() as functions_api:
        FakeCloudFunctions(functions_api, fake)
        name = f"projects/{PROJECT}/locations/{REGION}/functions/pack391_checkRateLimit"
        import requests

        answer = requests.patch(
            f"{functions_api.url}/v2/{name}",
            params={"updateMask": "serviceConfig.allTrafficOnLatestRevision"},
            json={"name": name, "serviceConfig": {"allTrafficOnLatestRevision": False}},
            timeout=10,
        )
        assert answer.status_code == 200
    assert fake.serving(NAME) == {f"{SERVICE_ID}-00001-abc": 100}
    assert len(fake.revisions[NAME]) == 2  # the revision exists, serving nothing


def test_a_template_change_makes_a_revision_that_follows_latest(
    run_api: tuple[FakeCloudRun, CloudRunServices],
) -> None:
    """Each deployment (template change) creates a revision; a LATEST target serves it
    (https://cloud.google.com/run/docs/managing/revisions)."""
    fake, services = run_api
    body = run_v2.Service(
        name=NAME, template=run_v2.RevisionTemplate(containers=[run_v2.Container(image="x:2")])
    )
    request = run_v2.UpdateServiceRequest(service=body, update_mask={"paths": ["template"]})
    operation = services._client.update_service(request=request)
    updated = operation.result(timeout=10)  # type: ignore[no-untyped-call]
    new = short_revision(updated.latest_ready_revision)
    assert new == f"{SERVICE_ID}-00002-{fake.revisions[NAME][-1].rsplit('-', 1)[1]}"
    assert serving_shares(updated) == {new: 100}


def test_a_pinned_split_keeps_a_new_revision_at_zero(
    run_api: tuple[FakeCloudRun, CloudRunServices],
) -> None:
    """ "If you ... assigned traffic to a previous revision, all subsequent deployments use
    that traffic split pattern" (rollouts-rollbacks-traffic-migration)."""
    fake, services = run_api
    services.set_traffic(SERVICE_ID, REGION, {f"{SERVICE_ID}-00001-abc": 100}, None, 10)
    new = fake.deploy_template(NAME, "x:2")
    assert fake.serving(NAME) == {f"{SERVICE_ID}-00001-abc": 100}
    assert fake.services[NAME]["latestReadyRevision"].endswith(new)


def test_deploy_image_is_no_traffic_even_when_traffic_follows_latest(
    run_api: tuple[FakeCloudRun, CloudRunServices],
) -> None:
    """``gcloud run deploy --no-traffic`` "assigns any traffic assigned to the LATEST
    revision to the specific revision bound to LATEST before the deployment": the client
    library does the same in one update (template + explicit targets, with the etag)."""
    fake, services = run_api
    updated, new = services.deploy_image(SERVICE_ID, REGION, "gcr.io/p/app:2", None, 10)
    assert new != f"{SERVICE_ID}-00001-abc"
    assert serving_shares(updated) == {f"{SERVICE_ID}-00001-abc": 100}
    patch = fake.api.received("PATCH")[-1]
    assert patch.query["updateMask"] == ["template,traffic"]
    assert patch.body["traffic"] == [
        {"type": REV, "revision": f"{SERVICE_ID}-00001-abc", "percent": 100}
    ]
    assert patch.body["etag"] == "etag-1"
    assert patch.body["template"]["containers"][0]["image"] == "gcr.io/p/app:2"


def test_a_named_revision_and_the_cli(
    run_api: tuple[FakeCloudRun, CloudRunServices], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = run_api
    argv = [
        "deploy", "run-revision", SERVICE_ID, "--image", "gcr.io/p/app:3", "--revision",
        f"{SERVICE_ID}-v3", "--project", PROJECT, "--region", REGION, "--endpoint", fake.api.url,
    ]  # fmt: skip
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert f'"revision": "{SERVICE_ID}-v3"' in out
    assert fake.serving(NAME) == {f"{SERVICE_ID}-00001-abc": 100}


def test_an_update_is_a_long_running_operation(
    run_api: tuple[FakeCloudRun, CloudRunServices],
) -> None:
    """UpdateService returns an Operation: until it is done the service's status (latest
    ready revision, traffic statuses) is the old one; a caller's deadline is a
    ``TimeoutError`` (projects.locations.services/patch, "Returns: Operation")."""
    fake, services = run_api
    fake.op_seconds = 2.0
    target = {f"{SERVICE_ID}-00001-abc": 100}
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        services.set_traffic(SERVICE_ID, REGION, target, None, 0.5)
    assert time.monotonic() - started < 2.0
    assert fake.services[NAME]["traffic"][0]["type"] == REV  # the spec is written ...
    assert fake.services[NAME]["trafficStatuses"] == [  # ... the status is not, yet
        {"type": LATEST, "percent": 100, "revision": f"{SERVICE_ID}-00001-abc"}
    ]
    time.sleep(2.0)
    assert serving_shares(services.get(SERVICE_ID, REGION)) == target
