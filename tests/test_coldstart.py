"""Cold start: a function instance imports only its own function's area.

Cloud Functions gen2 and the Firebase emulator start each instance with
``FUNCTION_TARGET`` set to its entry point; ``main.py`` then imports only the module of
``main.FUNCTION_AREAS[target]``. Without it (``firebase deploy``'s discovery, the local
stack) every function is imported, as ``tests/test_discovery.py`` expects. Each case runs
``import main`` in a fresh interpreter, since what matters is what a new process loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.test_discovery import EXPECTED

HEAVY = [
    "google.cloud.run_v2",
    "google.cloud.monitoring_v3",
    "google.cloud.firestore_admin_v1",
    "google.cloud.firestore_v1",
    "google.api_core.exceptions",
    "grpc",
    "aiohttp",
    "cryptography.hazmat.primitives.ciphers.aead",
    "firebase_admin.functions",
]
"""Clients a rate-limit or market-access instance must not load at start: Cloud Run,
Monitoring, Firestore Admin (scaling, deploy guard, backup), the Firestore client and
grpc (read later, off the request path or only when a user is admitted), aiohttp (the
load engine), the backup's AES-GCM, the task-queue client."""

IMPORT_MAIN = """\
import json, sys
import main
print(json.dumps({
    "endpoints": sorted(n for n, v in vars(main).items() if hasattr(v, "__firebase_endpoint__")),
    "modules": sorted(sys.modules),
}))
"""

ROUTING = """\
import importlib, json, os, sys

def endpoints(module):
    return sorted(n for n, v in vars(module).items() if hasattr(v, "__firebase_endpoint__"))

def reimport(**env):
    for key in ("FUNCTION_TARGET", "ADMIN_PORT"):
        os.environ.pop(key, None)
    os.environ.update(env)
    del sys.modules["main"]
    return importlib.import_module("main")

import main
seen = {"areas": main.FUNCTION_AREAS, "unset": endpoints(main), "targets": {}}
for name, area in sorted(main.FUNCTION_AREAS.items()):
    module = reimport(FUNCTION_TARGET=name)
    fn = getattr(module, name, None)
    seen["targets"][name] = {
        "endpoints": endpoints(module),
        "entryPoint": getattr(getattr(fn, "__firebase_endpoint__", None), "entryPoint", None),
        "defined_in": getattr(getattr(fn, "__wrapped__", fn), "__module__", None),
    }
seen["unknown"] = endpoints(reimport(FUNCTION_TARGET="pack391_noSuchFunction"))
seen["discovery"] = endpoints(reimport(FUNCTION_TARGET="pack391_checkRateLimit", ADMIN_PORT="1"))
print(json.dumps(seen))
"""
"""In one interpreter (``main`` re-imported per case; the area modules stay loaded, so
this checks the routing, not what is loaded): the full import, every FUNCTION_TARGET, an
unknown one, and discovery (``ADMIN_PORT``) with a FUNCTION_TARGET left over."""


@pytest.fixture(scope="module")
def routing() -> tuple[dict[str, Any], str]:
    return run_python(ROUTING)


@pytest.fixture(scope="module")
def rate_limit_instance() -> dict[str, Any]:
    loaded: dict[str, Any] = run_python(IMPORT_MAIN, FUNCTION_TARGET="pack391_checkRateLimit")[0]
    return loaded


def run_python(code: str, **env: str) -> tuple[Any, str]:
    """Run ``code`` in a fresh interpreter in the source directory with ``env`` on top of
    an environment without FUNCTION_TARGET or ADMIN_PORT; (its JSON output, stderr)."""
    child_env = {k: v for k, v in os.environ.items() if k not in ("FUNCTION_TARGET", "ADMIN_PORT")}
    child_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_a_rate_limit_instance_loads_none_of_the_heavy_clients(
    rate_limit_instance: dict[str, Any],
) -> None:
    assert rate_limit_instance["endpoints"] == ["pack391_checkRateLimit"]
    modules = set(rate_limit_instance["modules"])
    assert [m for m in HEAVY if m in modules] == []
    assert not any(m.startswith(("functions.backup", "functions.scaling")) for m in modules)


def test_a_market_access_instance_loads_none_of_the_heavy_clients() -> None:
    loaded, _ = run_python(IMPORT_MAIN, FUNCTION_TARGET="pack391_checkMarketAccess")
    assert loaded["endpoints"] == ["pack391_checkMarketAccess"]
    assert [m for m in HEAVY if m in set(loaded["modules"])] == []


def test_cryptography_comes_only_with_firebase_admin(rate_limit_instance: dict[str, Any]) -> None:
    """``cryptography`` itself is loaded by firebase-admin (``firebase_admin.credentials``
    -> ``google.oauth2.service_account`` -> ``google.auth.crypt``), which ``main.py`` needs
    at import time to verify ID tokens: the function adds no cryptography module of its
    own (the backup's AES-GCM, HKDF)."""
    admin, _ = run_python(
        "import json, sys, firebase_admin; print(json.dumps({'modules': sorted(sys.modules)}))"
    )

    def crypto(modules: list[str]) -> set[str]:
        return {m for m in modules if m.split(".")[0] == "cryptography"}

    assert crypto(rate_limit_instance["modules"]) <= crypto(admin["modules"])


def test_without_function_target_every_function_is_imported(
    routing: tuple[dict[str, Any], str],
) -> None:
    assert set(routing[0]["unset"]) == set(EXPECTED)


def test_every_function_is_reachable_by_its_function_target(
    routing: tuple[dict[str, Any], str],
) -> None:
    seen = routing[0]
    assert set(seen["areas"]) == set(EXPECTED)
    for name, found in seen["targets"].items():
        assert found["endpoints"] == [name], name
        assert found["entryPoint"] == name, name
        assert found["defined_in"] == seen["areas"][name], name


def test_an_unknown_function_target_imports_everything_and_says_so(
    routing: tuple[dict[str, Any], str],
) -> None:
    seen, stderr = routing
    assert set(seen["unknown"]) == set(EXPECTED)
    assert "FUNCTION_TARGET='pack391_noSuchFunction'" in stderr


def test_deploy_discovery_sees_every_function_whatever_function_target_says(
    routing: tuple[dict[str, Any], str],
) -> None:
    """The Firebase CLI's manifest server (``ADMIN_PORT``) must list every function: a
    ``FUNCTION_TARGET`` left in the deploying shell must not make a deploy drop the rest."""
    assert set(routing[0]["discovery"]) == set(EXPECTED)
