"""Production fan-out: one Cloud Tasks task per shard, through firebase-admin's real
task-queue client pointed (``CLOUD_TASKS_EMULATOR_HOST``) at a local fake of the API."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any, cast

import firebase_admin
import pytest

from functions.load.edges import pack391ExecuteLoadTest
from functions.load.gcp import TASK_FUNCTION, TaskQueueDispatcher
from tests.fakes.http_api import FakeHttpApi, Recorded


@pytest.fixture
def tasks_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHttpApi]:
    with FakeHttpApi() as api:

        def created(req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
            return 200, {"task": {"name": f"/{m.group('queue')}/tasks/t{len(api.requests)}"}}

        api.on("POST", r"/(?P<queue>projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks", created)
        monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", api.url.removeprefix("http://"))
        yield api


def test_one_task_per_shard_to_the_task_queue_function(tasks_api: FakeHttpApi) -> None:
    app = firebase_admin.initialize_app(options={"projectId": "demo-tasks"}, name="tasks-test")
    try:
        TaskQueueDispatcher("europe-west1", app=app).dispatch("run-123456", 3, 1_800_000_000.5)
    finally:
        firebase_admin.delete_app(app)
    posted = tasks_api.received("POST")
    assert [r.path for r in posted] == [
        "/projects/demo-tasks/locations/europe-west1/queues/pack391ExecuteLoadTest/tasks"
    ] * 3
    bodies = [json.loads(base64.b64decode(r.body["task"]["httpRequest"]["body"])) for r in posted]
    assert bodies == [
        {"data": {"runId": "run-123456", "shard": k, "startAt": 1_800_000_000.5}} for k in range(3)
    ]
    # Cloud Tasks' default dispatch deadline (10 min) would cut off a run allowed 25 min
    assert {r.body["task"].get("dispatchDeadline") for r in posted} == {"1800s"}


def test_the_task_function_is_declared_for_the_queue() -> None:
    endpoint: Any = cast(Any, pack391ExecuteLoadTest).__firebase_endpoint__
    trigger = endpoint.taskQueueTrigger
    assert trigger["retryConfig"]["maxAttempts"] == 1
    assert endpoint.timeoutSeconds == 1800
    # one shard per instance on a vCPU of its own, and room for every shard at once
    assert (endpoint.concurrency, endpoint.cpu) == (1, 1)
    assert endpoint.maxInstances >= 64


def test_the_queue_id_is_legal_and_names_the_task_function() -> None:
    # Cloud Tasks (and the Firebase CLI's emulator) take queue ids of letters, digits and
    # hyphens only; the SDK uses the function's name as its queue id.
    assert re.fullmatch(r"[A-Za-z0-9-]{1,100}", TASK_FUNCTION)
    assert TASK_FUNCTION.startswith("pack391")
    endpoint: Any = cast(Any, pack391ExecuteLoadTest).__firebase_endpoint__
    assert endpoint.entryPoint == TASK_FUNCTION
