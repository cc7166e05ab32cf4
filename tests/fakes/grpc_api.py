"""A fake Google gRPC API: a real gRPC server on a free port that records requests and
answers with configurable responders.

For client libraries that only speak gRPC (``google-cloud-monitoring`` has no REST
transport): the real client is built on ``grpc.insecure_channel(fake.target)``, sends
real protobuf requests, and gets real protobuf responses.

    with FakeGrpcApi("google.monitoring.v3.MetricService") as api:
        api.on("ListTimeSeries", ListTimeSeriesRequest, ListTimeSeriesResponse, responder)

Permissions are checked as Google checks them: a call lacking a permission of its method
(:data:`stack.release.permissions.METHODS`) is answered ``PERMISSION_DENIED`` before the responder
runs. ``granted`` is the caller's permissions; None (the default) grants what
``pack391 bootstrap`` grants the account that makes that call in production. Every method
called is recorded for ``tests/plugins/api_calls.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from tests.fakes import google_apis


@dataclass
class FakeGrpcApi:
    service: str
    """Full gRPC service name, e.g. ``google.monitoring.v3.MetricService``."""
    requests: list[tuple[str, Any]] = field(default_factory=list)
    """(method, proto-plus request) in arrival order."""
    _handlers: dict[str, Any] = field(default_factory=dict)
    _server: Any = None
    _port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    granted: frozenset[str] | None = None
    """The caller's IAM permissions (None: what bootstrap grants the method's caller)."""

    def on(
        self,
        method: str,
        request_type: Any,
        response_type: Any,
        responder: Callable[[Any], Any],
    ) -> None:
        """Answer unary ``method``: ``responder(proto-plus request) -> proto-plus response``
        (also while serving: the latest responder wins)."""

        full = f"{self.service}/{method}"

        def handle(raw: Any, context: grpc.ServicerContext) -> Any:
            request = request_type.wrap(raw)
            with self._lock:
                self.requests.append((method, request))
            google_apis.record(full)
            lacking = google_apis.refusal(full, self.granted)
            if lacking is not None:
                # Cloud Monitoring's wording for a missing permission
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"Permission {lacking} denied (or the resource may not exist).",
                )
            return response_type.pb(responder(request))

        self._handlers[method] = grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=request_type.pb().FromString,
            response_serializer=lambda message: message.SerializeToString(),
        )

    def received(self, method: str) -> list[Any]:
        with self._lock:
            return [request for name, request in self.requests if name == method]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self._port}"

    def __enter__(self) -> FakeGrpcApi:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((_Dispatch(self),))
        self._port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None


class _Dispatch(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Looks the method up on every call, so responders can change while serving."""

    def __init__(self, api: FakeGrpcApi) -> None:
        self._api = api

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        prefix = f"/{self._api.service}/"
        method: str = details.method
        if not method.startswith(prefix):
            return None
        return self._api._handlers.get(method[len(prefix) :])
