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

This module composes the parts, and re-exports their public names (``from shared.edge
import ...`` is what the areas' ``edges.py`` use):

- :mod:`shared.edge_door`: the front door's checks before a call (the verified ID token,
  the door's count and refusals, the pre-auth charge of a wrong role);
- :mod:`shared.edge_request`: the request id, the body's checks on the raw bytes, the
  parse of ``data`` into the request model;
- :mod:`shared.edge_response`: results as JSON, the callable errors the edge writes
  itself, a scheduled function's answer to what is not a run;
- :mod:`shared.edge_sdk`: the SDK's endpoints with their ceiling on instances and the
  front door's deploy shape (:func:`callable_options`, :func:`scheduled_options`), and
  App Check for user callables (:func:`sdk_callable`);
- :mod:`shared.edge_errors`: the one translation of exceptions to callable errors.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, Unpack, cast

import flask
from firebase_functions import https_fn, scheduler_fn
from firebase_functions.options import Timezone
from pydantic import BaseModel

from shared import deadline
from shared.audit import Change
from shared.auth import Caller, Role, authorize, caller_from_token
from shared.clock import utc_now
from shared.edge_budget import call_budget_sec, record_skipped, scheduled_budget_sec
from shared.edge_door import (
    credential_of,
    forget_tokens,
    front_door,
    verified_claims,
    wrong_role,
)
from shared.edge_errors import dependency_stalled, to_https_error
from shared.edge_options import CallableOptions, ScheduledOptions
from shared.edge_request import (
    BODY_READ_CHUNK,
    MAX_BODY_BYTES,
    MAX_BODY_DEPTH,
    MAX_SAFE_INTEGER,
    leave_body_unread,
    malformed_body_problem,
    nests_deeper_than,
    parse_request,
    read_body,
    request_id_of,
    unsafe_number_problem,
)
from shared.edge_response import error_response, not_a_run, to_wire
from shared.edge_sdk import Endpoint, callable_options, scheduled_options, sdk_callable
from shared.errors import PermissionDenied
from shared.ratelimit.middleware import enforce
from shared.ratelimit.policy import EndpointClass
from shared.slo.objectives import callable_scope, class_scope
from shared.slo.recorder import default_recorder, is_bad_code

__all__ = [
    "BODY_READ_CHUNK",
    "EDGE_SPEC_ATTR",
    "MAX_BODY_BYTES",
    "MAX_BODY_DEPTH",
    "MAX_SAFE_INTEGER",
    "CallContext",
    "EdgeSpec",
    "Endpoint",
    "Handler",
    "ScheduledContext",
    "callable_function",
    "callable_options",
    "credential_of",
    "edge_spec_of",
    "error_response",
    "forget_tokens",
    "front_door",
    "leave_body_unread",
    "malformed_body_problem",
    "nests_deeper_than",
    "not_a_run",
    "parse_request",
    "read_body",
    "request_id_of",
    "scheduled_function",
    "scheduled_options",
    "sdk_callable",
    "to_wire",
    "unsafe_number_problem",
    "verified_claims",
]

log = logging.getLogger("pack391")

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class CallContext:
    """What a callable handler knows about its call besides the request model."""

    caller: Caller
    request_id: str
    now: datetime
    raw_request: flask.Request

    def change(self, action: str, reason: str | None) -> Change:
        """The audited change this call makes: the caller (uid, and the email its verified
        token carries, when it is a string), ``action``, ``reason``, the request id and
        the call's clock."""
        email = self.caller.claims.get("email")
        return Change(
            self.caller.uid,
            action,
            reason,
            self.request_id,
            self.now,
            actor_email=email if isinstance(email, str) else None,
        )


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
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The SDK options it was declared with (its ``timeout_sec`` sets its budget)."""

    def budget_sec(self) -> float:
        """How long one call may take (:func:`shared.edge_budget.call_budget_sec`: read
        from the params now, as each call reads it)."""
        return call_budget_sec(self.role, self.options)


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


Handler = Callable[[CallContext, M], Any]


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
    spec = EdgeSpec(role, request, rate_limit, dict(options))

    def decorator(handler: Handler[M]) -> Endpoint:
        sli_scopes = _sli_scopes(handler.__name__, role, rate_limit)

        @functools.wraps(handler)
        def body(req: https_fn.CallableRequest[Any]) -> Any:
            request_id = request_id_of(req.raw_request)
            started, status = time.perf_counter(), None
            with deadline.budget(call_budget_sec(role, options), handler.__name__) as spent:
                try:
                    return _answer(req, request_id)
                except Exception as exc:  # the one catch-all: see to_https_error
                    error = to_https_error(exc, request_id, spent)
                    status = error.code.value
                    raise error from exc
                finally:
                    default_recorder().record(
                        utc_now(),
                        sli_scopes,
                        is_bad_code(status),
                        (time.perf_counter() - started) * 1000,
                    )

        def _answer(req: https_fn.CallableRequest[Any], request_id: str) -> Any:
            auth = req.auth
            caller = caller_from_token(auth.uid if auth else None, auth.token if auth else None)
            now = utc_now()
            try:
                authorize(caller, role)
            except PermissionDenied as denied:
                raise wrong_role(req.raw_request, now, denied, caller) from None
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
                    return error_response(https_fn.FunctionsErrorCode.INVALID_ARGUMENT, problem)
            response: flask.Response = sdk_endpoint(raw)
            return response

        setattr(endpoint, EDGE_SPEC_ATTR, spec)
        return endpoint

    return decorator


def _sli_scopes(name: str, role: Role, rate_limit: EndpointClass | None) -> tuple[str, ...]:
    """The SLO scopes a callable's answers count in (besides the platform): the
    callable, and the endpoint class its calls are limited as (``staff`` for ops and
    admin functions, as :func:`enforce` counts them)."""
    if role in (Role.OPS, Role.ADMIN):
        return (callable_scope(name), class_scope(EndpointClass.STAFF.value))
    if rate_limit is not None:
        return (callable_scope(name), class_scope(rate_limit.value))
    return (callable_scope(name),)


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
            name = handler.__name__
            with deadline.budget(scheduled_budget_sec(options), name) as spent:
                try:
                    handler(ctx)
                except Exception as exc:
                    stalled = dependency_stalled(exc, spent)
                    if stalled is not None:  # decided nothing more: skipped, not failed
                        record_skipped(name, stalled.dependency, request_id, str(exc), ctx.now)
                        return
                    log.exception("scheduled %s failed (run %s)", name, request_id)
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
