"""A fake Google REST API: a small werkzeug app that records requests and answers from
configurable routes.

Google's client libraries (``transport="rest"``) are pointed at it with
``client_options={"api_endpoint": fake.url}`` and ``AnonymousCredentials``: the real
library builds and sends the real requests, the test reads what arrived and decides what
the "API" answers. Routes are (method, path regex) -> responder; a responder gets the
:class:`Recorded` request and the regex match and returns (status, JSON body).

    with FakeHttpApi() as api:
        api.on("GET", r"/v2/(?P<name>projects/.+/services/[^/]+)", lambda req, m: (200, {...}))
        client = run_v2.ServicesClient(client_options={"api_endpoint": api.url}, ...)

Permissions are checked as Google checks them: a request that is a Google API method
(:func:`tests.fakes.google_apis.rest_method`) and lacks one of its permissions
(:data:`stack.release.permissions.METHODS`) gets Google's 403 ``PERMISSION_DENIED`` before any
route sees it. ``granted`` is the caller's permissions; None (the default) grants what
``pack391 bootstrap`` grants the account that makes that call in production. Every Google
method received is recorded for ``tests/plugins/api_calls.py``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from tests.fakes import google_apis


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    """Parsed JSON, or the raw text when the body is not JSON."""


Responder = Callable[[Recorded, re.Match[str]], tuple[int, Any]]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    responder: Responder


@dataclass
class FakeHttpApi:
    """Records every request; answers from the first matching route (404 otherwise)."""

    requests: list[Recorded] = field(default_factory=list)
    _routes: list[_Route] = field(default_factory=list)
    _server: BaseWSGIServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    granted: frozenset[str] | None = None
    """The caller's IAM permissions (None: what bootstrap grants the method's caller)."""

    def on(self, method: str, path_regex: str, responder: Responder) -> None:
        """Answer ``method`` requests whose whole path matches ``path_regex`` (newest route
        first, so a test can override a default)."""
        self._routes.insert(0, _Route(method.upper(), re.compile(path_regex), responder))

    def reply(self, method: str, path_regex: str, status: int, body: Any) -> None:
        """A fixed answer."""
        self.on(method, path_regex, lambda _req, _m: (status, body))

    def received(self, method: str | None = None, path_regex: str = ".*") -> list[Recorded]:
        pattern = re.compile(path_regex)
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper()) and pattern.fullmatch(r.path)
            ]

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw = request.get_data(as_text=True)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        recorded = Recorded(
            method=request.method,
            path=request.path,
            query={k: request.args.getlist(k) for k in request.args},
            headers=dict(request.headers),
            body=body,
        )
        with self._lock:
            self.requests.append(recorded)
            routes = list(self._routes)
        method = google_apis.rest_method(request.method, request.path)
        if method is not None:
            google_apis.record(method)
        lacking = google_apis.refusal(method, self.granted) if method else None
        if lacking is not None:
            status, answer = google_apis.rest_denied(lacking, google_apis.resource_of(request.path))
            response = Response(json.dumps(answer), status=status, mimetype="application/json")
            return response(environ, start_response)
        for route in routes:
            match = route.pattern.fullmatch(request.path)
            if route.method == request.method and match:
                status, answer = route.responder(recorded, match)
                break
        else:
            status, answer = (
                404,
                {
                    "error": {
                        "code": 404,
                        "message": f"no route {request.path}",
                        "status": "NOT_FOUND",
                    }
                },
            )
        response = Response(json.dumps(answer), status=status, mimetype="application/json")
        return response(environ, start_response)

    @property
    def url(self) -> str:
        assert self._server is not None, "use FakeHttpApi as a context manager"
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeHttpApi:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
