"""The CLI commands the deploy workflow runs, over real HTTP against the local functions
server, both ways: the local default and the deployed-project settings (a base URL and an
ID token in the environment). The workflow file is valid YAML with the promised steps."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from functions.deploy_guard.local import LocalTraffic
from shared.models.slo import ActionMode
from shared.redis import get_redis
from stack import cli
from stack.platform.tokens import role_token
from tests.conftest import ROOT, Backends
from tests.deploy_guard.test_error_budget_gate import freeze_state, write_state
from tests.fakes.http_api import FakeHttpApi, Recorded

WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"


@pytest.fixture(params=["local", "remote"])
def endpoint(
    request: pytest.FixtureRequest,
    live_server: str,
    backends: Backends,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    monkeypatch.setenv("GCLOUD_PROJECT", backends.project)
    if request.param == "remote":
        monkeypatch.setenv("PACK391_FUNCTIONS_URL", f"{live_server}/{backends.project}/us-central1")
        monkeypatch.setenv("PACK391_ID_TOKEN", role_token(backends.project, "admin", "deploy-bot"))
        monkeypatch.setenv("PACK391_PORT", "9")  # nothing there: the URL must be used
    else:
        monkeypatch.delenv("PACK391_FUNCTIONS_URL", raising=False)
        monkeypatch.delenv("PACK391_ID_TOKEN", raising=False)
        monkeypatch.setenv("PACK391_PORT", live_server.rsplit(":", 1)[1])
    return str(request.param)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def test_the_workflow_commands_drive_a_deployment(
    endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    platform = LocalTraffic(get_redis())
    platform.deploy("api", "api-00001")
    code, out = run(capsys, "deploy", "validate", "--version", "v2", "--env", "prod")
    assert code == 0 and json.loads(out)["passed"] is True
    code, out = run(capsys, "deploy", "pin-traffic", "--env", "prod", "--services", "api")
    assert code == 0 and json.loads(out)["pinned"][0]["revision"] == "api-00001"
    platform.deploy("api", "api-00002")
    code, out = run(
        capsys, "deploy", "start", "--version", "v2", "--env", "prod", "--services", "api",
        "--id-only",
    )  # fmt: skip
    assert code == 0
    dep_id = out.strip()
    assert re.fullmatch(r"[0-9]{14}-[0-9a-f]{8}", dep_id)
    code, out = run(capsys, "deploy", "status", dep_id)
    assert code == 0 and json.loads(out)["trafficPercent"] == 5
    code, out = run(capsys, "deploy", "rollback", dep_id, "--reason", "cli test")
    assert code == 0 and json.loads(out)["phase"] == "rolled_back"
    code, out = run(capsys, "deploy", "wait", dep_id, "--timeout", "5", "--interval", "0.1")
    assert code == 1  # a rolled-back deployment fails the job
    assert "rolled_back" in out
    code, out = run(capsys, "deploy", "status", "--env", "prod")
    assert code == 0 and [d["deploymentId"] for d in json.loads(out)["deployments"]] == [dep_id]


def test_local_revision_lands_like_firebase_deploy_or_with_no_traffic(
    backends: Backends, capsys: pytest.CaptureFixture[str]
) -> None:
    """A function's deploy moves all traffic to the new revision, pin or no pin (the Cloud
    Functions API's allTrafficOnLatestRevision); --no-traffic keeps the split."""
    url = ["--redis-url", backends.redis_url]
    assert cli.main(["deploy", "local-revision", "api", "api-00001", *url]) == 0
    assert json.loads(capsys.readouterr().out)["shares"] == {"api-00001": 100}
    LocalTraffic(get_redis()).apply("api", "", {"api-00001": 100})  # what pin-traffic does
    assert cli.main(["deploy", "local-revision", "api", "api-00002", "--no-traffic", *url]) == 0
    assert json.loads(capsys.readouterr().out)["shares"] == {"api-00001": 100}
    assert LocalTraffic(get_redis()).observe("api", "").latest_ready == "api-00002"
    assert cli.main(["deploy", "local-revision", "api", "api-00003", *url]) == 0
    assert json.loads(capsys.readouterr().out)["shares"] == {"api-00003": 100}


def test_a_failed_call_is_a_failed_command(
    endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["deploy", "control", "missing", "pause", "--reason", "x"])
    assert code == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_token_mints_a_custom_token_and_exchanges_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    account = {
        "type": "service_account",
        "project_id": "demo-pack391-test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "deployer@demo-pack391-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    # under the Auth emulator firebase-admin mints unsigned custom tokens; CI has no emulator
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST")
    with FakeHttpApi() as api:

        def exchange(req: Recorded, _m: re.Match[str]) -> tuple[int, Any]:
            return 200, {"idToken": "the-id-token", "refreshToken": "r", "expiresIn": "3600"}

        api.on("POST", r"/v1/accounts:signInWithCustomToken", exchange)
        monkeypatch.setenv("PACK391_IDENTITY_TOOLKIT_URL", api.url)
        code = cli.main(["deploy", "token", "--uid", "deploy-bot", "--api-key", "K"])
        sent = api.received("POST")[0]
    assert code == 0 and capsys.readouterr().out.strip() == "the-id-token"
    assert sent.query["key"] == ["K"]
    claims = jwt.decode(  # type: ignore[no-untyped-call]
        sent.body["token"],
        certs=public,
        audience="https://identitytoolkit.googleapis.com/google.identity.identitytoolkit.v1.IdentityToolkit",
    )
    assert claims["uid"] == "deploy-bot" and claims["claims"] == {"admin": True}
    assert claims["iss"] == account["client_email"]


def test_the_workflow_is_valid_and_runs_the_pipeline_in_order() -> None:
    """Three jobs (test -> deploy -> canary, tests/test_deploy_pipeline.py checks their
    shape); read in the order of their needs, the steps run the pipeline in order."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    assert list(jobs) == ["test", "deploy", "canary"]
    assert jobs["deploy"]["needs"] == "test" and jobs["canary"]["needs"] == "deploy"
    steps = [step for name in ("test", "deploy", "canary") for step in jobs[name]["steps"]]
    commands = [step.get("run", "") for step in steps]
    firebase = "./tools/node_modules/.bin/firebase deploy --only"
    order = [
        "make test",
        "pack391 deploy env",
        "pack391 deploy secrets",
        "pack391 deploy token",
        "pack391 deploy validate",
        "pack391 deploy pin-traffic",
        "pack391 deploy hosting-config",
        f"{firebase} firestore:indexes",
        "state=CREATING",  # the indexes are built before the functions deploy
        f"{firebase} functions:pack391",
        "pack391 deploy start",  # the next step: the new revisions serve 100 % until it
        f"{firebase} hosting:ops",
        "pack391 deploy wait",
    ]
    positions = [next(i for i, c in enumerate(commands) if needle in c) for needle in order]
    assert positions == sorted(positions)
    parser = cli.build_parser()
    invoked = 0
    for command in commands:
        for line in command.splitlines():
            match = re.search(r"\./venv/bin/pack391 (deploy [^)|;&>]*)", line)
            if match:
                args = shlex.split(match.group(1).replace('"$', '"X').replace("$(", ""))
                parsed = parser.parse_args(args)  # exits (fails the test) on a bad command
                assert parsed.command == "deploy"
                invoked += 1
    # env (twice: a bootstrap's, with --bootstrap, and the canary's), secrets, token, the
    # bootstrap guard's status, validate, pin-traffic, hosting-config, start, the bootstrap
    # record's status; in the canary job: token, wait, status on failure
    # (tests/test_deploy_pipeline.py checks which a bootstrap run skips)
    assert invoked == 13
    # PyYAML (YAML 1.1) reads the `on:` key as True
    assert workflow[True]["workflow_dispatch"]["inputs"]["environment"]["required"] is True
    assert workflow[True]["workflow_dispatch"]["inputs"]["bootstrap"]["type"] == "boolean"


def test_validate_names_the_release_services_the_budget_gate_checks(
    endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--services`` reaches the validator: a freeze of ``service:api`` refuses a release
    of api and not one of chat."""
    write_state(freeze_state(ActionMode.ENFORCE, ("service:api",)))

    def budget(*services: str) -> tuple[int, dict[str, Any]]:
        code, out = run(
            capsys, "deploy", "validate", "--version", "v3", "--env", "prod",
            "--services", *services,
        )  # fmt: skip
        report = json.loads(out)
        return code, next(g for g in report["gates"] if g["name"] == "error_budget")

    code, gate = budget("api")
    assert (code, gate["status"], gate["evidence"]["frozenBy"]) == (1, "fail", ["service:api"])
    code, gate = budget("chat")
    assert (code, gate["status"]) == (0, "pass")
