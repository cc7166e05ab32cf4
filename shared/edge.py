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
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

import flask
from firebase_functions import https_fn, scheduler_fn
from firebase_functions.options import Timezone
from pydantic import BaseModel, ValidationError

from shared.auth import Caller, Role, authorize, caller_from_token
from shared.clock import utc_now
from shared.errors import InvalidInput, to_https_error
from shared.ratelimit.middleware import enforce
from shared.ratelimit.policy import EndpointClass

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


def parse_request(model: type[M], data: Any) -> M:
    """Validate callable ``data`` with ``model``; the first problem names its field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput("data", f"must be an object, got {type(data).__name__}")
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


def _error_response(code: https_fn.FunctionsErrorCode, message: str) -> flask.Response:
    err = https_fn.HttpsError(code, message)
    body = json.dumps(
        {"error": {"status": str(err._http_error_code.canonical_name.value), "message": message}}
    )
    response = flask.Response(body, status=err._http_error_code.status, mimetype="application/json")
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def malformed_body_problem(request: flask.Request) -> str | None:
    """Why a POST is not a valid callable request, or None when it is."""
    content_type = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        return "Content-Type must be application/json"
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "request body is not valid JSON"
    if not isinstance(body, dict):
        return 'request body must be a JSON object {"data": ...}'
    if "data" not in body:
        return 'request body must have a "data" field'
    extra = sorted(key for key in body if key != "data")
    if extra:
        return f"request body has unknown fields: {', '.join(extra)}"
    return None


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
                    enforce(rate_limit, req.raw_request, caller.uid, now)
                parsed = parse_request(request, req.data)
                ctx = CallContext(caller, request_id, now, req.raw_request)
                return to_wire(handler(ctx, parsed))
            except Exception as exc:  # the one catch-all: see to_https_error
                raise to_https_error(exc, request_id) from exc

        sdk_endpoint = cast(Endpoint, https_fn.on_call(**options)(cast(Any, body)))

        @functools.wraps(sdk_endpoint)
        def endpoint(raw: flask.Request) -> flask.Response:
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
        return cast(Endpoint, decorate(body))

    return decorator
