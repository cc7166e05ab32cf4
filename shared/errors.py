"""The domain's errors. Services and policies raise these; the edge translates them once
(:mod:`shared.edge_errors`).

Each class carries the callable error code it maps to (:class:`ErrorCode`, the callable
protocol's status names, spelt as the Firebase SDK spells them), so the translation is
one lookup and a new error cannot be forgotten there. This module imports no client
library: a pure policy that raises a domain error loads nothing with it.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.StrEnum):
    """The callable protocol's error statuses the bundle answers with (the values of
    ``firebase_functions.https_fn.FunctionsErrorCode``)."""

    INVALID_ARGUMENT = "invalid-argument"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission-denied"
    NOT_FOUND = "not-found"
    ALREADY_EXISTS = "already-exists"
    FAILED_PRECONDITION = "failed-precondition"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    UNAVAILABLE = "unavailable"
    DATA_LOSS = "data-loss"
    INTERNAL = "internal"


class Pack391Error(Exception):
    """Base of every error the bundle raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


class InvalidInput(Pack391Error):
    """The request is malformed; ``field`` names the offending field (dotted path)."""

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str, **details: Any) -> None:
        super().__init__(f"{field}: {problem}" if field else problem, field=field, **details)
        self.field = field


class Unauthenticated(Pack391Error):
    """No (valid) Firebase ID token came with the call."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(Pack391Error):
    """The caller is signed in but lacks the role the function declares."""

    code = ErrorCode.PERMISSION_DENIED


class NotFound(Pack391Error):
    """The named thing does not exist."""

    code = ErrorCode.NOT_FOUND


class AlreadyExists(Pack391Error):
    """The thing to create exists already."""

    code = ErrorCode.ALREADY_EXISTS


class FailedPrecondition(Pack391Error):
    """The system is not in a state where the operation is allowed."""

    code = ErrorCode.FAILED_PRECONDITION


class RateLimited(Pack391Error):
    """A limit was hit; ``retryAfterSec`` says when to try again."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_sec: float, **details: Any) -> None:
        super().__init__(message, retryAfterSec=retry_after_sec, **details)
        self.retry_after_sec = retry_after_sec


BACKEND_RETRY_AFTER_SEC = 2.0
"""``retryAfterSec`` of every UNAVAILABLE answer that does not name its own."""


class BackendUnavailable(Pack391Error):
    """A backend (Redis, Firestore, a Google API) did not answer in time; the answer says
    when to retry (``retryAfterSec``)."""

    code = ErrorCode.UNAVAILABLE

    def __init__(self, message: str, **details: Any) -> None:
        details.setdefault("retryAfterSec", BACKEND_RETRY_AFTER_SEC)
        super().__init__(message, **details)


DEPENDENCY_RETRY_AFTER_SEC = 5.0
"""``retryAfterSec`` of an answer whose dependency did not answer within the call's
budget: a stalled dependency is seldom back within a second or two."""


class DependencyUnavailable(BackendUnavailable):
    """A dependency (``firestore``, ``cloud-run``, ``monitoring``, ``cloud-tasks``,
    ``storage``) did not answer within the call's budget (:mod:`shared.deadline`). The
    answer names it; the work done before is left as it was (each write is one atomic
    commit, made or not)."""

    def __init__(self, dependency: str, budget_sec: float, **details: Any) -> None:
        details.setdefault("retryAfterSec", DEPENDENCY_RETRY_AFTER_SEC)
        within = f" within the call's {budget_sec:g} s budget" if budget_sec else ""
        super().__init__(
            f"{dependency} did not answer{within}, try again shortly",
            dependency=dependency,
            budgetSec=budget_sec,
            **details,
        )
        self.dependency = dependency
