"""The edge: how a service function becomes a deployed ``pack391_*`` function.

:func:`callable_function` turns ``handler(ctx, request_model) -> model`` into a
Firebase callable (``https_fn.on_call``) that

1. answers a malformed body (not JSON, not an object, keys other than ``data``)
   with ``400 INVALID_ARGUMENT`` in the callable error format: the SDK itself
   would answer ``500 INTERNAL`` for some of these;
2. authenticates and authorizes the caller against the one declared role, then
   counts the call against its rate-limit class (``RESOURCE_EXHAUSTED`` when over);
3. parses ``data`` with the request model: a problem is ``INVALID_ARGUMENT``
   naming the field;
4. calls the handler with the clock read once (``ctx.now``) and a request id;
5. translates domain errors in one place, and turns anything unexpected into
   ``INTERNAL`` carrying only the request id (the exception goes to the log).

:func:`scheduled_function` does the same for Cloud Scheduler triggers. Both keep
the SDK's ``__firebase_endpoint__`` so ``firebase deploy`` discovers them, each with a
ceiling on its instances and the front door's deploy shape (:func:`callable_options`,
:func:`scheduled_options`); a user callable can require App Check
(:func:`sdk_callable`).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, Unpack, cast

import flask
from firebase_admin import auth as firebase_auth
from firebase_functions import https_fn, scheduler_fn
from firebase_functions.options import Timezone
from pydantic import BaseModel, ValidationError

from shared.auth import Caller, Role, authorize, caller_from_token
from shared.clock import utc_now
from shared.config import (
    ENFORCE_APP_CHECK,
    MAX_INSTANCES_OPS,
    MAX_INSTANCES_SCHEDULED,
    MAX_INSTANCES_USER,
)
from shared.edge_errors import http_status_of, to_https_error
from shared.edge_options import CallableOptions, ScheduledOptions
from shared.errors import InvalidInput, PermissionDenied, RateLimited
from shared.options import callable_ingress, callable_secrets, redis_secrets
from shared.ratelimit.limiter import Credential, DoorVerdict
from shared.ratelimit.middleware import client_of, default_limiter, door, enforce
from shared.ratelimit.policy import EndpointClass, Reason

log = logging.getLogger("pack391")

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class CallContext:
    """What a callable handler knows about its call besides the request model."""

    caller: Caller
    request_id: str
    now: datetime
    raw_request: flask.Request


@dataclass(frozen=True)
class EdgeSpec(Generic[M]):
    """What :func:`callable_function` declared for a callable, kept on the endpoint as
    ``endpoint.pack391_edge`` (:func:`edge_spec_of`) for the tooling and the tests that
    check every function (roles, rate-limit classes, request models)."""

    role: Role
    """The one role a caller needs."""
    request: type[M]
    """The model ``data`` is parsed with."""
    rate_limit: EndpointClass | None
    """The rate-limit class its calls count against; None: not limited by the edge."""


EDGE_SPEC_ATTR = "pack391_edge"
"""The endpoint attribute holding its :class:`EdgeSpec`."""


def edge_spec_of(endpoint: object) -> EdgeSpec[Any] | None:
    """The :class:`EdgeSpec` of a callable made by :func:`callable_function`, else None
    (a scheduled or task-queue function, anything else)."""
    spec = getattr(endpoint, EDGE_SPEC_ATTR, None)
    return spec if isinstance(spec, EdgeSpec) else None


@dataclass(frozen=True)
class ScheduledContext:
    """What a scheduled handler knows about its run."""

    job_name: str | None
    schedule_time: datetime
    request_id: str
    now: datetime


def request_id_of(request: flask.Request) -> str:
    """The Cloud Trace id when Google's front end set one, else a fresh id."""
    trace = request.headers.get("X-Cloud-Trace-Context", "")
    trace_id = trace.split("/", 1)[0].strip()
    return trace_id or uuid.uuid4().hex


MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer magnitude a request may carry: JavaScript's ``Number.MAX_SAFE_INTEGER``,
the most a web client can send exactly, and the most Redis/Lua (doubles) holds exactly.
Larger ones would pass a model's ``ge``-only bounds and then fail in Firestore (int64) or
Redis as ``INTERNAL``."""


def unsafe_number_problem(data: Any) -> tuple[str, str] | None:
    """The first number in ``data`` no backend can hold, as ``(field path, problem)``:
    an integer beyond :data:`MAX_SAFE_INTEGER` or a float that is NaN or infinite (the
    body check refuses the ``NaN``/``Infinity`` literals; ``1e999`` still parses to
    infinity). The path is dotted camelCase as sent, list indexes as numbers."""
    stack: list[tuple[str, Any]] = [("", data)]  # iterative: a task body is not depth-checked
    while stack:
        path, value = stack.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            if abs(value) > MAX_SAFE_INTEGER:
                return path, f"must be between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return path, "must be a finite number (NaN/Infinity are not JSON)"
        elif isinstance(value, dict):
            items = [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
            stack.extend(reversed(items))  # first key on top: problems found in sent order
        elif isinstance(value, list):
            items = [(f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value)]
            stack.extend(reversed(items))
    return None


def parse_request(model: type[M], data: Any) -> M:
    """Validate callable ``data`` with ``model``; the first problem names its field.

    Numbers no backend can hold (see :func:`unsafe_number_problem`) are refused first,
    whatever the model says."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput("data", f"must be an object, got {type(data).__name__}")
    unsafe = unsafe_number_problem(data)
    if unsafe is not None:
        raise InvalidInput(*unsafe)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_context=False, include_input=False)
        first = problems[0]
        field = ".".join(str(part) for part in first["loc"])
        return_problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in problems
        ]
        raise InvalidInput(field, first["msg"], problems=return_problems) from None


def to_wire(result: Any) -> Any:
    """Handler results as plain JSON: models dumped by alias with ISO timestamps."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True)
    if isinstance(result, list):
        return [to_wire(item) for item in result]
    if isinstance(result, dict):
        return {key: to_wire(value) for key, value in result.items()}
    return result


def _error_response(
    code: https_fn.FunctionsErrorCode, message: str, details: dict[str, Any] | None = None
) -> flask.Response:
    leave_body_unread()  # every caller refuses the request here: nothing reads it later
    status, http_status = http_status_of(code)
    error: dict[str, Any] = {"status": status, "message": message}
    if details:
        error["details"] = details
    body = json.dumps({"error": error})
    response = flask.Response(body, status=http_status, mimetype="application/json")
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


MAX_BODY_BYTES = 1 << 20
"""Largest callable request body accepted (1 MiB), refused before it is parsed. The
largest request any model accepts is a few kB; Cloud Run itself would take 32 MiB."""

MAX_BODY_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a request body, checked on the raw
bytes before anything parses them: ``json.loads`` recurses once per level and raises
``RecursionError`` (an HTML 500) near 1,000 levels. The deepest model nests 4 levels."""

_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
"""A JSON string literal with its backslash escapes; an unterminated one runs to the end.
Possessive and always matching from any quote, so cutting strings out stays linear."""
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_CURLY_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


def nests_deeper_than(raw: bytes, limit: int) -> bool:
    """Whether the JSON text ``raw`` nests arrays/objects more than ``limit`` levels deep,
    decided without parsing it (and without a Python loop over its bytes).

    String literals are cut out (brackets in strings do not count), the rest is reduced to
    its brackets, and each pass removes every innermost ``[]`` pair: one level. A pair still
    there after ``limit`` passes means deeper. Brackets never closed (a truncated body) are
    levels too, since the parser recurses into them before it finds the truncation; for a
    malformed body the count is an upper bound, which only makes its refusal come earlier.
    Cost: one regex pass and at most ``limit`` byte replaces (about 1 ms per MiB each)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(_CURLY_AS_SQUARE, _NOT_A_BRACKET)
    levels = 0
    while b"[]" in brackets:
        if levels == limit:
            return True
        brackets = brackets.replace(b"[]", b"")
        levels += 1
    # Left: closers never opened, then openers never closed ("]]][[").
    return levels + brackets.count(b"[") > limit


class _NotJsonConstant(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity``: Python's json reads them, JSON has no such thing."""


def _refuse_constant(name: str) -> Any:
    raise _NotJsonConstant(name)


def leave_body_unread() -> None:
    """The current request is refused before its body is read (the front door, a wrong
    Content-Type, a Content-Length over the limit): make sure nothing reads it after the
    answer either. functions-framework, the server of a deployed function, calls
    ``request.get_data()`` after every response ("read the entire request before
    responding"), which would read a refused body whole, up to Cloud Run's 32 MiB, into
    memory. An empty cached body stops that; a body already (partly) read stays cached."""
    if flask.has_request_context() and getattr(flask.request, "_cached_data", None) is None:
        flask.request._cached_data = b""


BODY_READ_CHUNK = 64 * 1024
"""Bytes asked of the request stream at a time while reading a body (:func:`read_body`)."""


def read_body(request: flask.Request, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes.

    Read from the stream in chunks and never more than ``limit + 1`` bytes, so a chunked
    body (``Transfer-Encoding: chunked``, no ``Content-Length``) is refused as soon as it
    passes the limit instead of being read whole first (``get_data`` reads to the end).
    What was read becomes the request's cached body (werkzeug's ``get_data`` returns
    ``_cached_data`` when set), so the SDK's ``request.get_json()`` and ``request.data``
    see exactly these bytes. For a body too long that is its first ``limit + 1`` bytes,
    the rest left unread: functions-framework (what a deployed function runs) calls
    ``request.get_data()`` after every response ("read the entire request before
    responding"), which would otherwise read the whole body into memory after all. The
    request goes no further than its refusal, so nothing takes the truncated body for the
    real one."""
    cached = getattr(request, "_cached_data", None)
    if isinstance(cached, bytes):
        return cached if len(cached) <= limit else None
    stream = request.stream
    parts: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(BODY_READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    raw = b"".join(parts)
    request._cached_data = raw
    return raw if total <= limit else None


def malformed_body_problem(request: flask.Request) -> str | None:
    """Why a POST is not a valid callable request, or None when it is.

    Size and nesting depth are checked on the raw bytes first, so an oversized or
    50,000-deep body is refused before any parser (ours or the SDK's) sees it; the size
    while reading (:func:`read_body`), never after reading a chunked body whole."""
    content_type = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        return "Content-Type must be application/json"
    too_large = f"request body is larger than {MAX_BODY_BYTES} bytes"
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return too_large
    raw = read_body(request, MAX_BODY_BYTES)
    if raw is None:  # longer than the limit, whatever Content-Length said (or did not)
        return too_large
    if nests_deeper_than(raw, MAX_BODY_DEPTH):
        return f"request body nests deeper than {MAX_BODY_DEPTH} levels"
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except _NotJsonConstant:
        return "request body is not valid JSON: NaN/Infinity are not JSON"
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "request body is not valid JSON"
    if not isinstance(body, dict):
        return 'request body must be a JSON object {"data": ...}'
    if "data" not in body:
        return 'request body must have a "data" field'
    extra = sorted(key for key in body if key != "data")
    if extra:
        return f"request body has unknown fields: {', '.join(extra)}"
    return None


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
    return _error_response(
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
        return _error_response(err.code, err.message, err.details)
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


def _wrong_role(request: flask.Request, now: datetime, exc: PermissionDenied) -> Exception:
    """A valid token with the wrong role draws from the address's pre-auth bucket: the
    refusal once it is empty, else the permission error itself."""
    verdict = default_limiter().charge_preauth(client_of(request), now)
    if not verdict.retry_ms:
        return exc
    retry = max(1, math.ceil(verdict.retry_ms / 1000))
    return RateLimited(
        f"{_REFUSALS.get(verdict.reason, 'refused')}; retry in {retry}s",
        retry_after_sec=retry,
        reason=verdict.reason.value,
    )


Handler = Callable[[CallContext, M], Any]
Endpoint = Callable[[flask.Request], flask.Response]


def callable_function(
    *,
    role: Role,
    request: type[M],
    rate_limit: EndpointClass | None = EndpointClass.GENERAL,
    **options: Unpack[CallableOptions],
) -> Callable[[Handler[M]], Endpoint]:
    """Declare a ``pack391_*`` callable: ``role`` is the one role it needs;
    ``rate_limit`` the endpoint class its calls count against (None: not limited,
    for functions that count requests themselves). ``options`` are the SDK's
    ``HttpsOptions`` fields, typed as the SDK types them (:mod:`shared.edge_options`):
    a misspelt one is a type error."""
    spec = EdgeSpec(role, request, rate_limit)

    def decorator(handler: Handler[M]) -> Endpoint:
        @functools.wraps(handler)
        def body(req: https_fn.CallableRequest[Any]) -> Any:
            request_id = request_id_of(req.raw_request)
            try:
                auth = req.auth
                caller = caller_from_token(auth.uid if auth else None, auth.token if auth else None)
                now = utc_now()
                try:
                    authorize(caller, role)
                except PermissionDenied as denied:
                    raise _wrong_role(req.raw_request, now, denied) from None
                if rate_limit is not None:
                    # an ops/admin caller of an ops/admin function: its own bucket, never
                    # an IP block or DDoS mode (the operators must reach their tools); a
                    # trusted service's own call: its principal's bucket
                    staff = role in (Role.OPS, Role.ADMIN)
                    enforce(
                        rate_limit,
                        req.raw_request,
                        caller.uid,
                        now,
                        staff=staff,
                        service=caller.is_service and not staff,
                        claims=caller.claims,
                    )
                parsed = parse_request(request, req.data)
                ctx = CallContext(caller, request_id, now, req.raw_request)
                return to_wire(handler(ctx, parsed))
            except Exception as exc:  # the one catch-all: see to_https_error
                raise to_https_error(exc, request_id) from exc

        sdk_endpoint = sdk_callable(role, options, body)  # the bill's ceiling: see there

        @functools.wraps(sdk_endpoint)
        def endpoint(raw: flask.Request) -> flask.Response:
            # every request but a CORS preflight is counted, and may be turned away
            turned_away = front_door(raw, role)
            if turned_away is not None:
                return turned_away
            if raw.method == "POST":
                problem = malformed_body_problem(raw)
                if problem is not None:
                    return _error_response(https_fn.FunctionsErrorCode.INVALID_ARGUMENT, problem)
            response: flask.Response = sdk_endpoint(raw)
            return response

        setattr(endpoint, EDGE_SPEC_ATTR, spec)
        return endpoint

    return decorator


def scheduled_function(
    *,
    schedule: str,
    timezone: str = "Etc/UTC",
    uses_redis: bool = True,
    **options: Unpack[ScheduledOptions],
) -> Callable[[Callable[[ScheduledContext], None]], Endpoint]:
    """Declare a scheduled ``pack391_*`` function (unix-cron ``schedule``). ``uses_redis``
    (the default): it binds the Redis AUTH secret when Redis needs one
    (:func:`shared.options.redis_secrets`). ``options`` are the SDK's ``ScheduleOptions``
    fields, typed as the SDK types them (:mod:`shared.edge_options`).

    In production only Cloud Scheduler's service account may invoke it (Cloud Run
    IAM); an error is logged and re-raised so the run is reported as failed and
    retried per ``retry_count``.

    Only a POST (what Cloud Scheduler, the local scheduler, ``pack391 trigger`` and the
    Firebase emulator's trigger URL send) runs the job. Anything else answers 200 with a
    note and runs nothing: the Firebase CLI's emulator sends each new worker a
    ``GET /__/health``, which functions-framework routes to the function, and that must
    not take a second backup.
    """

    def decorator(handler: Callable[[ScheduledContext], None]) -> Endpoint:
        @functools.wraps(handler)
        def body(event: scheduler_fn.ScheduledEvent) -> None:
            request_id = uuid.uuid4().hex
            ctx = ScheduledContext(event.job_name, event.schedule_time, request_id, utc_now())
            try:
                handler(ctx)
            except Exception:
                log.exception("scheduled %s failed (run %s)", handler.__name__, request_id)
                raise

        decorate = scheduler_fn.on_schedule(
            schedule=schedule,
            timezone=Timezone(timezone),
            **scheduled_options(options, uses_redis),
        )
        sdk_endpoint = cast(Endpoint, decorate(body))

        @functools.wraps(sdk_endpoint)  # keeps __firebase_endpoint__ for discovery
        def endpoint(raw: flask.Request) -> flask.Response:
            if raw.method != "POST":
                return not_a_run(raw.method, handler.__name__)
            response: flask.Response = sdk_endpoint(raw)
            return response

        return endpoint

    return decorator


def not_a_run(method: str, name: str) -> flask.Response:
    """The answer to a request that is not a scheduler run (a health check): 200, nothing run."""
    body = {"ran": False, "note": f"{name} runs only on a POST from the scheduler, not a {method}"}
    return flask.Response(json.dumps(body), status=200, mimetype="application/json")


# Bill ceiling ------------------------------------------------------------------------


def callable_options(role: Role, options: CallableOptions) -> dict[str, Any]:
    """The SDK options of a callable: what its decorator gives, plus

    - ``max_instances``: ``PACK391_MAX_INSTANCES_USER`` for user callables,
      ``PACK391_MAX_INSTANCES_OPS`` for ops and admin ones (param expressions the CLI
      resolves at deploy), unless the function sets its own;
    - ``ingress``: internal and Cloud Load Balancing in ``load-balancer`` mode
      (:func:`shared.options.callable_ingress`), unless the function sets its own;
    - ``secrets``: the Cloudflare origin secret in ``cloudflare`` mode, added to the
      function's own (:func:`shared.options.callable_secrets`).

    The last two follow ``PACK391_FRONT_DOOR`` as the deploy's discovery reads it."""
    merged: dict[str, Any] = dict(options)
    # a service's callables take an app backend's traffic (one call per user event)
    ceiling = MAX_INSTANCES_USER if role in (Role.USER, Role.SERVICE) else MAX_INSTANCES_OPS
    merged.setdefault("max_instances", ceiling)
    ingress = callable_ingress()
    if ingress is not None:
        merged.setdefault("ingress", ingress)
    extra = [s for s in callable_secrets() if s not in (merged.get("secrets") or [])]
    if extra:
        merged["secrets"] = [*(merged.get("secrets") or []), *extra]
    return merged


def scheduled_options(options: ScheduledOptions, uses_redis: bool = True) -> dict[str, Any]:
    """The SDK options of a scheduled function: ``max_instances``
    ``PACK391_MAX_INSTANCES_SCHEDULED`` unless the function sets its own; the Redis AUTH
    secret added to its own secrets when it ``uses_redis`` and Redis needs AUTH."""
    merged: dict[str, Any] = {"max_instances": MAX_INSTANCES_SCHEDULED, **options}
    own = list(merged.get("secrets") or [])
    extra = [s for s in redis_secrets() if uses_redis and s not in own]
    if extra:
        merged["secrets"] = [*own, *extra]
    return merged


def sdk_callable(role: Role, options: CallableOptions, body: Callable[..., Any]) -> Endpoint:
    """The SDK's callable endpoint for ``body`` with :func:`callable_options`.

    App Check: the SDK fixes ``enforce_app_check`` when it decorates, and the switch is a
    param read per request (``PACK391_ENFORCE_APP_CHECK``). So a user callable gets both
    SDK endpoints, and each request goes to the enforcing one while the param is true: a
    request without a valid ``X-Firebase-AppCheck`` token then answers ``401
    UNAUTHENTICATED`` from the SDK itself. An app backend (ID token claim ``service:
    true``, see :func:`_claims_as_sent`) is no app and has no App Check token: it goes to
    the other one. Ops and admin callables, and a function that sets
    ``enforce_app_check`` itself, keep one endpoint. The returned function carries the
    SDK's ``__firebase_endpoint__`` (one manifest entry: App Check is not in it)."""
    merged = callable_options(role, options)
    plain = cast(Endpoint, https_fn.on_call(**merged)(cast(Any, body)))
    if role is not Role.USER or "enforce_app_check" in options:
        return plain
    enforcing = cast(
        Endpoint, https_fn.on_call(**{**merged, "enforce_app_check": True})(cast(Any, body))
    )

    @functools.wraps(plain)
    def by_app_check_param(raw: flask.Request) -> flask.Response:
        enforce = ENFORCE_APP_CHECK.value and _claims_as_sent(raw).get("service") is not True
        return (enforcing if enforce else plain)(raw)

    return by_app_check_param


def _claims_as_sent(request: flask.Request) -> dict[str, Any]:
    """The claims of the request's bearer token as sent, *not verified*: enough to route
    it, never to trust it. Only routing depends on them (an app backend's token skips
    App Check), and the SDK verifies the same token before any handler runs: a forged
    ``service: true`` is ``401 UNAUTHENTICATED`` there, whichever endpoint it reached."""
    header = request.headers.get("Authorization") or ""
    if not header.startswith("Bearer "):
        return {}
    parts = header.removeprefix("Bearer ").strip().split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:  # not base64, not UTF-8, not JSON: no claims
        return {}
    return payload if isinstance(payload, dict) else {}
