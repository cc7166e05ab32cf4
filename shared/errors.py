"""The domain's errors. Services raise these; the edge translates them once.

Each class carries the callable error code it maps to, so the translation in
:mod:`shared.edge` is one table lookup and a new error cannot be forgotten there.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from firebase_functions.https_fn import FunctionsErrorCode, HttpsError

log = logging.getLogger("pack391")


class Pack391Error(Exception):
    """Base of every error the bundle raises on purpose."""

    code: FunctionsErrorCode = FunctionsErrorCode.INTERNAL

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


class InvalidInput(Pack391Error):
    """The request is malformed; ``field`` names the offending field (dotted path)."""

    code = FunctionsErrorCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str, **details: Any) -> None:
        super().__init__(f"{field}: {problem}" if field else problem, field=field, **details)
        self.field = field


class Unauthenticated(Pack391Error):
    """No (valid) Firebase ID token came with the call."""

    code = FunctionsErrorCode.UNAUTHENTICATED


class PermissionDenied(Pack391Error):
    """The caller is signed in but lacks the role the function declares."""

    code = FunctionsErrorCode.PERMISSION_DENIED


class NotFound(Pack391Error):
    """The named thing does not exist."""

    code = FunctionsErrorCode.NOT_FOUND


class AlreadyExists(Pack391Error):
    """The thing to create exists already."""

    code = FunctionsErrorCode.ALREADY_EXISTS


class FailedPrecondition(Pack391Error):
    """The system is not in a state where the operation is allowed."""

    code = FunctionsErrorCode.FAILED_PRECONDITION


class RateLimited(Pack391Error):
    """A limit was hit; ``retryAfterSec`` says when to try again."""

    code = FunctionsErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_sec: float, **details: Any) -> None:
        super().__init__(message, retryAfterSec=retry_after_sec, **details)
        self.retry_after_sec = retry_after_sec


BACKEND_RETRY_AFTER_SEC = 2.0
"""``retryAfterSec`` of every UNAVAILABLE answer that does not name its own."""


class BackendUnavailable(Pack391Error):
    """A backend (Redis, Firestore, a Google API) did not answer in time; the answer says
    when to retry (``retryAfterSec``)."""

    code = FunctionsErrorCode.UNAVAILABLE

    def __init__(self, message: str, **details: Any) -> None:
        details.setdefault("retryAfterSec", BACKEND_RETRY_AFTER_SEC)
        super().__init__(message, **details)


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


def to_https_error(exc: BaseException, request_id: str) -> HttpsError:
    """The one translation from exceptions to callable errors."""
    if isinstance(exc, HttpsError):
        return exc
    if isinstance(exc, Pack391Error):
        return HttpsError(exc.code, exc.message, {**exc.details, "requestId": request_id})
    if is_unavailable(exc):
        # type and message: redis-py's repr() carries no message ("server:ReadOnlyError")
        log.warning("backend unavailable (request %s): %s: %s", request_id, type(exc).__name__, exc)
        unavailable = BackendUnavailable("a backend is unavailable, try again shortly")
        return HttpsError(
            unavailable.code, unavailable.message, {**unavailable.details, "requestId": request_id}
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
        return HttpsError(refused.code, refused.message, {"requestId": request_id})
    log.error("unhandled error (request %s)", request_id, exc_info=exc)
    return HttpsError(FunctionsErrorCode.INTERNAL, "internal error", {"requestId": request_id})
