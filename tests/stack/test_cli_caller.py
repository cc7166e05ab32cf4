"""The one HTTP caller of the ``pack391`` commands (:mod:`stack.cli.caller`), over real HTTP
against the local functions server, and the command registry of :mod:`stack.cli`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

from stack.cli import caller
from stack.platform.procs import free_port
from tests.conftest import ROOT, Backends

REGION = "us-central1"


def who(token: str | None) -> str | None:
    """``aud/sub`` of a local (unsigned) ID token; any other token as it is."""
    if token is None or token.count(".") != 2:
        return token
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{claims['aud']}/{claims['sub']}"


@pytest.fixture
def functions_base(live_server: str, backends: Backends, monkeypatch: pytest.MonkeyPatch) -> str:
    """The live server as the local stack: PACK391_PORT points at it, no remote target."""
    monkeypatch.setenv("GCLOUD_PROJECT", backends.project)
    monkeypatch.setenv("PACK391_PORT", live_server.rsplit(":", 1)[1])
    monkeypatch.delenv("PACK391_FUNCTIONS_URL", raising=False)
    monkeypatch.delenv("PACK391_ID_TOKEN", raising=False)
    return f"{live_server}/{backends.project}/{REGION}"


@pytest.mark.parametrize(
    ("env", "role", "want_base", "want_token"),
    [
        ({}, "admin", "http://127.0.0.1:5001/demo-x/us-central1", "demo-x/admin-1"),
        ({"PACK391_PORT": "6001"}, "ops", "http://127.0.0.1:6001/demo-x/us-central1",
         "demo-x/ops-1"),
        ({"PACK391_FUNCTIONS_URL": "https://us-central1-p.cloudfunctions.net/"}, "admin",
         "https://us-central1-p.cloudfunctions.net", "demo-x/admin-1"),
        ({"PACK391_FUNCTIONS_URL": "https://f.example", "PACK391_ID_TOKEN": "ID"}, "admin",
         "https://f.example", "ID"),
        ({"PACK391_ID_TOKEN": "ID"}, "ops", "http://127.0.0.1:5001/demo-x/us-central1", "ID"),
    ],
)  # fmt: skip
def test_target_is_the_deployed_project_when_configured(
    env: dict[str, str],
    role: str,
    want_base: str,
    want_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GCLOUD_PROJECT", "demo-x")
    for name in ("PACK391_PORT", "PACK391_FUNCTIONS_URL", "PACK391_ID_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    endpoint = caller.target(role)
    assert (endpoint.base, who(endpoint.token)) == (want_base, want_token)
    assert endpoint.url("pack391_x") == f"{want_base}/pack391_x"


def test_local_endpoint_carries_the_role_token_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCLOUD_PROJECT", "demo-x")
    monkeypatch.setenv("PACK391_PORT", "7001")
    monkeypatch.setenv("PACK391_FUNCTIONS_URL", "https://ignored.example")  # local only
    endpoint = caller.local("ops", "watcher")
    assert (endpoint.base, who(endpoint.token)) == (
        "http://127.0.0.1:7001/demo-x/us-central1",
        "demo-x/watcher",
    )
    assert caller.local("none").token is None
    assert caller.function_url("pack391_y") == "http://127.0.0.1:7001/demo-x/us-central1/pack391_y"


def test_a_call_returns_the_result(functions_base: str) -> None:
    result = caller.call(caller.local("ops"), "pack391_getMarketControls", {})
    assert result["markets"] == []
    assert caller.invoke("pack391_getMarketControls", {}, role="ops")["markets"] == []


def test_an_error_answer_is_call_failed_with_status_message_and_details(
    functions_base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(caller.CallFailed) as bad:
        caller.call(
            caller.local("admin"), "pack391_updateMarketControl", {"country": "ZZ", "config": {}}
        )
    failed = bad.value
    assert (failed.status, failed.http_status, failed.exit_code) == ("INVALID_ARGUMENT", 400, 1)
    assert failed.details["field"] == "country"
    assert failed.message and failed.message == failed.error["message"]
    assert failed.url == f"{functions_base}/pack391_updateMarketControl"
    assert caller.report(failed) == 1
    assert json.loads(capsys.readouterr().err) == failed.error

    with pytest.raises(caller.CallFailed) as denied:
        caller.call(caller.local("none"), "pack391_getMarketControls", {})
    assert (denied.value.status, denied.value.http_status) == ("UNAUTHENTICATED", 401)


def test_no_answer_and_a_non_json_answer(
    functions_base: str, live_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = caller.Endpoint(f"http://127.0.0.1:{free_port()}/p/r", None)
    with pytest.raises(caller.CallFailed) as unreachable:
        caller.call(nowhere, "pack391_x", {}, timeout=5)
    assert (unreachable.value.status, unreachable.value.exit_code) == (caller.UNREACHABLE, 3)
    assert caller.report(unreachable.value, "pack391 call", "the local stack") == 3
    assert capsys.readouterr().err.startswith("pack391 call: cannot reach the local stack: ")

    # a GET-only route of the functions server: Flask's HTML "405 Method Not Allowed"
    with pytest.raises(caller.CallFailed) as page:
        caller.call(caller.Endpoint(f"{live_server}/__", None), "health", {})
    assert (page.value.status, page.value.http_status) == (caller.NOT_JSON, 405)
    assert caller.report(page.value) == 1
    assert capsys.readouterr().err.startswith("pack391: HTTP 405: ")

    with pytest.raises(caller.CallFailed) as missing:
        caller.call(caller.local(), "pack391_noSuchFunction", {})
    assert (missing.value.status, missing.value.http_status) == ("NOT_FOUND", 404)


def test_python_m_stack_cli_calls_the_local_stack(functions_base: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "stack.cli", "call", "pack391_getMarketControls", "--role", "ops"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["markets"] == []
    denied = subprocess.run(
        [sys.executable, "-m", "stack.cli", "call", "pack391_updateMarketControl",
         '{"country":"PL"}', "--role", "user"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert denied.returncode == 1
    assert json.loads(denied.stderr)["status"] == "PERMISSION_DENIED"
