"""The front door: the checks every callable request meets before the SDK sees it.

- :func:`verified_claims`: the request's ID token, verified once here (and remembered per
  instance until it expires);
- :func:`front_door`: the request counted at the door
  (:func:`shared.ratelimit.middleware.door`), and turned away when its address is blocked,
  or, without a valid token, when the address's pre-auth bucket is empty or a held block
  refuses it;
- :func:`wrong_role`: a valid token with the wrong role draws from the pre-auth bucket too.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime
from typing import Any

import flask
from firebase_admin import auth as firebase_auth
from firebase_functions import https_fn

from shared.auth import Caller, Role
from shared.clock import utc_now
from shared.edge_errors import to_https_error
from shared.edge_request import request_id_of
from shared.edge_response import error_response
from shared.errors import PermissionDenied, RateLimited
from shared.ratelimit.door import Credential, DoorVerdict
from shared.ratelimit.middleware import client_of, default_limiter, door
from shared.ratelimit.policy import Reason

TOKEN_CACHE_MAX = 4096
"""Verified ID tokens this instance remembers (until each expires): the front door
verifies a token once, not once per request. Only tokens that verified are kept, so
bad tokens cannot fill it."""

_tokens: dict[str, tuple[dict[str, Any], float]] = {}
_tokens_lock = threading.Lock()
_CLAIMS = "pack391.door_claims"


def verified_claims(request: flask.Request) -> dict[str, Any] | None:
    """The claims of the request's Firebase ID token when it verifies, else None (no
    token, not a bearer token, a bad or expired one). Verified at the front door, before
    the SDK verifies it again, so that traffic without a valid token meets the pre-auth
    bucket and a service is known by its principal; remembered per request and, by
    token, per instance until the token expires."""
    if _CLAIMS in request.environ:
        cached: dict[str, Any] | None = request.environ[_CLAIMS]
        return cached
    claims = _verify(request.headers.get("Authorization") or "")
    request.environ[_CLAIMS] = claims
    return claims


def _verify(header: str) -> dict[str, Any] | None:
    if not header.startswith("Bearer "):  # exactly what the SDK accepts
        return None
    token = header.replace("Bearer ", "")
    now = time.time()
    hit = _tokens.get(token)
    if hit is not None and hit[1] > now:
        return hit[0]
    try:
        claims = dict(firebase_auth.verify_id_token(token))
    except Exception:  # any bad token: no valid credential
        return None
    expires = float(claims.get("exp") or 0)
    with _tokens_lock:
        if len(_tokens) >= TOKEN_CACHE_MAX:
            for key in [k for k, (_, exp) in _tokens.items() if exp <= now] or list(_tokens):
                del _tokens[key]
        _tokens[token] = (claims, expires)
    return claims


def forget_tokens() -> None:
    """Forget the verified tokens (tests that change the Auth configuration)."""
    with _tokens_lock:
        _tokens.clear()


def credential_of(claims: dict[str, Any] | None) -> Credential:
    if claims is None:
        return Credential.NONE
    if claims.get("service") is True:
        return Credential.SERVICE
    return Credential.USER


_REFUSALS = {
    Reason.IP_BLOCK: "this address is blocked by DDoS protection",
    Reason.ANON_REFUSED: (
        "this address takes only signed-in requests for now (DDoS protection): sign in"
    ),
    Reason.PREAUTH_LIMIT: "too many requests without a valid ID token from this address",
}


def _refusal(verdict: DoorVerdict, request_id: str) -> flask.Response:
    retry = max(1, math.ceil(verdict.retry_ms / 1000))
    return error_response(
        https_fn.FunctionsErrorCode.RESOURCE_EXHAUSTED,
        f"{_REFUSALS.get(verdict.reason, 'refused')}; retry in {retry}s",
        {"retryAfterSec": retry, "reason": verdict.reason.value, "requestId": request_id},
    )


def front_door(request: flask.Request, role: Role) -> flask.Response | None:
    """Count every request at the front door, before the SDK sees it, and turn away what
    must not go on. None: go on.

    - A CORS preflight (OPTIONS) is answered by the SDK, never counted or refused.
    - The ID token is verified here (:func:`verified_claims`). A trusted service is
      counted under its principal, never under its egress address.
    - Every other request is counted per client address; a DDoS-blocked address is
      turned away, except for a valid ops or admin caller of an ops or admin function
      (operators must reach their tools during an attack).
    - A request without a valid token also meets the address's pre-auth bucket and the
      refusal of held blocks (:meth:`shared.ratelimit.limiter.RateLimiter.door`)."""
    if request.method == "OPTIONS":
        return None
    request_id = request_id_of(request)
    try:
        claims = verified_claims(request)
        verdict = door(request, utc_now(), credential_of(claims))
    except Exception as exc:  # a misconfigured front door, never an HTML 500
        err = to_https_error(exc, request_id)
        return error_response(err.code, err.message, err.details)
    if not verdict.retry_ms:
        return None
    if (
        verdict.reason is Reason.IP_BLOCK
        and role in (Role.OPS, Role.ADMIN)
        and claims is not None
        and Caller(uid=str(claims.get("uid") or ""), claims=claims).has(role)
    ):
        return None
    return _refusal(verdict, request_id)


def wrong_role(
    request: flask.Request, now: datetime, exc: PermissionDenied, caller: Caller | None = None
) -> Exception:
    """A valid token with the wrong role draws from the address's pre-auth bucket: the
    refusal once it is empty, else the permission error itself.

    A staff caller (ops reaching for an admin function) is told the permission error and
    charged nothing: only the Admin SDK sets staff claims, so no attacker holds one, and
    during an attack (a refused address, a lockdown) an operator must learn that the
    role, not the address, is what stands in the way."""
    if caller is not None and caller.is_staff:
        return exc
    verdict = default_limiter().charge_preauth(client_of(request), now)
    if not verdict.retry_ms:
        return exc
    retry = max(1, math.ceil(verdict.retry_ms / 1000))
    return RateLimited(
        f"{_REFUSALS.get(verdict.reason, 'refused')}; retry in {retry}s",
        retry_after_sec=retry,
        reason=verdict.reason.value,
    )
