"""Deploy discovery, done the way `firebase deploy` does it.

The Firebase CLI runs the SDK's own manifest server
(``firebase_functions.private.serving``) in the source directory with
``ADMIN_PORT`` set and reads ``GET /__/functions.yaml``. Every later issue adds
its functions to EXPECTED.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from pydantic import BaseModel

import shared.models
from shared import collections
from shared.auth import Role
from shared.thresholds import LOAD_TEST_MAX_SHARDS
from stack.platform.procs import free_port
from stack.platform.scheduler import trigger_for
from tests.conftest import ROOT

CALLABLE = "callable"
TASK_QUEUE = "task queue"
EXPECTED: dict[str, str] = {
    # market soft-launch controls (issue: foundation)
    "pack391_updateMarketControl": CALLABLE,
    "pack391_getMarketControls": CALLABLE,
    "pack391_emergencyPauseMarkets": CALLABLE,
    "pack391_checkMarketAccess": CALLABLE,
    "pack391_syncMarkets": "* * * * *",
    "pack391_releaseMarketAdmissions": CALLABLE,  # frees market places (named or pending)
    # traffic protection (pack391-ddos)
    "pack391_checkRateLimit": CALLABLE,
    "pack391_walletBruteForceShield": CALLABLE,
    "pack391_panicEscalation": CALLABLE,
    "pack391_recordAuthFailure": CALLABLE,
    "pack391_setGeoThrottle": CALLABLE,
    "pack391_getDDoSStats": CALLABLE,
    "pack391_detectDDoS": "* * * * *",
    "pack391_cleanupExpiredBlocks": "0 * * * *",
    "pack391_liftBlock": CALLABLE,
    "pack391_setAllowlist": CALLABLE,
    # auto-scaling engine
    "pack391_initScaling": CALLABLE,
    "pack391_serviceHealthCheck": CALLABLE,
    "pack391_manualScale": CALLABLE,
    "pack391_reportServiceMetrics": CALLABLE,
    "pack391_scaleGuard": "* * * * *",
    # disaster recovery
    "pack391_backupFirestore": "0 * * * *",
    "pack391_verifyBackups": "30 3 * * *",
    "pack391_pollBackupExports": "*/5 * * * *",
    "pack391_getBackupStatus": CALLABLE,
    "pack391_restoreDrill": CALLABLE,
    # zero-downtime deployment guard
    "pack391_preDeployValidator": CALLABLE,
    "pack391_startDeployment": CALLABLE,
    "pack391_monitorDeployment": "* * * * *",
    "pack391_rollbackController": CALLABLE,
    "pack391_getDeploymentStatus": CALLABLE,
    "pack391_controlDeployment": CALLABLE,
    "pack391_pinTraffic": CALLABLE,
    "pack391_reportRevisionMetrics": CALLABLE,
    # ops dashboard
    "pack391_updateLiveMetrics": "* * * * *",
    "pack391_getLiveMetrics": CALLABLE,
    "pack391_getHistoricalMetrics": CALLABLE,
    "pack391_getOpsDashboard": CALLABLE,
    "pack391_getOpsLive": CALLABLE,  # the live console, polled with an etag
    "pack391_getOpsTimeline": CALLABLE,
    "pack391_acknowledgeAlert": CALLABLE,
    "pack391_cleanupMetrics": "30 3 * * *",
    # load testing
    "pack391_runLoadTest": CALLABLE,
    "pack391_getLoadTestResults": CALLABLE,
    "pack391_abortLoadTest": CALLABLE,
    "pack391_cleanupLoadTests": CALLABLE,
    "pack391ExecuteLoadTest": TASK_QUEUE,
    "pack391JudgeDeployment": TASK_QUEUE,
    # service-level objectives and the budgets that act
    "pack391_evaluateSlos": "* * * * *",
    "pack391_getSloStatus": CALLABLE,
    "pack391_liftSloAction": CALLABLE,
}
"""Function name -> "callable", or the unix-cron schedule of a scheduled function."""


DISCOVERY_SETTINGS = (
    "PACK391_REGION",
    "PACK391_VPC_CONNECTOR",
    "PACK391_VPC_EGRESS",
    "PACK391_FRONT_DOOR",
)
"""Read from the environment at discovery (shared/options.py): the fixtures set them."""


@pytest.fixture(scope="module")
def manifest() -> Iterator[dict[str, Any]]:
    yield from _discover({})


@pytest.fixture(scope="module")
def manifest_in_europe() -> Iterator[dict[str, Any]]:
    """Discovery as `firebase deploy` runs it with these values in .env.<project>."""
    yield from _discover(
        {
            "PACK391_REGION": "europe-west1",
            "PACK391_VPC_CONNECTOR": "pack391-redis",
            "PACK391_VPC_EGRESS": "private-ranges-only",
        }
    )


@pytest.fixture(scope="module")
def manifest_behind_load_balancer() -> Iterator[dict[str, Any]]:
    yield from _discover({"PACK391_FRONT_DOOR": "load-balancer"})


@pytest.fixture(scope="module")
def manifest_behind_cloudflare() -> Iterator[dict[str, Any]]:
    yield from _discover({"PACK391_FRONT_DOOR": "Cloudflare"})  # any case, as at run time


def _discover(settings: dict[str, str]) -> Iterator[dict[str, Any]]:
    port = free_port()
    dropped = ("FIRESTORE_EMULATOR_HOST", "REDIS_URL", *DISCOVERY_SETTINGS)
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(settings)
    env["ADMIN_PORT"] = str(port)
    with tempfile.TemporaryFile() as log:
        yield from _serve_manifest(env, port, log)


def _serve_manifest(env: dict[str, str], port: int, log: Any) -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "firebase_functions.private.serving"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                # the first answer imports main: slow on a busy machine
                response = requests.get(
                    f"http://127.0.0.1:{port}/__/functions.yaml", timeout=(2, 60)
                )
                break
            except (requests.ConnectionError, requests.Timeout):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"manifest server did not start:\n{log.read().decode()}")
                time.sleep(0.2)
        assert response.status_code == 200, response.text
        yield yaml.safe_load(response.text)
        requests.get(f"http://127.0.0.1:{port}/__/quitquitquit", timeout=5)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_every_function_is_discovered_with_its_trigger(manifest: dict[str, Any]) -> None:
    endpoints = manifest["endpoints"]
    found = {}
    for name, endpoint in endpoints.items():
        if "callableTrigger" in endpoint:
            found[name] = CALLABLE
        elif "taskQueueTrigger" in endpoint:
            found[name] = TASK_QUEUE
        elif "scheduleTrigger" in endpoint:
            found[name] = endpoint["scheduleTrigger"]["schedule"]
        else:
            found[name] = f"unexpected trigger: {sorted(endpoint)}"
    assert found == EXPECTED


def test_entry_points_and_platform(manifest: dict[str, Any]) -> None:
    for name, endpoint in manifest["endpoints"].items():
        assert endpoint["entryPoint"] == name
        assert endpoint["platform"] == "gcfv2"


def test_schedules_are_valid_cron_in_utc(manifest: dict[str, Any]) -> None:
    for endpoint in manifest["endpoints"].values():
        trigger = endpoint.get("scheduleTrigger")
        if trigger:
            assert trigger["timeZone"] == "Etc/UTC"
            trigger_for(trigger["schedule"], trigger["timeZone"])  # raises when invalid


def test_params_are_declared_with_defaults(manifest: dict[str, Any]) -> None:
    params = {p["name"]: p for p in manifest.get("params", [])}
    assert {
        "REDIS_URL",
        "PACK391_REDIS_TIMEOUT_MS",
        "PACK391_REGION",
        "PACK391_FRONT_DOOR",
        "PACK391_TRUSTED_HOPS",
        "PACK391_COUNTRY_HEADER",
        "PACK391_CLOUDFLARE_RANGES",
        "PACK391_MARKET_SIGNUP_IDENTITY",
        "PACK391_RATE_LIMIT_SHADOW_CLASSES",
        "PACK391_SCALING_BACKEND",
        "PACK391_SCALING_DRY_RUN",
        "PACK391_SCALING_HEALTH_URL_TEMPLATE",
        "PACK391_LOAD_TARGET_ALLOWLIST",
        "PACK391_LOAD_DISPATCHER",
        "PACK391_VPC_CONNECTOR",
        "PACK391_VPC_EGRESS",
        "PACK391_HOT_MIN_INSTANCES",
        "PACK391_MAX_INSTANCES_USER",
        "PACK391_MAX_INSTANCES_OPS",
        "PACK391_MAX_INSTANCES_SCHEDULED",
        "PACK391_ENFORCE_APP_CHECK",
        "PACK391_CLOUDFLARE_ORIGIN_HEADER",
    } <= set(params)
    assert all("default" in p for p in params.values() if p.get("type") != "secret")


def test_backup_key_is_a_secret_bound_to_the_functions_that_use_it(
    manifest: dict[str, Any],
) -> None:
    params = {p["name"]: p for p in manifest.get("params", [])}
    assert params["PACK391_BACKUP_KEY"]["type"] == "secret"
    for name in (
        "pack391_backupFirestore",
        "pack391_verifyBackups",
        "pack391_restoreDrill",
        "pack391_getBackupStatus",  # status builds the store: logical needs the key
        "pack391_pollBackupExports",  # the same
    ):
        secrets = manifest["endpoints"][name]["secretEnvironmentVariables"]
        assert [s["key"] for s in secrets] == ["PACK391_BACKUP_KEY"]


def test_backup_timeouts_fit_the_work(manifest: dict[str, Any]) -> None:
    """The hourly backup only starts the managed export (120 s; 1800 s only
    when the logical backend takes the whole backup inside it), and the export poll
    stops its work at 240 s, inside its 300 s timeout and its 5-minute schedule."""
    endpoints = manifest["endpoints"]
    assert endpoints["pack391_backupFirestore"]["timeoutSeconds"] == (
        '{{ params.PACK391_BACKUP_BACKEND == "logical" ? 1800 : 120 }}'
    )
    assert endpoints["pack391_pollBackupExports"]["timeoutSeconds"] == 300


# Production shape ---------------------------------------------------


def test_every_function_is_deployed_to_the_default_region_without_a_connector(
    manifest: dict[str, Any],
) -> None:
    for name, endpoint in manifest["endpoints"].items():
        assert endpoint["region"] == ["us-central1"], name
        assert "vpc" not in endpoint, name  # empty PACK391_VPC_CONNECTOR: no vpc entry
        # not set_global_options' "gcf_gen1"; the load-test shards ask for a vCPU each
        want = 1 if name == "pack391ExecuteLoadTest" else None
        assert endpoint["cpu"] == want, name


def test_pack391_region_is_the_region_of_every_function(
    manifest_in_europe: dict[str, Any],
) -> None:
    for name, endpoint in manifest_in_europe["endpoints"].items():
        assert endpoint["region"] == ["europe-west1"], name


def test_every_function_reaches_redis_through_the_vpc_connector(
    manifest_in_europe: dict[str, Any],
) -> None:
    for name, endpoint in manifest_in_europe["endpoints"].items():
        vpc = {"connector": "pack391-redis", "egressSettings": "PRIVATE_RANGES_ONLY"}
        assert endpoint["vpc"] == vpc, name


def test_hot_callables_keep_min_instances_from_a_param(manifest: dict[str, Any]) -> None:
    params = {p["name"]: p for p in manifest["params"]}
    assert params["PACK391_HOT_MIN_INSTANCES"]["type"] == "int"
    assert params["PACK391_HOT_MIN_INSTANCES"]["default"] == 0
    hot = {"pack391_checkRateLimit", "pack391_checkMarketAccess"}
    for name, endpoint in manifest["endpoints"].items():
        want = "{{ params.PACK391_HOT_MIN_INSTANCES }}" if name in hot else None
        assert endpoint["minInstances"] == want, name


# A ceiling on the bill -------------------------------------------------------

ORIGIN_SECRET = "PACK391_CLOUDFLARE_ORIGIN_SECRET"


def _roles() -> dict[str, Role]:
    import main
    from shared.edge import edge_spec_of

    specs = {name: edge_spec_of(fn) for name, fn in vars(main).items()}
    return {name: spec.role for name, spec in specs.items() if spec is not None}


def test_every_function_has_a_ceiling_on_its_instances(manifest: dict[str, Any]) -> None:
    params = {p["name"]: p for p in manifest["params"]}
    ceilings = {
        "PACK391_MAX_INSTANCES_USER": params["PACK391_MAX_INSTANCES_USER"],
        "PACK391_MAX_INSTANCES_OPS": params["PACK391_MAX_INSTANCES_OPS"],
        "PACK391_MAX_INSTANCES_SCHEDULED": params["PACK391_MAX_INSTANCES_SCHEDULED"],
    }
    assert all(p["type"] == "int" for p in ceilings.values())
    assert ceilings["PACK391_MAX_INSTANCES_USER"]["default"] == 100
    assert 1 <= ceilings["PACK391_MAX_INSTANCES_OPS"]["default"] <= 5  # operators, not crowds
    assert 1 <= ceilings["PACK391_MAX_INSTANCES_SCHEDULED"]["default"] <= 3
    roles = _roles()
    users = {name for name, role in roles.items() if role in (Role.USER, Role.SERVICE)}
    assert {
        "pack391_checkRateLimit",
        "pack391_checkMarketAccess",
        "pack391_walletBruteForceShield",
        "pack391_panicEscalation",
    } <= users
    found: dict[str, Any] = {}
    for name, endpoint in manifest["endpoints"].items():
        assert endpoint.get("maxInstances") is not None, f"{name}: no ceiling"
        found[name] = endpoint["maxInstances"]
    for name, ceiling in found.items():
        endpoint = manifest["endpoints"][name]
        if "scheduleTrigger" in endpoint or name == "pack391JudgeDeployment":
            want: Any = "{{ params.PACK391_MAX_INSTANCES_SCHEDULED }}"
        elif "taskQueueTrigger" in endpoint:
            want = LOAD_TEST_MAX_SHARDS  # never more instances than shards run at once
        elif name in users:
            want = "{{ params.PACK391_MAX_INSTANCES_USER }}"
        else:
            assert roles[name] in (Role.OPS, Role.ADMIN), name
            want = "{{ params.PACK391_MAX_INSTANCES_OPS }}"
        assert ceiling == want, name


def test_app_check_is_a_param_off_by_default(manifest: dict[str, Any]) -> None:
    params = {p["name"]: p for p in manifest["params"]}
    assert params["PACK391_ENFORCE_APP_CHECK"]["type"] == "boolean"
    assert params["PACK391_ENFORCE_APP_CHECK"]["default"] is False


def test_behind_a_load_balancer_the_callables_take_only_internal_and_its_traffic(
    manifest: dict[str, Any], manifest_behind_load_balancer: dict[str, Any]
) -> None:
    for name, endpoint in manifest_behind_load_balancer["endpoints"].items():
        if "callableTrigger" in endpoint:
            assert endpoint["ingressSettings"] == "ALLOW_INTERNAL_AND_GCLB", name
        else:  # scheduled and task-queue functions: their invokers' IAM, not the public
            assert endpoint.get("ingressSettings") is None, name
    for name, endpoint in manifest["endpoints"].items():  # the default front door: public
        assert endpoint.get("ingressSettings") is None, name


def test_behind_cloudflare_every_callable_binds_the_origin_secret(
    manifest: dict[str, Any], manifest_behind_cloudflare: dict[str, Any]
) -> None:
    params = {p["name"]: p for p in manifest["params"]}
    assert params[ORIGIN_SECRET]["type"] == "secret"
    assert params["PACK391_CLOUDFLARE_ORIGIN_HEADER"]["default"] == "X-Pack391-Origin-Secret"

    def bound(endpoint: dict[str, Any]) -> list[str]:
        return [s["key"] for s in endpoint.get("secretEnvironmentVariables") or []]

    for name, endpoint in manifest_behind_cloudflare["endpoints"].items():
        assert (ORIGIN_SECRET in bound(endpoint)) == ("callableTrigger" in endpoint), name
        assert endpoint.get("ingressSettings") is None, name
    backup = manifest_behind_cloudflare["endpoints"]["pack391_getBackupStatus"]
    assert bound(backup) == ["PACK391_BACKUP_KEY", ORIGIN_SECRET]  # added to its own
    for name, endpoint in manifest["endpoints"].items():  # other modes: not bound
        assert ORIGIN_SECRET not in bound(endpoint), name


SCHEDULER_RETRY: dict[str, dict[str, int]] = {
    # every minute, idempotent per minute: one retry 10 s later, inside the minute
    "pack391_syncMarkets": {
        "retryCount": 1,
        "minBackoffSeconds": 10,
        "maxBackoffSeconds": 10,
        "maxDoublings": 0,
    },
    "pack391_detectDDoS": {
        "retryCount": 1,
        "minBackoffSeconds": 10,
        "maxBackoffSeconds": 10,
        "maxDoublings": 0,
    },
    "pack391_monitorDeployment": {
        "retryCount": 1,
        "minBackoffSeconds": 10,
        "maxBackoffSeconds": 10,
        "maxDoublings": 0,
    },
    "pack391_evaluateSlos": {
        "retryCount": 1,
        "minBackoffSeconds": 10,
        "maxBackoffSeconds": 10,
        "maxDoublings": 0,
    },
    "pack391_updateLiveMetrics": {
        "retryCount": 1,
        "minBackoffSeconds": 10,
        "maxBackoffSeconds": 10,
        "maxDoublings": 0,
    },
    # a retry could take a second scaling step in one minute: never retried
    "pack391_scaleGuard": {"retryCount": 0},
    # every 5 minutes: the next run does what a retry would
    "pack391_pollBackupExports": {"retryCount": 0},
    # hourly
    "pack391_cleanupExpiredBlocks": {
        "retryCount": 3,
        "minBackoffSeconds": 60,
        "maxBackoffSeconds": 600,
        "maxDoublings": 2,
    },
    "pack391_backupFirestore": {
        "retryCount": 2,
        "minBackoffSeconds": 120,
        "maxBackoffSeconds": 600,
        "maxDoublings": 2,
    },
    # daily
    "pack391_verifyBackups": {
        "retryCount": 3,
        "minBackoffSeconds": 300,
        "maxBackoffSeconds": 1800,
        "maxDoublings": 2,
    },
    "pack391_cleanupMetrics": {
        "retryCount": 3,
        "minBackoffSeconds": 300,
        "maxBackoffSeconds": 1800,
        "maxDoublings": 2,
    },
}
"""Cloud Scheduler retry settings per scheduled function (the why: beside each decorator)."""


def test_every_scheduled_function_has_its_chosen_retry_settings(
    manifest: dict[str, Any],
) -> None:
    found = {
        name: endpoint["scheduleTrigger"]["retryConfig"]
        for name, endpoint in manifest["endpoints"].items()
        if "scheduleTrigger" in endpoint
    }
    assert found == SCHEDULER_RETRY


def _models_with_expire_at() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for info in pkgutil.iter_modules(shared.models.__path__):
        module = importlib.import_module(f"shared.models.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
                and "expire_at" in value.model_fields
            ):
                found.append(value)
    return found


def test_every_collection_that_writes_expire_at_has_a_ttl_policy() -> None:
    """Each document model with ``expire_at`` names its collection first in its docstring
    (``pack391_x/{id}``); that collection needs a TTL field override on the alias."""
    overrides = json.loads((ROOT / "firestore.indexes.json").read_text())["fieldOverrides"]
    ttl = {(o["collectionGroup"], o["fieldPath"]) for o in overrides if o.get("ttl") is True}
    # Firestore wants an indexes list on every override ([]: the TTL field is not indexed)
    assert all(isinstance(o.get("indexes"), list) for o in overrides)
    known = {v for v in vars(collections).values() if isinstance(v, str)}
    models = _models_with_expire_at()
    assert len(models) >= 4  # scaling decisions and alerts, ops history, load runs
    for model in models:
        match = re.search(r"``([A-Za-z0-9_]+)/", model.__doc__ or "")
        assert match is not None, f"{model.__name__}: docstring names no collection"
        collection = match.group(1)
        assert collection in known, f"{model.__name__}: {collection} not in shared.collections"
        alias = model.model_fields["expire_at"].alias or "expire_at"
        assert (collection, alias) in ttl, f"{collection}.{alias} has no TTL override"
