"""Firestore calls that keep the call's budget (:mod:`shared.deadline`), in one place:
the client's gRPC channel.

Every Firestore RPC of the bundle goes through the channel of the one client
:func:`shared.firestore.get_db` builds, so the deadline is applied there, by a gRPC
client interceptor, instead of at 280 call sites that could each forget it:

- an RPC made under a budget gets ``timeout = min(its own, what is left,
  PACK391_FIRESTORE_STEP_MAX_MS)``. The client
  library's own default is 60 s per attempt with retries for up to 60 s more (GetDocument,
  RunQuery, BatchGetDocuments ... retry on DEADLINE_EXCEEDED and UNAVAILABLE:
  https://cloud.google.com/python/docs/reference/firestore/latest/retries and the GAPIC
  client's method configs), far more than a call's budget;
- an RPC whose budget is spent is not sent: :class:`shared.errors.DependencyUnavailable`
  (``firestore``) is raised inside the library's retry loop, which does not retry it, so
  retries stay inside the budget;
- an RPC that ran into the deadline we set (``DEADLINE_EXCEEDED``) is answered the
  same way at once, instead of by retries until the budget is gone: a Firestore that does
  not answer one small RPC in that time is stalled, and a long budget (a deploy step, a
  drill) should learn it in seconds, not at its end.

Bidirectional streams (``Listen``, ``Write``: listeners, bulk
writers) are left alone: nothing on a request path uses them.

The SDK offers no public hook for a channel of one's own (``firestore.Client`` builds its
GAPIC client lazily, in ``_firestore_api``): :class:`BudgetedClient` overrides that one
property, the SDK's only private name the bundle relies on here, and
``tests/shared/test_firestore_budget.py`` fails if an SDK update moves it (a call under a
spent budget must be refused without reaching the emulator).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
from google.cloud import firestore
from google.cloud.firestore_v1.services.firestore import client as gapic_client
from google.cloud.firestore_v1.services.firestore.transports import grpc as gapic_grpc

from shared import deadline
from shared.config import FIRESTORE_STEP_MAX_MS

DEPENDENCY = "firestore"

log = logging.getLogger("pack391")


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _CallDetails(_Details, grpc.ClientCallDetails):  # type: ignore[misc]
    """``grpc.ClientCallDetails`` with its fields (gRPC gives only the abstract class)."""


def _bounded(details: grpc.ClientCallDetails) -> tuple[grpc.ClientCallDetails, float | None]:
    """``details`` with our deadline when it is nearer than the call's own: what is left
    of the budget, at most ``PACK391_FIRESTORE_STEP_MAX_MS`` (one RPC never holds a long
    budget's whole length); and when that deadline is (None: the call's own holds)."""
    own = details.timeout
    cap = FIRESTORE_STEP_MAX_MS.value / 1000
    left = deadline.timeout_for(DEPENDENCY, cap if own is None else min(own, cap))
    if left is None or (own is not None and left >= own):
        return details, None
    return _with_timeout(details, left), time.monotonic() + left


def _with_timeout(details: grpc.ClientCallDetails, timeout: float) -> grpc.ClientCallDetails:
    return _CallDetails(
        details.method,
        timeout,
        details.metadata,
        details.credentials,
        getattr(details, "wait_for_ready", None),
        getattr(details, "compression", None),
    )


class BudgetInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Applies the current budget to each unary and server-streaming RPC."""

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:  # fmt: skip
        budget = deadline.current()
        if _is_rollback(client_call_details) and budget is not None and budget.remaining() <= 0:
            _roll_back_later(continuation, client_call_details, request)
            raise deadline.unavailable(DEPENDENCY, budget)
        details, bound_at = _bounded(client_call_details)
        outcome = continuation(details, request)
        if bound_at is not None and _timed_out(outcome) and time.monotonic() >= bound_at - 0.05:
            raise deadline.unavailable(DEPENDENCY, budget)
        return outcome

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:  # fmt: skip
        budget = deadline.current()
        details, bound_at = _bounded(client_call_details)
        stream = continuation(details, request)
        return stream if bound_at is None else _BoundedStream(stream, bound_at, budget)


class _BoundedStream:
    """A server stream whose DEADLINE_EXCEEDED at our deadline is the budget's error (not
    retried by the library's stream retry): the call, as an iterator, with the call's
    other methods passed through."""

    def __init__(self, call: Any, bound_at: float, budget: deadline.Budget | None) -> None:
        self._call = call
        self._bound_at = bound_at
        self._budget = budget

    def __iter__(self) -> _BoundedStream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            if _timed_out(exc) and time.monotonic() >= self._bound_at - 0.05:
                raise deadline.unavailable(DEPENDENCY, self._budget) from exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


ROLLBACK_LATER_SEC = 60.0
"""How long a rollback sent after the budget ran out may take (in the background)."""


def _is_rollback(details: grpc.ClientCallDetails) -> bool:
    return str(details.method).endswith("/Rollback")


def _roll_back_later(
    continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
) -> None:
    """Send a transaction's rollback that the spent budget would refuse, in the
    background: the SDK rolls back a transaction the budget stopped, and Firestore keeps
    the transaction's locks until it hears of it (or the transaction expires), so the next
    writer of those documents, after the stall, would wait on them. The call's answer
    does not wait for it."""
    later = _with_timeout(details, ROLLBACK_LATER_SEC)

    def send() -> None:
        outcome = continuation(later, request)
        try:
            outcome.result()
        except Exception as exc:  # nothing waits for it: say so in the log
            log.warning("a rollback after a stall was not delivered: %s", exc)

    threading.Thread(target=send, name="pack391-rollback", daemon=True).start()


def _timed_out(outcome: Any) -> bool:
    """Whether a unary outcome (a completed call) ended in DEADLINE_EXCEEDED."""
    try:
        return bool(outcome.code() is grpc.StatusCode.DEADLINE_EXCEEDED)
    except Exception:  # an outcome that failed before it was a call carries no code
        return False


class _BudgetedTransport(gapic_grpc.FirestoreGrpcTransport):
    """The GAPIC transport over the SDK's channel with :class:`BudgetInterceptor`."""

    def __init__(self, *, channel: Any = None, **kwargs: Any) -> None:
        if isinstance(channel, grpc.Channel):
            channel = grpc.intercept_channel(channel, BudgetInterceptor())
        super().__init__(channel=channel, **kwargs)


class BudgetedClient(firestore.Client):
    """``google.cloud.firestore.Client`` whose every RPC keeps the call's budget."""

    @property
    def _firestore_api(self) -> Any:
        return self._firestore_api_helper(
            _BudgetedTransport, gapic_client.FirestoreClient, gapic_client
        )
