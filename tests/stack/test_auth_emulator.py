"""The Firebase Auth emulator behind the local functions server, and ``pack391 grant``.

A real emulator (firebase-tools of tools/node_modules, the module's ``auth_emulator``,
about 10 s to start) behind the tests' in-process server (``live_server``, pointed at it
per test by ``proxied_auth_emulator``): users sign up and in on the server's own origin,
as the ops page does with SDK 8's ``auth.useEmulator(location.origin)``, and their ID
tokens go to the real callables. ``pack391 grant`` runs as a subprocess against the
emulator and the tests' Firestore.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import flask
import pytest
import requests

from shared import collections
from shared.firestore import get_db
from stack.grant import GrantError, Target, apply
from stack.platform.auth_emulator import ADDRESS_ENV, PROXIED_PREFIXES
from stack.platform.harness import PACK391
from tests.conftest import PROJECT, AuthEmulator, Backends

KEY = "local-api-key"
DASHBOARD = "pack391_getOpsDashboard"
OWNER = {"Authorization": "Bearer owner"}
"""The emulator's admin credential (what firebase-admin sends it)."""


def sign_up(base: str, email: str, password: str = "secret-1") -> dict[str, Any]:
    response = requests.post(
        f"{base}/identitytoolkit.googleapis.com/v1/accounts:signUp?key={KEY}",
        json={"email": email, "password": password, "returnSecureToken": True},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def sign_in(base: str, email: str, password: str = "secret-1") -> dict[str, Any]:
    response = requests.post(
        f"{base}/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key={KEY}",
        json={"email": email, "password": password, "returnSecureToken": True},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def claims_of(id_token: str) -> dict[str, Any]:
    payload = id_token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def dashboard(base: str, id_token: str) -> requests.Response:
    return requests.post(
        f"{base}/{PROJECT}/us-central1/{DASHBOARD}",
        json={"data": {}},
        headers={"Authorization": f"Bearer {id_token}"},
        timeout=60,
    )


def set_claims(emulator: AuthEmulator, uid: str, claims: dict[str, Any]) -> None:
    """Custom claims set directly in the emulator (not through the command under test)."""
    response = requests.post(
        f"{emulator.url}/identitytoolkit.googleapis.com/v1/projects/{PROJECT}/accounts:update",
        json={"localId": uid, "customAttributes": json.dumps(claims)},
        headers=OWNER,
        timeout=30,
    )
    assert response.status_code == 200, response.text


def grant(
    emulator: AuthEmulator | None, backends: Backends, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """``pack391 grant ARGS`` against ``emulator`` and the tests' Firestore (no running
    stack: the state file does not exist unless ``env`` names one)."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FIREBASE_", "FIRESTORE_", "PACK391_"))
    }
    environment.update(
        FIRESTORE_EMULATOR_HOST=backends.firestore_host,
        GCLOUD_PROJECT=PROJECT,
        PACK391_STACK_STATE="/nonexistent/stack.json",
    )
    if emulator is not None:
        environment["FIREBASE_AUTH_EMULATOR_HOST"] = emulator.host
    environment.update(env)
    return subprocess.run(
        [str(PACK391), "grant", *args], env=environment, capture_output=True, text=True, timeout=90
    )


def audit_entries() -> list[dict[str, Any]]:
    docs = [snap.to_dict() or {} for snap in get_db().collection(collections.AUDIT_LOG).stream()]
    return sorted(docs, key=lambda doc: doc["at"])


# ------------------------------------------------------------------ not configured


@pytest.mark.parametrize("prefix", PROXIED_PREFIXES)
def test_without_an_emulator_the_paths_answer_503_saying_how_to_start_it(
    app: flask.Flask, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    response = app.test_client().post(f"{prefix}v1/accounts:signUp?key={KEY}", json={})
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["status"] == "UNAVAILABLE"
    assert "Auth emulator is not running" in error["message"]
    assert "make run" in error["message"]
    assert "Content-Security-Policy" not in response.headers  # no /ops/** Hosting headers


def test_init_json_names_the_emulator_only_when_there_is_one(
    app: flask.Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    init = app.test_client().get("/__/firebase/init.json").get_json()
    assert init["apiKey"] == KEY and init["projectId"] == PROJECT
    assert "pack391AuthEmulator" not in init
    monkeypatch.setenv(ADDRESS_ENV, "127.0.0.1:1")  # read per request
    assert app.test_client().get("/__/firebase/init.json").get_json()["pack391AuthEmulator"]


def test_an_emulator_that_does_not_answer_is_a_502(
    app: flask.Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ADDRESS_ENV, "127.0.0.1:1")
    response = app.test_client().post(
        f"/securetoken.googleapis.com/v1/token?key={KEY}", data="grant_type=refresh_token"
    )
    assert response.status_code == 502
    assert "127.0.0.1:1 does not answer" in response.get_json()["error"]["message"]


# ------------------------------------------------------------------ the proxy


def test_sign_up_and_sign_in_on_the_servers_origin(
    proxied_auth_emulator: AuthEmulator, live_server: str
) -> None:
    up = sign_up(live_server, "ana@example.com")
    signed = sign_in(live_server, "ana@example.com")
    assert signed["localId"] == up["localId"]
    claims = claims_of(signed["idToken"])
    assert claims["aud"] == PROJECT and claims["email"] == "ana@example.com"
    # SDK 8.10.1's own paths: v3 relyingparty for the password, securetoken to refresh
    origin = {"Origin": live_server}
    v3 = requests.post(
        f"{live_server}/www.googleapis.com/identitytoolkit/v3/relyingparty/verifyPassword"
        f"?key={KEY}",
        json={"email": "ana@example.com", "password": "secret-1", "returnSecureToken": True},
        headers=origin,
        timeout=30,
    )
    assert v3.status_code == 200 and v3.json()["localId"] == up["localId"]
    assert v3.headers["Access-Control-Allow-Origin"] == live_server  # the emulator's CORS
    assert v3.headers["Content-Type"].startswith("application/json")
    assert "Content-Security-Policy" not in v3.headers
    refreshed = requests.post(
        f"{live_server}/securetoken.googleapis.com/v1/token?key={KEY}",
        data={"grant_type": "refresh_token", "refresh_token": signed["refreshToken"]},
        timeout=30,
    )
    assert refreshed.status_code == 200, refreshed.text
    assert claims_of(refreshed.json()["id_token"])["user_id"] == up["localId"]
    wrong = requests.post(
        f"{live_server}/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key={KEY}",
        json={"email": "ana@example.com", "password": "nope-nope", "returnSecureToken": True},
        timeout=30,
    )
    assert wrong.status_code == 400 and "INVALID" in wrong.json()["error"]["message"]
    # the popup's handler page and a preflight reach the emulator too
    handler = requests.get(
        f"{live_server}/emulator/auth/handler?apiKey={KEY}&appName=x&authType=signInViaPopup"
        "&providerId=google.com",
        timeout=30,
    )
    assert handler.status_code == 200 and handler.headers["Content-Type"].startswith("text/html")
    preflight = requests.options(
        f"{live_server}/securetoken.googleapis.com/v1/token?key={KEY}",
        headers={**origin, "Access-Control-Request-Method": "POST"},
        timeout=30,
    )
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    init = requests.get(f"{live_server}/__/firebase/init.json", timeout=30).json()
    assert init["pack391AuthEmulator"] is True and init["apiKey"] == KEY


# ------------------------------------------------------------------ pack391 grant


def test_grant_lets_a_signed_in_user_read_the_dashboard_and_revoke_keeps_other_claims(
    proxied_auth_emulator: AuthEmulator, live_server: str, backends: Backends
) -> None:
    email = "ops.person@example.com"
    uid = sign_up(live_server, email)["localId"]
    set_claims(proxied_auth_emulator, uid, {"influencer": True})
    refused = dashboard(live_server, sign_in(live_server, email)["idToken"])
    assert refused.status_code == 403
    assert refused.json()["error"]["status"] == "PERMISSION_DENIED"

    done = grant(proxied_auth_emulator, backends, "--role", "ops", email)
    assert done.returncode == 0, done.stderr
    assert f"granted ops to {email} (uid {uid})" in done.stdout
    assert "must sign in again" in done.stdout
    token = sign_in(live_server, email)["idToken"]
    assert claims_of(token)["ops"] is True and claims_of(token)["influencer"] is True
    accepted = dashboard(live_server, token)
    assert accepted.status_code == 200, accepted.text
    assert "result" in accepted.json()

    again = grant(proxied_auth_emulator, backends, "--role", "ops", email)
    assert again.returncode == 0 and "nothing changed" in again.stdout

    revoked = grant(
        proxied_auth_emulator, backends, "--role", "ops", "--revoke", "--reason", "left", email
    )
    assert revoked.returncode == 0, revoked.stderr
    token = sign_in(live_server, email)["idToken"]
    assert "ops" not in claims_of(token) and claims_of(token)["influencer"] is True
    assert dashboard(live_server, token).status_code == 403

    granted, taken = audit_entries()  # the unchanged second grant wrote none
    assert granted["action"] == "auth.grant" and taken["action"] == "auth.revoke"
    assert granted["target"] == taken["target"] == f"users/{uid}"
    assert granted["before"] == {"influencer": True}
    assert granted["after"] == {"influencer": True, "ops": True}
    assert taken["before"] == granted["after"] and taken["after"] == {"influencer": True}
    assert granted["reason"] == "granted with pack391 grant" and taken["reason"] == "left"
    assert granted["actorUid"].startswith("cli:") and "@" in granted["actorUid"]


def test_grant_creates_a_missing_local_user_with_a_password_printed_once(
    proxied_auth_emulator: AuthEmulator, live_server: str, backends: Backends
) -> None:
    done = grant(proxied_auth_emulator, backends, "--role", "admin", "boss@example.com")
    assert done.returncode == 0, done.stderr
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("created ")]
    assert "email verified" in line
    password = line.split("password ", 1)[1].split()[0]
    claims = claims_of(sign_in(live_server, "boss@example.com", password)["idToken"])
    assert claims["admin"] is True and claims["email_verified"] is True
    assert dashboard(live_server, sign_in(live_server, "boss@example.com", password)["idToken"]).ok

    given = grant(
        proxied_auth_emulator, backends, "--role", "ops", "--password", "chosen-1", "x@example.com"
    )
    assert given.returncode == 0, given.stderr
    assert "chosen-1" not in given.stdout and "the password given" in given.stdout
    assert claims_of(sign_in(live_server, "x@example.com", "chosen-1")["idToken"])["ops"] is True


def test_revoking_from_a_missing_user_and_a_projects_missing_user_exit_1(
    proxied_auth_emulator: AuthEmulator, backends: Backends
) -> None:
    done = grant(proxied_auth_emulator, backends, "--role", "ops", "--revoke", "no@example.com")
    assert done.returncode == 1
    assert "no user no@example.com" in done.stderr and "nothing to revoke" in done.stderr
    # a real project's rule (--project): the user must have signed in once; nobody is created
    project = Target(PROJECT, proxied_auth_emulator.host, backends.firestore_host, "p", False)
    with pytest.raises(GrantError) as refused:
        apply(project, "new@example.com", "ops")
    assert refused.value.code == 1 and "must sign in once first" in str(refused.value)
    assert audit_entries() == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--role", "owner", "a@example.com"], "invalid choice: 'owner'"),
        (["--role", "ops", "not-an-email"], "not an email address"),
        (["--role", "ops", "a@b"], "not an email address"),
        (["--role", "ops", "--password", "short", "a@example.com"], "at least 6 characters"),
        (
            ["--role", "ops", "--project", "p", "--password", "long-enough", "a@example.com"],
            "--password is for the local stack",
        ),
    ],
)
def test_bad_input_exits_2(backends: Backends, args: list[str], said: str) -> None:
    done = grant(None, backends, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr


def test_without_a_stack_or_an_emulator_it_says_how_to_get_one(
    backends: Backends, tmp_path: Path
) -> None:
    done = grant(None, backends, "--role", "ops", "a@example.com")
    assert done.returncode == 1
    assert "no Auth emulator" in done.stderr and "make run" in done.stderr
    # a running stack started with --no-auth-emulator (this process stands in for its
    # supervisor: the state file names a live pid)
    state = tmp_path / "stack.json"
    state.write_text(
        json.dumps(
            {
                "supervisorPid": os.getpid(),
                "project": PROJECT,
                "region": "us-central1",
                "functionsUrl": "http://127.0.0.1:1",
                "sandboxUrl": "http://127.0.0.1:1",
                "firestoreHost": backends.firestore_host,
                "authEmulatorHost": None,
                "redisUrl": "redis://127.0.0.1:1/0",
            }
        )
    )
    done = grant(None, backends, "--role", "ops", "a@example.com", PACK391_STACK_STATE=str(state))
    assert done.returncode == 1 and "--no-auth-emulator" in done.stderr
