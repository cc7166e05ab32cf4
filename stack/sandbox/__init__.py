"""The load-test sandbox: the app's endpoints each scenario hits, with real footprints.

Each endpoint does what the app's real one does to the backends, against the Firestore
emulator and Redis, and is served by one of the scaling registry's services:

- ``/swipe`` (matching-engine): a per-user rate limiter in Redis, then a swipe document;
- ``/discovery/feed`` (matching-engine): reads a Redis sorted set;
- ``/chat/message`` (chat-service): debits tokens in a Redis transaction (WATCH/MULTI),
  then writes the message document;
- ``/wallet/balance`` (payment-processor): reads the balance;
- ``/payout/request`` (payment-processor): enqueues the request (Redis list + document);
- ``/call/start``, ``/call/heartbeat`` (media-processing): call sessions in Redis;
- ``/event/purchase`` (api-gateway): decrements stock, refusing to oversell;
- ``/ai/message`` (ai-companion): waits a model-like delay, keeps the conversation;
- ``/notification/send`` (notification-service): queues a notification in Redis.

Requests are routed between each service's revisions by the local traffic split, and a
revision's faults apply to the requests it serves (:mod:`stack.revisions`).

Each service serves at most ``instances x LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE``
requests at once; up to ``instances x LOAD_SANDBOX_QUEUE_PER_INSTANCE`` more wait (for
at most ``LOAD_SANDBOX_QUEUE_WAIT_MAX_MS``), and a request past that is shed at once:
``503`` with ``Retry-After``, no work done, as Cloud Run answers when over capacity
(:func:`admission`). Shedding instead of queueing means an overload leaves no backlog:
the sandbox is back to normal within a second of the load easing. ``POST /__resize``
(the local scaler's resize hook) changes ``instances``.

The sandbox's own pools never fail a request: Redis connections come from a blocking
pool sized to the services' total concurrency (resized with it) with a bounded wait,
and Firestore writes go over one async gRPC client (no thread pool), group-committed
(:mod:`stack.group_commit`: the writes of requests in flight together share one commit,
each request answering once its own write is committed; ``--no-group-commit`` or
``PACK391_SANDBOX_GROUP_COMMIT=0`` commits each write alone; ``GET /__group-commit``
counts writes and commits); past
``LOAD_SANDBOX_BACKEND_TIMEOUT_SEC`` a backend call is answered 503 with
``Retry-After``, like a backend that is down. No per-request access log unless
``--access-log`` or ``PACK391_ACCESS_LOG=1``. ``POST /__faults {"errorPct": 50,
"ttlSec": 30}`` (``pack391 chaos sandbox-errors``) answers that share of the endpoints'
requests with 500 until the ttl runs out or ``errorPct`` is back to 0. Every
``LOAD_SANDBOX_METRICS_INTERVAL_SEC`` each service pushes its sample to
``pack391_reportServiceMetrics`` (the scaling push path), registering the resize
hook. Data is tagged with the request's ``loadRunId``.

It serves from ``--workers N`` processes sharing the port (``SO_REUSEPORT``; default
``PACK391_SANDBOX_WORKERS``, else one per core; 1: this process alone, as it always
was), forked and supervised by the process that was started (:mod:`.workers`). What must
read the same from every worker is broadcast (instances, the injected fault), divided
(each service's slots and queue) or aggregated when read (``/__health``,
``/__group-commit``, the services' pushed samples): :mod:`.control` lists which.

The package: the app and its routes (:mod:`.app`), the endpoints (:mod:`.endpoints`),
each service's capacity (:mod:`.capacity`), the revisions' routing and faults
(:mod:`.routing`), the injected errors (:mod:`.faults`), the metrics pushes
(:mod:`.reporting`), the worker processes (:mod:`.workers`) and what they share
(:mod:`.control`).

Run: ``python -m stack.sandbox --port 5002 --redis-url redis://... --functions-url
http://127.0.0.1:5001/P/R`` (``--queue-per-instance N`` overrides the queue bound,
``--workers N`` the processes).
"""

from __future__ import annotations

from stack.sandbox.app import (
    BACKEND_DOWN,
    BACKEND_RETRY_AFTER_SEC,
    GROUP_COMMIT_ENV,
    POOL_HEADROOM,
    Sandbox,
)
from stack.sandbox.capacity import Admission, Capacity, ServiceSim, admission
from stack.sandbox.endpoints import SERVICE_OF, Endpoints
from stack.sandbox.reporting import Reporter, functions_reporter, revision_reporter
from stack.sandbox.routing import RevisionReporter, RevisionRouter, Served

__all__ = [
    "BACKEND_DOWN",
    "BACKEND_RETRY_AFTER_SEC",
    "GROUP_COMMIT_ENV",
    "POOL_HEADROOM",
    "SERVICE_OF",
    "Admission",
    "Capacity",
    "Endpoints",
    "Reporter",
    "RevisionReporter",
    "RevisionRouter",
    "Sandbox",
    "Served",
    "ServiceSim",
    "admission",
    "functions_reporter",
    "revision_reporter",
]
