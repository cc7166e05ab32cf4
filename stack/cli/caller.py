"""The one HTTP caller of the ``pack391`` commands: where a function is, which bearer token
goes with a call, the callable protocol (POST ``{"data": ...}``, answer ``{"result": ...}``
or ``{"error": {"status", "message", "details"}}``) and :class:`CallFailed`.

Two endpoints:

- :func:`local`: the local stack (``pack391 serve``) at PACK391_PORT, with a token the
  local stack accepts for a role (or none). ``pack391 call`` uses it.
- :func:`target`: a deployed project when PACK391_FUNCTIONS_URL (e.g.
  ``https://us-central1-PROJECT.cloudfunctions.net``) is set, with PACK391_ID_TOKEN (a
  Firebase ID token) when set, refreshed before it expires and after a 401 when
  PACK391_TOKEN_UID is set (:mod:`stack.cli.deploy_token`); otherwise the local stack with
  a role token. The deploy commands use it through :func:`invoke`.

Nothing is printed here except by :func:`report`, which prints a failure the way the
CLI always has and returns the command's exit code.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import requests

from shared.config import FUNCTIONS_REGION, project_id
from stack.cli.deploy_token import TOKENS, RefreshFailed
from stack.platform.tokens import role_token

UNREACHABLE = "UNREACHABLE"
"""CallFailed.status when no HTTP answer came (connection refused, timeout)."""
NOT_JSON = "NOT_JSON"
"""CallFailed.status when the answer was not a JSON body (a proxy's page, a crash)."""

EXIT_UNREACHABLE = 3
EXIT_FAILED = 1


def local_port() -> int:
    """PACK391_PORT: where ``pack391 serve`` serves the functions (5001)."""
    return int(os.environ.get("PACK391_PORT", "5001"))


def local_base_url() -> str:
    """The local functions server, ``http://127.0.0.1:PORT``."""
    return f"http://127.0.0.1:{local_port()}"


def local_functions_url() -> str:
    """The local stack's base of the functions, ``http://127.0.0.1:PORT/PROJECT/REGION``."""
    return f"{local_base_url()}/{project_id()}/{FUNCTIONS_REGION.value}"


def function_url(name: str) -> str:
    """The local stack's URL of function ``name``."""
    return f"{local_functions_url()}/{name}"


@dataclass(frozen=True)
class Endpoint:
    """Where the functions are (``base/NAME`` is one) and the bearer token (None: none)."""

    base: str
    token: str | None

    def url(self, name: str) -> str:
        return f"{self.base.rstrip('/')}/{name}"


def local(role: str = "admin", uid: str | None = None) -> Endpoint:
    """The local stack with a token for ``role`` (``"none"``: no Authorization header)."""
    token = None if role == "none" else role_token(project_id(), role, uid)
    return Endpoint(local_functions_url(), token)


def target(role: str = "admin") -> Endpoint:
    """PACK391_FUNCTIONS_URL (a deployed project) else the local stack; PACK391_ID_TOKEN
    (a deployed project's Firebase ID token) else a local token for ``role``.

    A deployed project's token is refreshed when PACK391_TOKEN_UID is set and it expires
    within 5 minutes (:mod:`stack.cli.deploy_token`); CallFailed(UNAUTHENTICATED) when a
    needed fresh token cannot be minted."""
    remote = os.environ.get("PACK391_FUNCTIONS_URL", "").rstrip("/")
    given = os.environ.get("PACK391_ID_TOKEN", "")
    if remote and TOKENS.refreshable():
        try:
            given = TOKENS.current(given)
        except RefreshFailed as exc:
            error = {"status": "UNAUTHENTICATED", "message": str(exc)}
            raise CallFailed(remote, "UNAUTHENTICATED", str(exc), error=error) from None
    token = given or role_token(project_id(), role)
    return Endpoint(remote or local_functions_url(), token)


class CallFailed(Exception):
    """A call that answered an error, or could not be made.

    ``status`` is the callable error's status (``INVALID_ARGUMENT``, ``PERMISSION_DENIED``,
    ...), or :data:`UNREACHABLE` / :data:`NOT_JSON`; ``message`` its message (the
    connection error, or the start of the body); ``details`` the error's details;
    ``error`` the answered error object as sent (what ``pack391`` prints)."""

    def __init__(
        self,
        url: str,
        status: str,
        message: str,
        details: Any = None,
        *,
        http_status: int | None = None,
        error: Any = None,
    ) -> None:
        super().__init__(f"{url}: {status}: {message}")
        self.url = url
        self.status = status
        self.message = message
        self.details = details
        self.http_status = http_status
        self.error = error

    @property
    def exit_code(self) -> int:
        """3 when the functions could not be reached, else 1."""
        return EXIT_UNREACHABLE if self.status == UNREACHABLE else EXIT_FAILED


def call(endpoint: Endpoint, name: str, data: Any, timeout: float = 60.0) -> Any:
    """Call ``name`` with ``data`` over the callable protocol: its result, or CallFailed."""
    url = endpoint.url(name)
    headers = {"Content-Type": "application/json"}
    if endpoint.token is not None:
        headers["Authorization"] = f"Bearer {endpoint.token}"
    try:
        response = requests.post(url, json={"data": data}, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise CallFailed(url, UNREACHABLE, str(exc)) from None
    try:
        body = response.json()
    except ValueError:
        raise CallFailed(
            url, NOT_JSON, response.text[:500], http_status=response.status_code
        ) from None
    if isinstance(body, dict) and "result" in body:
        return body["result"]
    error = body.get("error", body) if isinstance(body, dict) else body
    fields = error if isinstance(error, dict) else {}
    raise CallFailed(
        url,
        str(fields.get("status", "UNKNOWN")),
        str(fields.get("message", "")),
        fields.get("details"),
        http_status=response.status_code,
        error=error,
    )


def invoke(name: str, data: Any, role: str = "admin", timeout: float = 60.0) -> Any:
    """Call ``name`` on :func:`target` (a deployed project, or the local stack).

    On a deployed project with PACK391_TOKEN_UID set, an answer of HTTP 401 mints a fresh
    token and the call is made once more with it (a callable checks the token before it
    runs, so the refused call did nothing)."""
    endpoint = target(role)
    try:
        return call(endpoint, name, data, timeout)
    except CallFailed as failed:
        remote = bool(os.environ.get("PACK391_FUNCTIONS_URL"))
        if failed.http_status != 401 or not remote or endpoint.token is None:
            raise
        try:
            fresh = TOKENS.after_unauthenticated(
                os.environ.get("PACK391_ID_TOKEN", ""), endpoint.token
            )
        except RefreshFailed as exc:
            print(f"pack391: {exc}", file=sys.stderr)
            raise failed from None
        if fresh is None:
            raise
    return call(Endpoint(endpoint.base, fresh), name, data, timeout)


def report(failed: CallFailed, prefix: str = "pack391", where: str | None = None) -> int:
    """Print ``failed`` on stderr as the CLI prints a failed call; the exit code.

    ``where`` names what could not be reached (default: the function's URL)."""
    if failed.status == UNREACHABLE:
        print(f"{prefix}: cannot reach {where or failed.url}: {failed.message}", file=sys.stderr)
    elif failed.status == NOT_JSON:
        print(f"{prefix}: HTTP {failed.http_status}: {failed.message}", file=sys.stderr)
    else:
        print(json.dumps(failed.error, indent=2, sort_keys=True), file=sys.stderr)
    return failed.exit_code
