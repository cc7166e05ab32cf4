"""The deploy commands refresh the admin ID token, so a long pipeline finishes.

A Firebase ID token lives an hour; deploy plus canary can take longer. With
PACK391_TOKEN_UID set, ``pack391 deploy ...`` mints a fresh token when the current one
expires within 5 minutes and once after a 401. Set up as ``pack391 deploy token``'s own
test (tests/deploy_guard/test_cli_and_workflow.py): a service-account key file whose key
really signs the custom token, and the Identity Toolkit's ``accounts:signInWithCustomToken``
over HTTP, which checks that signature. The "deployed functions" answer as a callable does
behind firebase-admin's ``verify_id_token``: HTTP 401 UNAUTHENTICATED for a token past its
``exp`` (or one the test revokes), else the result.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from stack import cli
from stack.cli import caller, deploy_token
from stack.platform.tokens import emulator_id_token
from tests.fakes.http_api import FakeHttpApi, Recorded

PROJECT = "demo-pack391-refresh"
AUDIENCE = (
    "https://identitytoolkit.googleapis.com/google.identity.identitytoolkit.v1.IdentityToolkit"
)


class Google:
    """The Identity Toolkit and the deployed functions, on one FakeHttpApi."""

    def __init__(self, api: FakeHttpApi, public_key: bytes, lifetime_sec: float) -> None:
        self.api = api
        self.public_key = public_key
        self.lifetime_sec = lifetime_sec
        self.minted: list[str] = []
        self.revoked: set[str] = set()
        self.statuses = ["running", "running", "running", "running", "succeeded"]
        self.sent: list[tuple[float, str]] = []  # (received at, bearer token)
        api.on("POST", r"/v1/accounts:signInWithCustomToken", self.exchange)
        api.on("POST", r"/fns/(?P<name>pack391_\w+)", self.function)

    def exchange(self, req: Recorded, _m: re.Match[str]) -> tuple[int, Any]:
        claims = jwt.decode(  # type: ignore[no-untyped-call]
            req.body["token"], certs=self.public_key, audience=AUDIENCE
        )  # a custom token signed by the service account's key, or this raises (500)
        assert claims["uid"] == "deploy-bot" and claims["claims"] == {"admin": True}
        lifetime = int(self.lifetime_sec)
        token = emulator_id_token(PROJECT, claims["uid"], claims["claims"], lifetime)
        token += f"sig{len(self.minted)}"  # distinct even within one second
        self.minted.append(token)
        return 200, {"idToken": token, "refreshToken": "r", "expiresIn": str(lifetime)}

    def function(self, req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        now = time.time()
        token = req.headers.get("Authorization", "").removeprefix("Bearer ")
        self.sent.append((now, token))
        exp = deploy_token.expires_at(token)
        if exp is None or exp <= now or token in self.revoked:
            return 401, {"error": {"status": "UNAUTHENTICATED", "message": "Unauthenticated"}}
        if m["name"] == "pack391_getDeploymentStatus":
            phase = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return 200, {"result": {"phase": phase, "step": 1, "trafficPercent": 5,
                                    "history": []}}  # fmt: skip
        return 200, {"result": {"passed": True}}


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A service-account key file as Application Default Credentials; its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip
    account = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": f"deployer@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    # under the Auth emulator firebase-admin mints unsigned custom tokens; CI has none
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("PACK391_DEPLOY_SERVICE_ACCOUNT", raising=False)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> deploy_token.DeployToken:
    """A process's token state, as each workflow step starts with (the real minting)."""
    tokens = deploy_token.DeployToken()
    monkeypatch.setattr(caller, "TOKENS", tokens)
    return tokens


def point_at(monkeypatch: pytest.MonkeyPatch, api: FakeHttpApi, token: str, uid: bool) -> None:
    monkeypatch.setenv("PACK391_IDENTITY_TOOLKIT_URL", api.url)
    monkeypatch.setenv("PACK391_FUNCTIONS_URL", f"{api.url}/fns")
    monkeypatch.setenv("PACK391_ID_TOKEN", token)
    monkeypatch.setenv("FIREBASE_WEB_API_KEY", "K")
    if uid:
        monkeypatch.setenv("PACK391_TOKEN_UID", "deploy-bot")
    else:
        monkeypatch.delenv("PACK391_TOKEN_UID", raising=False)


def test_the_exp_claim_is_read_without_verifying() -> None:
    now = time.time()
    token = emulator_id_token(PROJECT, "u", lifetime_sec=600)
    assert deploy_token.expires_at(token) == pytest.approx(now + 600, abs=2)
    assert not deploy_token.expiring(token, now=now)
    assert deploy_token.expiring(token, now=now + 301)  # within 5 minutes of its end
    for unreadable in ("", "opaque", "a.b.c", "a.e30.c"):  # e30 = {}: no exp
        assert deploy_token.expires_at(unreadable) is None
        assert deploy_token.expiring(unreadable)


def test_wait_refreshes_the_token_before_it_is_within_five_minutes_of_its_end(
    key_file: bytes,
    fresh_process: deploy_token.DeployToken,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``deploy wait`` polls past the hour: every token it sends has more than 5 minutes
    left (the margin), and the tokens sent are the ones the Identity Toolkit issued.
    Lifetimes of 301 s stand in for the hour, so the margin is crossed within seconds."""
    with FakeHttpApi() as api:
        google = Google(api, key_file, lifetime_sec=301.0)
        first = emulator_id_token(PROJECT, "deploy-bot", {"admin": True}, lifetime_sec=301)
        point_at(monkeypatch, api, first, uid=True)
        code = cli.main(["deploy", "wait", "dep-1", "--timeout", "30", "--interval", "0.7"])
    assert code == 0, capsys.readouterr().err
    assert "succeeded" in capsys.readouterr().out
    assert len(google.sent) == 5 and fresh_process.minted >= 2
    assert {token for _, token in google.sent} - {first} <= set(google.minted)
    for received, token in google.sent:
        left = (deploy_token.expires_at(token) or 0) - received
        assert left > deploy_token.REFRESH_MARGIN_SEC - 1.5, left  # 1 s: exp's rounding


def test_without_a_uid_the_token_is_sent_as_given_and_the_401_fails_the_command(
    key_file: bytes,
    fresh_process: deploy_token.DeployToken,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expired = emulator_id_token(PROJECT, "deploy-bot", {"admin": True}, lifetime_sec=-1)
    with FakeHttpApi() as api:
        google = Google(api, key_file, lifetime_sec=3600.0)
        point_at(monkeypatch, api, expired, uid=False)
        code = cli.main(["deploy", "validate", "--version", "v", "--env", "prod"])
    assert code == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert google.minted == [] and [t for _, t in google.sent] == [expired]


def test_a_401_mints_once_and_retries_once(
    key_file: bytes,
    fresh_process: deploy_token.DeployToken,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A token with time left that the functions refuse (revoked, clock skew): one fresh
    token, one retry; the next call keeps the fresh token. A refusal of the fresh one too
    fails the command after that single retry (no loop)."""
    given = emulator_id_token(PROJECT, "deploy-bot", {"admin": True}, lifetime_sec=3600)
    with FakeHttpApi() as api:
        google = Google(api, key_file, lifetime_sec=3600.0)
        google.revoked.add(given)
        point_at(monkeypatch, api, given, uid=True)
        assert cli.main(["deploy", "validate", "--version", "v", "--env", "prod"]) == 0
        assert len(google.minted) == 1
        assert [t for _, t in google.sent] == [given, google.minted[0]]
        assert cli.main(["deploy", "validate", "--version", "v", "--env", "prod"]) == 0
        assert len(google.minted) == 1 and google.sent[-1][1] == google.minted[0]
        google.revoked.add(google.minted[0])
        google.lifetime_sec = -1  # whatever is minted now is refused too
        assert cli.main(["deploy", "validate", "--version", "v", "--env", "prod"]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert len(google.minted) == 2 and len(google.sent) == 5


def test_a_needed_refresh_that_cannot_be_minted_says_why(
    key_file: bytes,
    fresh_process: deploy_token.DeployToken,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expired = emulator_id_token(PROJECT, "deploy-bot", {"admin": True}, lifetime_sec=-1)
    with FakeHttpApi() as api:
        google = Google(api, key_file, lifetime_sec=3600.0)
        point_at(monkeypatch, api, expired, uid=True)
        monkeypatch.delenv("FIREBASE_WEB_API_KEY")
        code = cli.main(["deploy", "status", "dep-1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "PACK391_TOKEN_UID is set but FIREBASE_WEB_API_KEY is not" in err
    assert google.sent == []  # an expired token is not even tried
