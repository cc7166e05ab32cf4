"""The bundle under the real Firebase CLI: ``firebase emulators:start``.

The slow test, ``test_firebase_cli_emulators_end_to_end`` (a minute or two on a busy
two-core machine), starts firebase-tools 15 from ``tools/node_modules`` with the functions,
Firestore, Auth, Pub/Sub and Cloud Tasks emulators on free ports, in a temporary copy of
the project (symlinks to the sources; firebase.json with its ``emulators`` ports replaced;
the shipped ``.env.local`` pointed at a private redis-server; ``.secret.local`` made from
``.secret.local.example``), and calls it as an app does, through the official Firebase JS
SDK (``tools/emulator-client.mjs``, beside the node_modules it imports). Java 21, the
Firestore and the Pub/Sub emulators
come from this machine (:mod:`tests.firebase_cli.environment`); nothing is downloaded.

Anything missing FAILS the test with the reason (tests/needs.py);
``PACK391_SKIP_FIREBASE_CLI=1`` turns that into a skip, with a loud warning on stderr.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.targets import minimal_app
from functions.backup.archive import BackupKey
from functions.backup.wiring import reset_backup_service
from functions.load.gcp import TASK_FUNCTION
from shared import collections
from shared.firestore import get_db
from stack.aioserve import served_aiohttp
from stack.platform import datastores, procs
from stack.platform.scheduler import scheduler_headers
from stack.sdk_private import declared_params
from tests.conftest import ROOT, Caller
from tests.firebase_cli.environment import (
    FIREBASE_CLI,
    CliUnavailable,
    cli_environment,
    manifest_text,
    node_and_cli,
)
from tests.needs import missing
from tests.plugins.firestore_queries import ENV as QUERY_LOG_ENV

PROJECT = "demo-pack391-cli"
"""A ``demo-`` project (never reaches Google), not the README's ``demo-avalo``: a
developer's own emulators for that project may be running on this machine."""
REGION = "us-central1"
EMULATORS = ("functions", "firestore", "auth", "pubsub", "tasks")
ENV_FILE = ".env.local"
SECRET_TEMPLATE = ".secret.local.example"
CLIENT = ROOT / "tools" / "emulator-client.mjs"
"""The JS SDK client; in tools/ so that Node resolves ``firebase`` from tools/node_modules."""
NODE_TOOLS = ("tools",)
"""The Node tools (the CLI, the JS SDKs), in ``tools/``: firebase-tools takes any functions
source with a ``package.json`` for Node code and refuses ``runtime: python311``
("Unexpected runtime python311"): see :func:`test_the_functions_source_holds_no_package_json`."""
NOT_LINKED = {
    ".git", ".github", ".ci", ".local", ".firebaserc", "firebase.json", *NODE_TOOLS,
    "tests", "bench", "docs", "hosting",
}  # fmt: skip
"""Top-level entries of the project the temporary copy does not link (every ``.env*`` and
``.secret*`` file is left out too: the copy has its own)."""
START_TIMEOUT_SEC = 150.0
LOAD_TEST_TIMEOUT_SEC = 90.0


def env_file_values(text: str) -> dict[str, str]:
    """KEY=value lines of a dotenv file (comments and blank lines skipped)."""
    values = {}
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            key, sep, value = stripped.partition("=")
            assert sep, f"not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


def with_values(text: str, overrides: dict[str, str]) -> str:
    """The dotenv text with the values of ``overrides`` replaced (each key must be there)."""
    lines = text.splitlines()
    for key, value in overrides.items():
        at = [i for i, line in enumerate(lines) if line.startswith(f"{key}=")]
        assert len(at) == 1, f"{key} is not in the env file exactly once"
        lines[at[0]] = f"{key}={value}"
    return "\n".join(lines) + "\n"


def new_backup_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class Project:
    """The temporary project the CLI runs in."""

    dir: Path
    ports: dict[str, int]
    backup_key: str


def make_project(into: Path, redis_url: str, backups: Path) -> Project:
    for entry in ROOT.iterdir():
        name = entry.name
        if name in NOT_LINKED or name.startswith((".env", ".secret")) or name.endswith("cache"):
            continue
        if name.endswith((".log", ".egg-info")):
            continue
        (into / name).symlink_to(entry)
    # firebase.json: the project's own, emulators on free ports, what the emulators need
    config = json.loads((ROOT / "firebase.json").read_text())
    emulators: dict[str, Any] = dict(config["emulators"])
    ports = {name: procs.free_port() for name in (*EMULATORS, "hub", "logging", "websocket")}
    for name in (*EMULATORS, "hub", "logging"):
        emulators[name] = {**emulators.get(name, {}), "host": "127.0.0.1", "port": ports[name]}
    emulators["firestore"]["websocketPort"] = ports["websocket"]
    emulators["ui"] = {"enabled": False}
    copy = {
        "functions": config["functions"],
        "firestore": {"rules": config["firestore"]["rules"]},
        "emulators": emulators,
    }
    (into / "firebase.json").write_text(json.dumps(copy, indent=2))
    # .env.local: the shipped one, pointed at this test's redis-server and backup directory
    text = (ROOT / ENV_FILE).read_text()
    overrides = {
        "REDIS_URL": redis_url,
        "PACK391_REDIS_TIMEOUT_MS": "2000",  # a busy two-core test machine
        "PACK391_BACKUP_LOCAL_ROOT": str(backups),
    }
    (into / ENV_FILE).write_text(with_values(text, overrides))
    # .secret.local: the template with a fresh key, as the README says to make it
    key = new_backup_key()
    template = (ROOT / SECRET_TEMPLATE).read_text()
    (into / ".secret.local").write_text(with_values(template, {"PACK391_BACKUP_KEY": key}))
    return Project(into, ports, key)


# ------------------------------------------------------------------ the running CLI


@dataclass(frozen=True)
class RunningCli:
    project: Project
    child: procs.Child
    load_target: str
    node: str
    start_sec: float
    """How long `emulators:start` took to say it was ready."""
    warm_sec: float
    """How long the first round of :func:`_warm_firestore` took."""

    @property
    def log(self) -> str:
        return self.child.log_path.read_text(errors="replace")

    def trigger_url(self, name: str) -> str:
        """Where the Functions emulator takes a scheduled function's run (DESIGN.md)."""
        port = self.project.ports["functions"]
        return f"http://127.0.0.1:{port}/functions/projects/{PROJECT}/triggers/{REGION}-{name}-0"


WARM_ROUNDS = 3
"""Requests that warm the CLI's Firestore emulator before the client runs (see
:func:`_warm_firestore`)."""


def _warm_firestore(port: int) -> float:
    """A write, a read, a query and a count against the CLI's fresh Firestore emulator,
    :data:`WARM_ROUNDS` times, before the app's client calls anything. A JVM's first
    requests are interpreted, not compiled: on a busy two-core machine the client's first
    ops call, the first to read this Firestore, failed (most likely past its 10 s budget:
    the test did not print the error then; it does now). Production's Firestore is warm,
    so the functions meet a warm one here too. Returns the first round's seconds (printed
    with the test's timings)."""
    base = f"http://127.0.0.1:{port}/v1/projects/{PROJECT}/databases/(default)/documents"
    headers = {"Authorization": "Bearer owner"}
    query = {"structuredQuery": {"from": [{"collectionId": "pack391_warmup"}], "limit": 5}}
    first = 0.0
    for round_ in range(WARM_ROUNDS):
        started = time.monotonic()
        doc = f"{base}/pack391_warmup/round-{round_}"
        fields = {"fields": {"round": {"integerValue": str(round_)}}}
        requests.patch(doc, json=fields, headers=headers, timeout=60).raise_for_status()
        requests.get(doc, headers=headers, timeout=60).raise_for_status()
        requests.post(
            f"{base}:runQuery", json=query, headers=headers, timeout=60
        ).raise_for_status()
        count = {
            "structuredAggregationQuery": {
                **query,
                "aggregations": [{"alias": "n", "count": {}}],
            }
        }
        requests.post(
            f"{base}:runAggregationQuery", json=count, headers=headers, timeout=60
        ).raise_for_status()
        requests.delete(doc, headers=headers, timeout=60).raise_for_status()
        first = first or time.monotonic() - started
    return first


def _unavailable(config: pytest.Config, reason: str) -> None:
    missing(config, "FIREBASE_CLI", f"the Firebase CLI test cannot run: {reason}")


def _wait_ready(child: procs.Child) -> float:
    started = time.monotonic()
    deadline = started + START_TIMEOUT_SEC
    while time.monotonic() < deadline:
        log = child.log_path.read_text(errors="replace")
        if "All emulators ready" in log:
            return time.monotonic() - started
        if child.process.poll() is not None:
            pytest.fail(f"firebase emulators:start exited ({child.process.returncode}):\n{log}")
        time.sleep(0.5)
    pytest.fail(
        f"firebase emulators:start not ready in {START_TIMEOUT_SEC:.0f}s:\n{child.log_tail(80)}"
    )


@pytest.fixture(scope="module")
def firebase_cli(request: pytest.FixtureRequest) -> Iterator[RunningCli]:
    base = Path(tempfile.mkdtemp(prefix="pack391-firebase-cli-"))
    tools = base / ".tools"  # dot-directories: the CLI's file watcher ignores them
    try:
        node = node_and_cli()
        needs = cli_environment(tools)
    except CliUnavailable as exc:
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(request.config, str(exc))
        raise  # not reached: _unavailable skips or fails
    children: list[procs.Child] = []
    try:
        redis_child, redis_url = datastores.start_redis(base / ".logs")
        children.append(redis_child)
        project = make_project(base, redis_url, base / ".backups")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PACK391_", "FIREBASE_", "FIRESTORE_", "GOOGLE_", "CLOUDSDK_"))
            and k not in ("REDIS_URL", "GCLOUD_PROJECT", "FUNCTIONS_EMULATOR")
        }
        env.update(
            needs,
            TMPDIR=str(tools),  # the emulator hub's locator file: private to this run
            NO_UPDATE_NOTIFIER="1",
            # discovery and each worker's start may take over the CLI's 30 s on a busy
            # two-core machine ("Failed to load function")
            FUNCTIONS_DISCOVERY_TIMEOUT="120",
            CI="1",
        )
        # the CLI's Python workers record their Firestore queries for the suite's index
        # check too (tests/plugins/firestore_queries.py; PYTHONPATH is inherited)
        if os.environ.get(QUERY_LOG_ENV):
            env[QUERY_LOG_ENV] = os.environ[QUERY_LOG_ENV]
        # the CLI's Firestore and Pub/Sub emulators are JVMs this test keeps for seconds:
        # the suite's emulator options (tests/conftest.py) halve their CPU too
        java_opts = os.environ.get(datastores.EMULATOR_JAVA_OPTS_ENV, "").strip()
        if java_opts:
            env["JAVA_TOOL_OPTIONS"] = java_opts
        with served_aiohttp(minimal_app()) as target:
            argv = [
                node, str(FIREBASE_CLI), "emulators:start", "--only", ",".join(EMULATORS),
                "--project", PROJECT, "--config", str(base / "firebase.json"),
            ]  # fmt: skip
            child = procs.spawn("firebase-cli", argv, base / ".logs", env=env, cwd=base)
            children.append(child)
            ready_sec = _wait_ready(child)
            warm_sec = _warm_firestore(project.ports["firestore"])
            yield RunningCli(project, child, target, node, ready_sec, warm_sec)
    finally:
        for started in reversed(children):
            started.stop(timeout_sec=20)
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ the tests


def test_the_emulator_env_file_gives_every_param_a_value() -> None:
    """No prompt on `emulators:start`: every non-secret param has a value in .env.local,
    the secret none (it belongs in .secret.local, whose template lists it)."""
    from firebase_functions import params

    import main  # noqa: F401  (declares every param)

    declared = {
        name: param
        for name, param in declared_params().items()  # the SDK's registry of declared params
        if isinstance(param, params.Param | params.SecretParam)
    }
    values = env_file_values((ROOT / ENV_FILE).read_text())
    secrets = {n for n, p in declared.items() if isinstance(p, params.SecretParam)}
    assert secrets == {
        "PACK391_BACKUP_KEY",
        "PACK391_CLOUDFLARE_ORIGIN_SECRET",
        "PACK391_REDIS_AUTH",
        "PACK391_OPS_WEBHOOK_URL",
    }
    assert set(declared) - secrets == set(values), "params and .env.local differ"
    assert set(env_file_values((ROOT / SECRET_TEMPLATE).read_text())) == secrets
    assert all(not v for v in env_file_values((ROOT / SECRET_TEMPLATE).read_text()).values())


def test_deploy_never_reads_the_emulator_env_file(pytestconfig: pytest.Config) -> None:
    """firebase-tools' own loader: .env.local is read when emulating, never for a deploy."""
    try:
        node = node_and_cli()
    except CliUnavailable as exc:
        _unavailable(pytestconfig, str(exc))
        raise
    script = (
        "const env = require(process.argv[1]);"
        "const opts = (isEmulator) => ({functionsSource: process.argv[2], projectDir:"
        " process.argv[2], projectId: 'demo-pack391-deploy', isEmulator});"
        "console.log(JSON.stringify({deploy: env.loadUserEnvs(opts(false)),"
        " emulator: env.loadUserEnvs(opts(true))}));"
    )
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ROOT / ENV_FILE, Path(tmp) / ENV_FILE)
        out = subprocess.run(
            [node, "-e", script, str(FIREBASE_CLI.parent.parent / "functions" / "env.js"), tmp],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["deploy"] == {}
    assert loaded["emulator"]["PACK391_FRONT_DOOR"] == "direct"
    ignore = json.loads((ROOT / "firebase.json").read_text())["functions"][0]["ignore"]
    assert "*.local" in ignore  # nor is it uploaded


def test_the_workflows_credentials_file_is_never_uploaded() -> None:
    """google-github-actions/auth writes the workflow's credentials into the
    workspace as ``gha-creds-<random>.json`` (its ``create_credentials_file``, on by
    default), which is the functions' source directory: ``firebase deploy`` uploaded it
    with the code. firebase-tools matches ``functions.ignore`` globs against paths relative
    to the source."""
    import fnmatch

    ignore = json.loads((ROOT / "firebase.json").read_text())["functions"][0]["ignore"]
    for path in ("gha-creds-0123456789abcdef.json", "gha-creds-a1b2.json"):
        assert any(fnmatch.fnmatch(path, pattern) for pattern in ignore), path
    assert not any(fnmatch.fnmatch("main.py", pattern) for pattern in ignore)


def test_the_functions_source_holds_no_package_json() -> None:
    """firebase-tools tries its Node runtime first, for any source with a package.json: the
    Node tools live in tools/, which is not uploaded either."""
    for codebase in json.loads((ROOT / "firebase.json").read_text())["functions"]:
        assert not (ROOT / codebase["source"] / "package.json").exists()
        assert "tools" in codebase["ignore"]


def test_the_firestore_wrapper_jar_manifest() -> None:
    long_path = Path("/opt/" + "x" * 120 + "/cloud-firestore-emulator.jar")
    text = manifest_text({"Main-Class": "a.B", "Class-Path": long_path.as_uri()})
    lines = text.split("\r\n")
    assert all(len(line.encode()) <= 72 for line in lines)
    unfolded = text.replace("\r\n ", "")
    assert f"Class-Path: {long_path.as_uri()}\r\n" in unfolded
    assert text.endswith("\r\n\r\n") and "Main-Class: a.B\r\n" in text


def _backups() -> list[dict[str, Any]]:
    return [s.to_dict() or {} for s in get_db().collection(collections.BACKUPS).stream()]


def test_only_a_post_runs_a_scheduled_function(
    caller: Caller, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator's GET /__/health on a cold worker reaches the function: it must not
    take a backup. Cloud Scheduler's POST (the local scheduler's too) does."""
    monkeypatch.setenv("PACK391_BACKUP_LOCAL_ROOT", str(tmp_path / "backups"))
    monkeypatch.setenv("PACK391_BACKUP_KEY", new_backup_key())
    reset_backup_service()
    try:
        client = caller.app.test_client()
        for method in ("GET", "HEAD", "OPTIONS"):
            response = client.open(caller.url("pack391_backupFirestore"), method=method)
            assert response.status_code == 200, (method, response.data)
            if method == "GET":
                assert response.get_json()["ran"] is False
        assert _backups() == []
        name = "pack391_backupFirestore"
        response = client.post(
            caller.url(name),
            data=b"{}",
            headers=scheduler_headers(name, REGION, datetime.now(UTC)),
        )
        assert response.status_code == 200, response.data
        assert [b["status"] for b in _backups()] == ["complete"]
    finally:
        reset_backup_service()


@pytest.mark.timeout(420)
def test_firebase_cli_emulators_end_to_end(firebase_cli: RunningCli) -> None:
    """SLOW (about a minute): the real `firebase emulators:start`, called through the JS SDK."""
    cli = firebase_cli
    log = cli.log
    assert "Prompting for parameters" not in log, log
    assert "Writing new parameter values" not in log, log
    assert "Failed to load function definition" not in log, log
    assert "Loaded functions definitions from source" in log, log

    name = "pack391_backupFirestore"
    config = {
        "project": PROJECT,
        "region": REGION,
        "functionsPort": cli.project.ports["functions"],
        "authPort": cli.project.ports["auth"],
        "loadTarget": cli.load_target,
        "loadTestTimeoutMs": int(LOAD_TEST_TIMEOUT_SEC * 1000),
        "triggerUrl": cli.trigger_url(name),
        "schedulerHeaders": scheduler_headers(name, REGION, datetime.now(UTC)),
    }
    started = time.monotonic()
    run = subprocess.run(
        [cli.node, str(CLIENT), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=LOAD_TEST_TIMEOUT_SEC + 120,
        check=False,
        cwd=ROOT,
    )
    client_sec = time.monotonic() - started
    assert run.returncode == 0, f"client failed:\n{run.stderr}\n{cli.log[-6000:]}"
    out: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    print(
        f"\nFirebase CLI: ready in {cli.start_sec:.1f}s, Firestore warmed in {cli.warm_sec:.1f}s, "
        f"JS client {client_sec:.1f}s "
        f"({json.dumps(out['timings'])})"
    )

    # callables through the JS SDK: each outcome as the app sees it
    assert "markets" in out["success"].get("result", {}), (out["success"], cli.log[-6000:])
    invalid = out["invalidArgument"]["error"]
    assert invalid["code"] == "functions/invalid-argument", invalid
    assert invalid["details"]["field"] == "config.trafficLimit", invalid
    assert out["permissionDenied"]["error"]["code"] == "functions/permission-denied", out
    assert out["unauthenticated"]["error"]["code"] == "functions/unauthenticated", out

    # a scheduled run through the emulator's trigger URL: exactly one backup (the cold
    # worker's GET /__/health ran none), encrypted with the key from .secret.local
    assert out["scheduledRun"]["status"] == 200, (out["scheduledRun"], cli.log[-6000:])
    recent = out["backupStatus"]["result"]["recent"]
    assert [b["status"] for b in recent] == ["complete"], recent
    assert recent[0]["keyId"] == BackupKey.from_base64(cli.project.backup_key).key_id

    # a load test whose shard went through the Cloud Tasks emulator to the task function
    assert "result" in out["runLoadTest"], out["runLoadTest"]
    results = out["loadTestResults"]["result"]
    assert results["status"] == "completed", (results, cli.log[-6000:])
    assert results["progress"]["shardsDone"] == 1
    assert results["summary"]["requests"] > 0 and results["summary"]["errors"] == 0
    assert f'Beginning execution of "{REGION}-{TASK_FUNCTION}"' in cli.log, cli.log[-6000:]
