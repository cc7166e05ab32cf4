"""Google API calls inside the call's budget (:mod:`shared.deadline`): the ``timeout`` and
``retry`` each call passes, and a bounded wait for the one client that takes neither.

The client libraries' own defaults would outlast a call's budget many times over:

- Cloud Run (``run_v2``): ``GetService`` 10 s per attempt, retried on UNAVAILABLE for up
  to 10 s more; ``UpdateService`` returns a long-running operation polled for as long as
  the caller waits (the GAPIC client's method configs,
  https://cloud.google.com/python/docs/reference/run/latest);
- Cloud Monitoring: ``ListTimeSeries`` 90 s, retried on UNAVAILABLE;
- Cloud Storage: 60 s per request, retried for up to 120 s
  (https://cloud.google.com/python/docs/reference/storage/latest/retry_timeout);
- Cloud Tasks through firebase-admin's task queue client: 120 s per HTTP request, with
  retries on 500/503, and no per-call timeout at all.

So every such call on a request or scheduled path takes :func:`timeout` (what is left of
the budget, at most the call's own bound) and :func:`retry` (the library's transient
errors, retried only while the budget lasts); firebase-admin's enqueue runs under
:func:`bounded` instead. A spent budget raises
:class:`shared.errors.DependencyUnavailable` naming the dependency before any call.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
import requests
from google.api_core import exceptions as gexc
from google.api_core import retry as api_retry

from shared import deadline

T = TypeVar("T")

FIRESTORE = "firestore"
"""A Firestore call the gRPC interceptor does not see (REST, raw stubs: the backups)."""
CLOUD_RUN = "cloud-run"
MONITORING = "monitoring"
STORAGE = "storage"
CLOUD_TASKS = "cloud-tasks"
FIRESTORE_ADMIN = "firestore-admin"

RETRY_INITIAL_SEC = 0.1
RETRY_MAXIMUM_SEC = 2.0
"""Backoff of :func:`retry` (doubling from the initial pause, at most the maximum)."""


def timeout(dependency: str, ceiling: float) -> float:
    """One call's deadline: what is left of the budget, at most ``ceiling``."""
    left = deadline.timeout_for(dependency, ceiling)
    return ceiling if left is None else left


def retry(dependency: str, ceiling: float, *errors: type[Exception]) -> api_retry.Retry:
    """The errors the method's own retry policy retries (``errors``; by default
    ``UNAVAILABLE``, what most GAPIC methods retry), for at most :func:`timeout` in all."""
    return api_retry.Retry(
        predicate=api_retry.if_exception_type(*(errors or (gexc.ServiceUnavailable,))),
        initial=RETRY_INITIAL_SEC,
        maximum=RETRY_MAXIMUM_SEC,
        multiplier=2.0,
        timeout=timeout(dependency, ceiling),
    )


_pool_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=8, thread_name_prefix="pack391-bounded"
            )
        return _pool


def bounded(dependency: str, ceiling: float, call: Callable[[], T]) -> T:
    """``call()`` (a client call that takes no timeout), waited for at most
    :func:`timeout`; past it :class:`~shared.errors.DependencyUnavailable`. The call itself
    is not cancelled (nothing can cancel a request already sent): it finishes in the
    background, so what it does must be safe to have happened (a named task that a retry
    finds ALREADY_EXISTS, a shard the run's reaper accounts for)."""
    wait = timeout(dependency, ceiling)
    future = _executor().submit(deadline.in_context(call))
    try:
        return future.result(timeout=wait)
    except concurrent.futures.TimeoutError:
        raise deadline.unavailable(dependency) from None


def storage_call(ceiling: float) -> dict[str, object]:
    """``timeout`` and ``retry`` for one Cloud Storage call: the library's own retry
    (``google.cloud.storage.retry.DEFAULT_RETRY``: its transient errors, connection
    failures included) cut to what is left of the budget."""
    from google.cloud.storage.retry import DEFAULT_RETRY  # type: ignore[import-untyped]

    left = timeout(STORAGE, ceiling)
    return {"timeout": left, "retry": DEFAULT_RETRY.with_timeout(left)}


@contextlib.contextmanager
def named(dependency: str) -> Iterator[None]:
    """A driver's timeout once the call's budget is spent (``requests``' timeouts, gRPC's
    ``DEADLINE_EXCEEDED`` from a client library or a raw stub, a retry that gave up,
    ``TimeoutError``) becomes :class:`~shared.errors.DependencyUnavailable` naming
    ``dependency``; any other error, and a timeout with budget left (the call's own
    bound), goes on as it was."""
    try:
        yield
    except (
        requests.exceptions.Timeout,
        gexc.DeadlineExceeded,
        gexc.RetryError,
        TimeoutError,
    ) as exc:
        if deadline.spent():
            raise deadline.unavailable(dependency) from exc
        raise
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and deadline.spent():
            raise deadline.unavailable(dependency) from exc
        raise
