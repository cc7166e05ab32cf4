"""`pack391 serve` end to end, as `make run` runs it, and the CLI against it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from stack.platform import auth_emulator, procs
from stack.platform.procs import free_port
from stack.platform.scheduler import scheduler_headers
from tests.needs import missing
from tests.stack.serving import PACK391, start_serve

PROJECT = "demo-avalo"


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    return set(procs.process_tree(pid)) - {pid}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Stack:
    process: subprocess.Popen[str]
    env: dict[str, str]
    port: int
    output: list[str]
    auth_missing: str | None = None
    """Why the stack runs without its Auth emulator (None: it runs one, as `make run`)."""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PACK391), *args], env=self.env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FIRESTORE_EMULATOR_HOST", "REDIS_URL", "GCLOUD_PROJECT")
    }
    env["PACK391_PORT"] = str(port)
    logs = tmp_path_factory.mktemp("stack-logs")
    # with the Auth emulator, as `make run` (the other tests' stacks start none)
    try:
        auth_emulator.node_and_cli()
        auth_missing = None
    except procs.StackError as exc:
        auth_missing = str(exc)
    process, output = start_serve(env, logs, 120, auth_emulator=auth_missing is None)
    yield Stack(process, env, port, output, auth_missing)
    if process.poll() is None:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_serve_prints_urls_and_an_example(stack: Stack) -> None:
    text = "".join(stack.output)
    assert f"http://127.0.0.1:{stack.port}/{PROJECT}/us-central1/<name>" in text
    assert "pack391 call pack391_getMarketControls" in text


def test_cli_calls_with_each_role(stack: Stack) -> None:
    denied = stack.cli("call", "pack391_updateMarketControl", '{"country":"PL"}', "--role", "user")
    assert denied.returncode == 1
    assert json.loads(denied.stderr)["status"] == "PERMISSION_DENIED"

    anonymous = stack.cli("call", "pack391_getMarketControls", "--role", "none")
    assert json.loads(anonymous.stderr)["status"] == "UNAUTHENTICATED"

    update = stack.cli(
        "call",
        "pack391_updateMarketControl",
        '{"country":"PL","config":{"launchStatus":"public","paymentsEnabled":true}}',
    )
    assert update.returncode == 0, update.stderr
    assert json.loads(update.stdout)["market"]["version"] == 1

    access = stack.cli(
        "call", "pack391_checkMarketAccess", '{"country":"PL","signup":true}', "--role", "user"
    )
    assert json.loads(access.stdout)["signupAdmitted"] is True

    listing = stack.cli("call", "pack391_getMarketControls", "--role", "ops")
    markets = json.loads(listing.stdout)["markets"]
    assert [(m["country"], m["currentUsers"]) for m in markets] == [("PL", 1)]

    bad = stack.cli("call", "pack391_updateMarketControl", '{"country":"ZZ","config":{}}')
    assert json.loads(bad.stderr)["details"]["field"] == "country"

    not_json = stack.cli("call", "pack391_getMarketControls", "{oops")
    assert not_json.returncode == 2


def test_token_is_accepted_over_plain_http(stack: Stack) -> None:
    token = stack.cli("token", "--role", "ops", "--uid", "watcher").stdout.strip()
    response = requests.post(
        f"http://127.0.0.1:{stack.port}/{PROJECT}/us-central1/pack391_getMarketControls",
        json={"data": {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200
    assert "markets" in response.json()["result"]


def test_trigger_runs_a_scheduled_function(stack: Stack) -> None:
    result = stack.cli("trigger", "pack391_syncMarkets")
    assert (result.returncode, result.stdout.strip()) == (0, "pack391_syncMarkets: ok")
    missing = stack.cli("trigger", "pack391_noSuchJob")
    assert missing.returncode == 1


def test_scheduler_headers_match_cloud_scheduler() -> None:
    from datetime import UTC, datetime

    headers = scheduler_headers(
        "pack391_syncMarkets", "us-central1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert (
        headers["X-CloudScheduler-JobName"] == "firebase-schedule-pack391_syncMarkets-us-central1"
    )
    assert headers["X-CloudScheduler-ScheduleTime"] == "2026-01-02T03:04:05Z"


def test_help_on_every_command() -> None:
    for command in ([], ["serve"], ["token"], ["call"], ["trigger"]):
        result = subprocess.run(
            [str(PACK391), *command, "--help"], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0
        assert "usage: pack391" in result.stdout


# Ops dashboard ---------------------------------------------------


def test_serve_prints_and_serves_the_ops_dashboard(stack: Stack) -> None:
    text = "".join(stack.output)
    (line,) = [ln for ln in stack.output if ln.startswith("Ops console")]
    url = line.split()[2]
    assert url == f"http://127.0.0.1:{stack.port}/ops/"
    assert "token" not in line and "pack391 grant --role ops EMAIL" in line
    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and "pack391_getOpsDashboard" not in page.text
    assert '<script src="app.js"' in page.text
    script = requests.get(f"http://127.0.0.1:{stack.port}/ops/app.js", timeout=10)
    assert "pack391_getOpsDashboard" in script.text
    init = requests.get(f"http://127.0.0.1:{stack.port}/__/firebase/init.json", timeout=10).json()
    assert init["pack391FunctionsBase"] == f"/{PROJECT}/us-central1"
    (emulator,) = [ln.split()[-1] for ln in text.splitlines() if ln.startswith("Firestore")]
    seeded = stack.cli("seed-ops", "--firestore", emulator)
    assert seeded.returncode == 0, seeded.stderr
    assert stack.cli("trigger", "pack391_updateLiveMetrics").returncode == 0
    live = json.loads(stack.cli("call", "pack391_getLiveMetrics", "--role", "ops").stdout)
    assert live["metrics"]["activeUsers"] == 7
    assert live["metrics"]["payoutQueue"]["failed"] == 11


def test_serve_runs_the_auth_emulator_behind_the_functions_origin(
    stack: Stack, pytestconfig: pytest.Config
) -> None:
    """The ops page's sign-in, locally: the emulator's paths on the functions server's
    origin, and `pack391 grant` finding the emulator in the stack's state file."""
    if stack.auth_missing is not None:
        missing(pytestconfig, "FIREBASE_CLI", f"the Firebase Auth emulator: {stack.auth_missing}")
    (line,) = [ln for ln in stack.output if ln.startswith("Auth emulator")]
    state = json.loads(Path(stack.env["PACK391_STACK_STATE"]).read_text())
    assert line.split()[2] == f"http://{state['authEmulatorHost']}"
    base = f"http://127.0.0.1:{stack.port}"
    assert requests.get(f"{base}/__/firebase/init.json", timeout=10).json()["pack391AuthEmulator"]
    account = {"email": "ops@example.com", "password": "secret-1", "returnSecureToken": True}
    sign_up = f"{base}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=local-api-key"
    assert requests.post(sign_up, json=account, timeout=30).status_code == 200
    env = {k: v for k, v in stack.env.items() if not k.startswith(("FIREBASE_", "FIRESTORE_"))}
    granted = subprocess.run(
        [str(PACK391), "grant", "--role", "ops", "ops@example.com"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    assert "the local stack's Auth emulator" in granted.stdout
    sign_in = sign_up.replace("accounts:signUp", "accounts:signInWithPassword")
    token = requests.post(sign_in, json=account, timeout=30).json()["idToken"]
    response = requests.post(
        f"{base}/{PROJECT}/us-central1/pack391_getMarketControls",
        json={"data": {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_sigint_stops_everything(stack: Stack) -> None:
    children = descendants(stack.process.pid)
    assert len(children) >= 3  # emulator (java), redis-server, functions server
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(30) == 0
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in children if alive(pid)] == []
