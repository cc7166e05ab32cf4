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
the SDK's ``__firebase_endpoint__`` so ``firebase deploy`` discovers them.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

import flask
from firebase_admin import auth as firebase_auth
from firebase_functions import https_fn, scheduler_fn
from firebase_functions.options import Timezone
from pydantic import BaseModel, ValidationError

from shared.auth import Caller, Role, authorize, caller_from_token
from shared.clock import utc_now
from shared.errors import InvalidInput, to_https_error
from shared.ratelimit.middleware import door, enforce
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
    err = https_fn.HttpsError(code, message)
    error: dict[str, Any] = {
        "status": str(err._http_error_code.canonical_name.value),
        "message": message,
    }
    if details:
        error["details"] = details
    body = json.dumps({"error": error})
    response = flask.Response(body, status=err._http_error_code.status, mimetype="application/json")
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


def malformed_body_problem(request: flask.Request) -> str | None:
    """Why a POST is not a valid callable request, or None when it is.

    Size and nesting depth are checked on the raw bytes first, so an oversized or
    50,000-deep body is refused before any parser (ours or the SDK's) sees it."""
    content_type = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        return "Content-Type must be application/json"
    too_large = f"request body is larger than {MAX_BODY_BYTES} bytes"
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return too_large
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY_BYTES:
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


def _staff_token(request: flask.Request, role: Role) -> bool:
    """True when the request carries a valid ID token of a caller with ``role`` (ops or
    admin). Verified here only for requests from a blocked address, before the SDK
    verifies it again, so that operators reach their tools during an attack."""
    if role is Role.USER:
        return False
    header = request.headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    try:
        claims = firebase_auth.verify_id_token(token.strip())
    except Exception:  # any bad token: not staff
        return False
    return Caller(uid=str(claims.get("uid") or ""), claims=dict(claims)).has(role)


def front_door(request: flask.Request, role: Role) -> flask.Response | None:
    """Count every request per client address before its token is verified (so floods
    without a valid token are seen and blocked), and turn blocked addresses away, except
    for a valid ops or admin caller of an ops or admin function. None: go on."""
    request_id = request_id_of(request)
    try:
        blocked_ms = door(request, utc_now())
    except Exception as exc:  # a misconfigured front door, never an HTML 500
        err = to_https_error(exc, request_id)
        return _error_response(err.code, err.message, err.details)
    if not blocked_ms or _staff_token(request, role):
        return None
    retry = math.ceil(blocked_ms / 1000)
    return _error_response(
        https_fn.FunctionsErrorCode.RESOURCE_EXHAUSTED,
        f"this address is blocked by DDoS protection; retry in {retry}s",
        {"retryAfterSec": retry, "reason": Reason.IP_BLOCK.value, "requestId": request_id},
    )


Handler = Callable[[CallContext, M], Any]
Endpoint = Callable[[flask.Request], flask.Response]


def callable_function(
    *,
    role: Role,
    request: type[M],
    rate_limit: EndpointClass | None = EndpointClass.GENERAL,
    **options: Any,
) -> Callable[[Handler[M]], Endpoint]:
    """Declare a ``pack391_*`` callable: ``role`` is the one role it needs;
    ``rate_limit`` the endpoint class its calls count against (None: not limited,
    for functions that count requests themselves)."""

    def decorator(handler: Handler[M]) -> Endpoint:
        @functools.wraps(handler)
        def body(req: https_fn.CallableRequest[Any]) -> Any:
            request_id = request_id_of(req.raw_request)
            try:
                auth = req.auth
                caller = caller_from_token(auth.uid if auth else None, auth.token if auth else None)
                authorize(caller, role)
                now = utc_now()
                if rate_limit is not None:
                    # an ops/admin caller of an ops/admin function: its own bucket, never
                    # an IP block or DDoS mode (the operators must reach their tools)
                    staff = role is not Role.USER
                    enforce(rate_limit, req.raw_request, caller.uid, now, staff=staff)
                parsed = parse_request(request, req.data)
                ctx = CallContext(caller, request_id, now, req.raw_request)
                return to_wire(handler(ctx, parsed))
            except Exception as exc:  # the one catch-all: see to_https_error
                raise to_https_error(exc, request_id) from exc

        sdk_endpoint = cast(Endpoint, https_fn.on_call(**options)(cast(Any, body)))

        @functools.wraps(sdk_endpoint)
        def endpoint(raw: flask.Request) -> flask.Response:
            # every request is counted; a CORS preflight (no token, harmless) is never refused
            turned_away = front_door(raw, role)
            if turned_away is not None and raw.method != "OPTIONS":
                return turned_away
            if raw.method == "POST":
                problem = malformed_body_problem(raw)
                if problem is not None:
                    return _error_response(https_fn.FunctionsErrorCode.INVALID_ARGUMENT, problem)
            response: flask.Response = sdk_endpoint(raw)
            return response

        endpoint.__pack391_role__ = role  # type: ignore[attr-defined]
        endpoint.__pack391_rate_limit__ = rate_limit  # type: ignore[attr-defined]
        return endpoint

    return decorator


def scheduled_function(
    *, schedule: str, timezone: str = "Etc/UTC", **options: Any
) -> Callable[[Callable[[ScheduledContext], None]], Endpoint]:
    """Declare a scheduled ``pack391_*`` function (unix-cron ``schedule``).

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
            schedule=schedule, timezone=Timezone(timezone), **options
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
