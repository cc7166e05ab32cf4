"""The deployed project's admin ID token, refreshed while a pipeline runs.

A Firebase ID token lives one hour; a deploy plus its canary (``pack391 deploy wait``) can
take longer. When PACK391_TOKEN_UID names the Firebase user to sign in as (with
Application Default Credentials able to sign a custom token, FIREBASE_WEB_API_KEY and, under
workload identity federation, PACK391_DEPLOY_SERVICE_ACCOUNT: what ``pack391 deploy token``
uses), the deploy commands mint a fresh token

- before a call, when the current one expires within :data:`REFRESH_MARGIN_SEC` (its
  ``exp`` claim, read without verifying the signature: only the issuer verifies it, and a
  token we cannot read is treated as expiring);
- once after an answer of HTTP 401 (the callable refused the token before running: a
  retry cannot repeat any work).

The fresh token lives in this process (each workflow step is its own process and starts
from PACK391_ID_TOKEN, refreshing when that one is near its end). Without PACK391_TOKEN_UID
the token is used as given, as before.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

IDENTITY_TOOLKIT = "https://identitytoolkit.googleapis.com"
"""Where a custom token is exchanged for an ID token (PACK391_IDENTITY_TOOLKIT_URL)."""

REFRESH_MARGIN_SEC = 300.0
"""A token that expires within 5 minutes is replaced before a call."""

UID_ENV = "PACK391_TOKEN_UID"
"""The Firebase user id the refreshed tokens are minted for (deploy-bot in the workflow)."""

Minter = Callable[[str, str, str | None], str]
"""(uid, web API key, signing service account) -> a fresh ID token."""


def expires_at(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), unverified; None when the token
    is not a JWT with a numeric ``exp``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def expiring(token: str, now: float | None = None, margin: float = REFRESH_MARGIN_SEC) -> bool:
    """Whether ``token`` expires within ``margin`` seconds (an unreadable one: yes)."""
    exp = expires_at(token)
    return exp is None or exp - (time.time() if now is None else now) <= margin


def _mint(uid: str, api_key: str, service_account: str | None) -> str:
    # the one minting code path, `pack391 deploy token`'s
    return mint_id_token(uid, api_key, service_account)


class RefreshFailed(Exception):
    """A fresh token was needed and could not be minted."""


class DeployToken:
    """The token the deploy commands send, refreshed as the module docstring says."""

    def __init__(self, mint: Minter = _mint) -> None:
        self._mint = mint
        self._lock = threading.Lock()
        self._fresh: tuple[str, str] | None = None
        """(the PACK391_ID_TOKEN it replaces, the fresh token)"""
        self.minted = 0

    @staticmethod
    def refreshable() -> bool:
        return bool(os.environ.get(UID_ENV))

    def current(self, given: str) -> str:
        """The token to send now, for ``given`` (PACK391_ID_TOKEN; may be empty)."""
        with self._lock:
            token = self._latest(given)
            if not self.refreshable() or (token and not expiring(token)):
                return token
            try:
                return self._refresh(given)
            except RefreshFailed as exc:
                if token and not expiring(token, margin=0.0):  # still valid: use it, say so
                    print(f"pack391: {exc}; using the current token", file=sys.stderr)
                    return token
                raise

    def after_unauthenticated(self, given: str, sent: str) -> str | None:
        """A fresh token after ``sent`` was refused (401), or None when refreshing is off.

        Another thread may have refreshed meanwhile: its token is returned then."""
        if not self.refreshable():
            return None
        with self._lock:
            latest = self._latest(given)
            if latest != sent and latest and not expiring(latest):
                return latest
            return self._refresh(given)

    def _latest(self, given: str) -> str:
        if self._fresh is not None and self._fresh[0] == given:
            return self._fresh[1]
        return given

    def _refresh(self, given: str) -> str:
        uid = os.environ.get(UID_ENV, "")
        api_key = os.environ.get("FIREBASE_WEB_API_KEY", "")
        account = os.environ.get("PACK391_DEPLOY_SERVICE_ACCOUNT") or None
        if not api_key:
            raise RefreshFailed(f"{UID_ENV} is set but FIREBASE_WEB_API_KEY is not")
        try:
            fresh = self._mint(uid, api_key, account)
        except Exception as exc:  # credentials, IAM, the Identity Toolkit: all one failure
            raise RefreshFailed(f"cannot mint a fresh ID token for {uid}: {exc}") from exc
        self._fresh = (given, fresh)
        self.minted += 1
        return fresh


TOKENS = DeployToken()
"""The process's token (:func:`stack.cli.caller.target` and :func:`~stack.cli.caller.invoke`)."""


def signing_account(credential: Any) -> str | None:
    """The service account whose key signs custom tokens through IAM ``signBlob`` when the
    Application Default Credentials hold no key of their own: workload identity federation
    (google-github-actions/auth writes an ``external_account`` file that impersonates a
    service account) names it in its impersonation URL. None for a key file (it signs
    itself) or when unknown (firebase-admin then asks the metadata server)."""
    from google.oauth2 import service_account

    if isinstance(credential, service_account.Credentials):
        return None
    email = getattr(credential, "service_account_email", None)
    return email if isinstance(email, str) and "@" in email else None


def mint_id_token(uid: str, api_key: str, service_account: str | None = None) -> str:
    """A Firebase ID token with the ``admin`` claim for ``uid``: a custom token signed as
    the service account of the Application Default Credentials (a key file's own key, or
    IAM ``signBlob`` for ``service_account`` / the impersonated account of workload
    identity federation), exchanged through the Identity Toolkit
    (``accounts:signInWithCustomToken``) with the project's web API key."""
    import firebase_admin
    from firebase_admin import auth, credentials

    adc = credentials.ApplicationDefault()
    account = service_account or signing_account(adc.get_credential())
    app = firebase_admin.initialize_app(
        adc,
        {"serviceAccountId": account} if account else None,
        name=f"pack391-deploy-{uuid.uuid4().hex}",
    )
    try:
        custom = auth.create_custom_token(uid, {"admin": True}, app=app).decode()
    finally:
        firebase_admin.delete_app(app)
    base = os.environ.get("PACK391_IDENTITY_TOOLKIT_URL", IDENTITY_TOOLKIT).rstrip("/")
    response = requests.post(
        f"{base}/v1/accounts:signInWithCustomToken?key={api_key}",
        json={"token": custom, "returnSecureToken": True},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["idToken"]
    return token
