"""The pure core of ``shared/`` loads no client library when it runs.

import-linter's ``shared-core-pure`` contract sees the imports of our own code, and an
external package only by its name: it cannot see that ``firebase_functions.options``
loads firebase-admin and google-auth (which is why ``shared.options`` sits with the edge).
So each core module is also imported in a fresh interpreter here, and what it loaded is
checked: no Redis, gRPC, Google Cloud, Firebase Admin or HTTP client, and of the Firebase
Functions SDK only ``params`` (the declarations of settings, in ``shared.config``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CORE = [
    "shared.auth",
    "shared.clock",
    "shared.collections",
    "shared.config",
    "shared.countries",
    "shared.errors",
    "shared.models.alerts",
    "shared.models.audit",
    "shared.models.backup",
    "shared.models.ddos",
    "shared.models.deploy",
    "shared.models.load",
    "shared.models.market",
    "shared.models.ops",
    "shared.models.scaling",
    "shared.models.slo",
    "shared.thresholds",
]

CLIENTS = (
    "redis",
    "grpc",
    "firebase_admin",
    "requests",
    "urllib3",
    "aiohttp",
    "flask",
    "google.api_core",
    "google.auth",
    "google.cloud.",  # google and google.cloud themselves are namespace packages a .pth loads
    "google.protobuf",
)
SDK_ALLOWED = {"firebase_functions", "firebase_functions.params"}

PROBE = """\
import json, sys
before = set(sys.modules)
import {module}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_loads_no_client_library(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    clients = sorted(
        m for m in loaded if m.startswith(CLIENTS) or m in {c.rstrip(".") for c in CLIENTS}
    )
    assert clients == [], f"{module} loads {clients[:10]}"
    sdk = sorted(m for m in loaded if m.startswith("firebase_functions") and m not in SDK_ALLOWED)
    assert sdk == [], f"{module} loads {sdk[:10]}"


def test_the_thresholds_load_only_the_standard_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module="shared.thresholds")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ours = {m for m in json.loads(done.stdout) if m.split(".")[0] not in sys.stdlib_module_names}
    assert ours == {"shared", "shared.thresholds"} | {
        f"shared.thresholds.{m}"
        for m in ("backup", "common", "ddos", "deploy", "load", "market", "ops", "scaling", "slo")
    }
