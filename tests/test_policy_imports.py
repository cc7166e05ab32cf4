"""Every area's pure policy imports no client library: ``import functions.<area>.policy``
(every module of it, when it is a package of one module per concern) in a fresh
interpreter loads no Redis, gRPC, Google Cloud, Firebase or HTTP client (the
package faces are empty, the domain errors import no driver). A benchmark's simulation
or a test of a policy pays only for the policy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

AREAS = ["scaling", "ddos", "market", "ops", "backup", "deploy_guard", "load"]
PURE = [*(f"functions.{area}.policy" for area in AREAS), "functions.ops.timeline"]
"""Every area's policy, and the other pure modules (the ops timeline)."""

CLIENTS = (
    "redis",
    "grpc",
    "firebase_admin",
    "firebase_functions",
    "requests",
    "urllib3",
    "aiohttp",
    "google.api_core",
    "google.auth",
    "google.cloud.",  # google and google.cloud themselves are namespace packages a .pth loads
    "google.protobuf",
)

PROBE = """\
import importlib, json, pkgutil, sys
before = set(sys.modules)
policy = importlib.import_module("{module}")
for sub in pkgutil.iter_modules(getattr(policy, "__path__", [])):  # a package: every module
    importlib.import_module(f"{module}.{{sub.name}}")
print(json.dumps({{"before": sorted(before), "after": sorted(sys.modules)}}))
"""


@pytest.mark.parametrize("module", PURE)
def test_a_policy_loads_no_client_library(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    loaded = set(seen["after"]) - set(seen["before"])
    clients = sorted(
        m for m in loaded if m.startswith(CLIENTS) or m in {c.rstrip(".") for c in CLIENTS}
    )
    assert clients == [], f"{module} loads {clients[:10]}"
    assert len(loaded) < 400, f"{module} loads {len(loaded)} modules"
