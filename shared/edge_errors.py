"""The one translation from exceptions to callable errors, at the edge.

The domain's errors (:mod:`shared.errors`) name their status; this module adds what a
translation needs and a policy must not load: the drivers' exception classes (Redis,
Google's API core) and the Firebase SDK's ``HttpsError``.
"""

from __future__ import annotations

import logging

import redis
from firebase_functions.https_fn import FunctionsErrorCode, HttpsError

from shared.errors import BackendUnavailable, FailedPrecondition, Pack391Error

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


def _https(error: Pack391Error, details: dict[str, object]) -> HttpsError:
    return HttpsError(FunctionsErrorCode(error.code.value), error.message, details)


def to_https_error(exc: BaseException, request_id: str) -> HttpsError:
    """The one translation from exceptions to callable errors."""
    if isinstance(exc, HttpsError):
        return exc
    if isinstance(exc, Pack391Error):
        return HttpsError(
            FunctionsErrorCode(exc.code), exc.message, {**exc.details, "requestId": request_id}
        )
    if is_unavailable(exc):
        # type and message: redis-py's repr() carries no message ("server:ReadOnlyError")
        log.warning("backend unavailable (request %s): %s: %s", request_id, type(exc).__name__, exc)
        unavailable = BackendUnavailable("a backend is unavailable, try again shortly")
        return HttpsError(
            FunctionsErrorCode(unavailable.code),
            unavailable.message,
            {**unavailable.details, "requestId": request_id},
        )
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.Forbidden):  # PermissionDenied (gRPC) is a Forbidden too
        # the functions' own service account lacks a permission: a setup problem the
        # caller cannot retry away, named so that an operator can grant it (issue 22)
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
