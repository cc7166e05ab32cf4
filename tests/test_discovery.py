"""Deploy discovery, done the way `firebase deploy` does it.

The Firebase CLI runs the SDK's own manifest server
(``firebase_functions.private.serving``) in the source directory with
``ADMIN_PORT`` set and reads ``GET /__/functions.yaml``. Every later issue adds
its functions to EXPECTED.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml

from stack.procs import free_port
from stack.scheduler import trigger_for
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
    "pack391_releaseMarketAdmissions": CALLABLE,  # issue 11, part 5
    # traffic protection (pack391-ddos)
    "pack391_checkRateLimit": CALLABLE,
    "pack391_walletBruteForceShield": CALLABLE,
    "pack391_panicEscalation": CALLABLE,
    "pack391_setGeoThrottle": CALLABLE,
    "pack391_getDDoSStats": CALLABLE,
    "pack391_detectDDoS": "* * * * *",
    "pack391_cleanupExpiredBlocks": "0 * * * *",
    "pack391_liftBlock": CALLABLE,
    "pack391_setAllowlist": CALLABLE,
    # auto-scaling engine (issue 4)
    "pack391_initScaling": CALLABLE,
    "pack391_serviceHealthCheck": CALLABLE,
    "pack391_manualScale": CALLABLE,
    "pack391_reportServiceMetrics": CALLABLE,
    "pack391_scaleGuard": "* * * * *",
    # disaster recovery (issue 8)
    "pack391_backupFirestore": "0 * * * *",
    "pack391_verifyBackups": "30 3 * * *",
    "pack391_getBackupStatus": CALLABLE,
    "pack391_restoreDrill": CALLABLE,
    # zero-downtime deployment guard (issue 6)
    "pack391_preDeployValidator": CALLABLE,
    "pack391_startDeployment": CALLABLE,
    "pack391_monitorDeployment": "* * * * *",
    "pack391_rollbackController": CALLABLE,
    "pack391_getDeploymentStatus": CALLABLE,
    "pack391_controlDeployment": CALLABLE,
    "pack391_pinTraffic": CALLABLE,
    "pack391_reportRevisionMetrics": CALLABLE,
    # ops dashboard (issue 7)
    "pack391_updateLiveMetrics": "* * * * *",
    "pack391_getLiveMetrics": CALLABLE,
    "pack391_getHistoricalMetrics": CALLABLE,
    "pack391_getOpsDashboard": CALLABLE,
    "pack391_acknowledgeAlert": CALLABLE,
    "pack391_cleanupMetrics": "30 3 * * *",
    # load testing (issue 5)
    "pack391_runLoadTest": CALLABLE,
    "pack391_getLoadTestResults": CALLABLE,
    "pack391_abortLoadTest": CALLABLE,
    "pack391_cleanupLoadTests": CALLABLE,
    "pack391_executeLoadTest": TASK_QUEUE,
}
"""Function name -> "callable", or the unix-cron schedule of a scheduled function."""


@pytest.fixture(scope="module")
def manifest() -> Iterator[dict[str, Any]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("FIRESTORE_EMULATOR_HOST", "REDIS_URL")}
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
                response = requests.get(f"http://127.0.0.1:{port}/__/functions.yaml", timeout=2)
                break
            except requests.ConnectionError:
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
    } <= set(params)
    assert all("default" in p for p in params.values() if p.get("type") != "secret")


def test_backup_key_is_a_secret_bound_to_the_functions_that_use_it(
    manifest: dict[str, Any],
) -> None:
    params = {p["name"]: p for p in manifest.get("params", [])}
    assert params["PACK391_BACKUP_KEY"]["type"] == "secret"
    for name in ("pack391_backupFirestore", "pack391_verifyBackups", "pack391_restoreDrill"):
        secrets = manifest["endpoints"][name]["secretEnvironmentVariables"]
        assert [s["key"] for s in secrets] == ["PACK391_BACKUP_KEY"]
