"""The one translation from exceptions to callable errors, at the edge.

The domain's errors (:mod:`shared.errors`) name their status; this module adds what a
translation needs and a policy must not load: the drivers' exception classes (Redis,
Google's API core) and the Firebase SDK's ``HttpsError``.
"""

from __future__ import annotations

import logging

import redis
from firebase_functions.https_fn import FunctionsErrorCode, HttpsError

from shared.clock import utc_now
from shared.deadline import SPENT_SLACK_SEC, Budget
from shared.edge_budget import record_stall
from shared.errors import (
    BackendUnavailable,
    DependencyUnavailable,
    FailedPrecondition,
    Pack391Error,
)

log = logging.getLogger("pack391")


UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ResponseError,
)
"""Driver errors that mean "a backend is down", answered as ``UNAVAILABLE``, with
:data:`GOOGLE_UNAVAILABLE_ERRORS` (see :func:`is_unavailable`).

``redis.ResponseError`` (with ``OutOfMemoryError``, ``ReadOnlyError`` ...) is Redis
refusing a command: out of memory under ``noeviction``, a replica after a failover,
still loading. A script's own error is one too; the warning logged carries Redis's
message, so such a bug is still visible in the log."""

GOOGLE_UNAVAILABLE_ERRORS = ("ServiceUnavailable", "DeadlineExceeded", "RetryError")
"""The same for Google APIs (Firestore ...): classes of ``google.api_core.exceptions``,
named here and looked up only when needed, so that importing this module does not load
google-api-core and grpc (a cold instance that only talks to Redis never needs them)."""


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means "a backend is down" (:data:`UNAVAILABLE_ERRORS`, or a Google
    API's :data:`GOOGLE_UNAVAILABLE_ERRORS`)."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return True
    from google.api_core import exceptions as gexc

    return isinstance(exc, tuple(getattr(gexc, name) for name in GOOGLE_UNAVAILABLE_ERRORS))


HTTP_STATUS: dict[FunctionsErrorCode, int] = {
    FunctionsErrorCode.OK: 200,
    FunctionsErrorCode.CANCELLED: 499,
    FunctionsErrorCode.UNKNOWN: 500,
    FunctionsErrorCode.INVALID_ARGUMENT: 400,
    FunctionsErrorCode.DEADLINE_EXCEEDED: 504,
    FunctionsErrorCode.NOT_FOUND: 404,
    FunctionsErrorCode.ALREADY_EXISTS: 409,
    FunctionsErrorCode.PERMISSION_DENIED: 403,
    FunctionsErrorCode.UNAUTHENTICATED: 401,
    FunctionsErrorCode.RESOURCE_EXHAUSTED: 429,
    FunctionsErrorCode.FAILED_PRECONDITION: 400,
    FunctionsErrorCode.ABORTED: 409,
    FunctionsErrorCode.OUT_OF_RANGE: 400,
    FunctionsErrorCode.UNIMPLEMENTED: 501,
    FunctionsErrorCode.INTERNAL: 500,
    FunctionsErrorCode.UNAVAILABLE: 503,
    FunctionsErrorCode.DATA_LOSS: 500,
}
"""The HTTP status of each callable error code. The callable protocol
(https://firebase.google.com/docs/functions/callable-reference, "Failure response"):
the response's HTTP status is the one ``google.rpc.Code`` maps the error's status to
(https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto), and its
``error.status`` is the code's canonical name. The SDK keeps the same table privately
(``HttpsError`` answers with it when a handler raises); this public copy is for the
answers the edge writes itself, before the SDK runs. ``tests/shared/test_edge_errors.py``
checks it against what the SDK answers for every code."""


def http_status_of(code: FunctionsErrorCode) -> tuple[str, int]:
    """``(error.status, HTTP status)`` of a callable error ``code``: its canonical name
    (``invalid-argument`` -> ``INVALID_ARGUMENT``) and :data:`HTTP_STATUS`."""
    return code.value.upper().replace("-", "_"), HTTP_STATUS[code]


def _https(error: Pack391Error, details: dict[str, object]) -> HttpsError:
    return HttpsError(FunctionsErrorCode(error.code.value), error.message, details)


def dependency_stalled(exc: BaseException, budget: Budget | None) -> DependencyUnavailable | None:
    """``exc`` as a dependency that did not answer within ``budget``: the budget's own
    error, or a driver's "unavailable" error (a deadline exceeded, a retry that gave up)
    once the budget is spent, blamed on the dependency the call last waited for."""
    if isinstance(exc, DependencyUnavailable):
        return exc
    if budget is None or budget.remaining() > SPENT_SLACK_SEC or not budget.waited_on:
        return None
    if not is_unavailable(exc) or isinstance(exc, UNAVAILABLE_ERRORS):  # Redis has its own
        return None
    return DependencyUnavailable(budget.waited_on[-1], budget.call_seconds)


def to_https_error(exc: BaseException, request_id: str, budget: Budget | None = None) -> HttpsError:
    """The one translation from exceptions to callable errors. ``budget``: the call's
    (:mod:`shared.deadline`), to name the dependency a spent budget waited for."""
    if isinstance(exc, HttpsError):
        return exc
    stalled = dependency_stalled(exc, budget)
    if stalled is not None:
        log.warning("request %s: %s (%s: %s)", request_id, stalled.message, type(exc).__name__, exc)
        record_stall(stalled.dependency, utc_now())  # a platform signal: see there
        exc = stalled
    if isinstance(exc, Pack391Error):
        return HttpsError(
            FunctionsErrorCode(exc.code), exc.message, {**exc.details, "requestId": request_id}
        )
    if is_unavailable(exc):
        # type and message: redis-py's repr() carries no message ("server:ReadOnlyError")
        log.warning("backend unavailable (request %s): %s: %s", request_id, type(exc).__name__, exc)
        if isinstance(exc, UNAVAILABLE_ERRORS):  # Redis down, stalled (its 50 ms) or refusing
            unavailable = BackendUnavailable(
                "redis is unavailable, try again shortly", dependency="redis"
            )
        else:
            unavailable = BackendUnavailable("a backend is unavailable, try again shortly")
        return HttpsError(
            FunctionsErrorCode(unavailable.code),
            unavailable.message,
            {**unavailable.details, "requestId": request_id},
        )
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.Forbidden):  # PermissionDenied (gRPC) is a Forbidden too
        # the functions' own service account lacks a permission: a setup problem the
        # caller cannot retry away, named so that an operator can grant it
        log.error("a Google API refused the runtime account (request %s): %s", request_id, exc)
        refused = FailedPrecondition(
            f"a Google API refused the functions' service account: {exc.message} "
            "(pack391 bootstrap grants what the bundle needs: docs/bootstrap.md)"
        )
        return HttpsError(
            FunctionsErrorCode(refused.code), refused.message, {"requestId": request_id}
        )
    log.error("unhandled error (request %s)", request_id, exc_info=exc)
    return HttpsError(FunctionsErrorCode.INTERNAL, "internal error", {"requestId": request_id})
